//! What the scanned registries' encryption costs a month, from AWS's published
//! KMS prices (<https://aws.amazon.com/kms/pricing/>), each a `scan` flag:
//!
//! - `customerManagedKeys`: distinct customer-managed key ARNs (`KeyManager`
//!   `CUSTOMER`) used by the scanned repositories, each counted once however
//!   many repositories share it. AWS-managed keys and AES256 cost nothing a
//!   month; a key that could not be described is not counted.
//! - `keyMonthlyUsd` = `customerManagedKeys` × `--kms-key-monthly-usd`.
//! - `requestsMonthlyUsd` = `--kms-requests-per-month` / 10,000 ×
//!   `--kms-request-usd-per-10k`.
//! - `monthlyUsd` = `keyMonthlyUsd` + `requestsMonthlyUsd`.
//! - `toComplyMonthlyUsd` = one new customer-managed key per (account, region)
//!   having a repository some judged policy does not allow (any mode) ×
//!   `--kms-key-monthly-usd`. An existing key there is not assumed reusable,
//!   and request costs do not change (the same pulls, now through KMS, are
//!   already in the request volume given).
//!
//! Figures are not rounded here; renderers round to cents when displaying.

use std::collections::BTreeSet;

use super::report::{Cost, KeyManagerValue, Prices, ScannedRepository};

pub fn cost(repositories: &[ScannedRepository], prices: Prices) -> Cost {
    let keys: BTreeSet<&str> = repositories
        .iter()
        .filter(|r| r.encryption.key_manager == Some(KeyManagerValue::Customer))
        .filter_map(|r| r.encryption.kms_key.as_deref())
        .collect();
    let failing: BTreeSet<(&str, &str)> = repositories
        .iter()
        .filter(|r| r.verdicts.iter().any(|v| !v.allowed))
        .map(|r| (r.account.as_str(), r.region.as_str()))
        .collect();
    let key_monthly_usd = keys.len() as f64 * prices.kms_key_monthly_usd;
    let requests_monthly_usd =
        prices.kms_requests_per_month as f64 / 10_000.0 * prices.kms_request_usd_per_10k;
    let mut assumptions = Vec::new();
    if prices.kms_requests_per_month == 0 {
        assumptions.push(
            "KMS request volume not given (--kms-requests-per-month): 0 requests a month"
                .to_owned(),
        );
    }
    if !failing.is_empty() {
        assumptions.push(format!(
            "to comply: one new customer-managed key in each of the {} with a repository a \
             policy refuses",
            match failing.len() {
                1 => "1 account and region".to_owned(),
                n => format!("{n} account and region pairs"),
            }
        ));
    }
    Cost {
        customer_managed_keys: keys.len(),
        key_monthly_usd,
        requests_monthly_usd,
        monthly_usd: key_monthly_usd + requests_monthly_usd,
        to_comply_monthly_usd: failing.len() as f64 * prices.kms_key_monthly_usd,
        prices,
        assumptions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::report::{Encryption, PolicyVerdict};

    fn repo(
        account: &str,
        region: &str,
        key: Option<(&str, KeyManagerValue)>,
        allowed: bool,
    ) -> ScannedRepository {
        ScannedRepository {
            account: account.into(),
            region: region.into(),
            name: "r".into(),
            encryption: Encryption {
                encryption_type: if key.is_some() { "KMS" } else { "AES256" }.into(),
                kms_key: key.map(|(arn, _)| arn.into()),
                key_manager: key.map(|(_, m)| m),
                key_state: None,
                key_deletion_date: None,
                key_rotation: None,
            },
            findings: Vec::new(),
            verdicts: vec![PolicyVerdict {
                policy: "p".into(),
                mode: "DryRun".into(),
                allowed,
                reasons: Vec::new(),
                messages: Vec::new(),
            }],
        }
    }

    #[test]
    fn keys_count_once_and_compliance_costs_one_key_per_failing_registry() {
        let cmk = Some(("arn:aws:kms:us-east-1:1:key/a", KeyManagerValue::Customer));
        let aws = Some(("arn:aws:kms:us-east-1:1:key/b", KeyManagerValue::Aws));
        let repositories = [
            repo("1", "us-east-1", cmk, true),
            repo("1", "us-east-1", cmk, true),
            repo("1", "us-east-1", aws, true),
            repo("1", "us-east-1", None, false),
            repo("1", "eu-west-1", None, false),
            repo("1", "eu-west-1", None, false),
        ];
        let prices = Prices {
            kms_key_monthly_usd: 1.5,
            kms_request_usd_per_10k: 0.03,
            kms_requests_per_month: 25_000,
        };
        let cost = cost(&repositories, prices);
        assert_eq!(cost.customer_managed_keys, 1);
        assert!((cost.key_monthly_usd - 1.5).abs() < 1e-12);
        assert!((cost.requests_monthly_usd - 0.075).abs() < 1e-12);
        assert!((cost.monthly_usd - 1.575).abs() < 1e-12);
        // A DryRun refusal counts too: two registries, two keys.
        assert!((cost.to_comply_monthly_usd - 3.0).abs() < 1e-12);
        assert_eq!(cost.assumptions.len(), 1, "{:?}", cost.assumptions);
    }
}
