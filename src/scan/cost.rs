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
            "to comply: one new customer-managed key in each of the {} account and region pairs \
             with a repository a policy refuses",
            failing.len()
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
