//! Which IAM role ecr-guard assumes to look up repositories and keys of another
//! AWS account (a central "shared services" registry account): the
//! `--assume-role-template`, `--assume-role ACCOUNT=ROLE_ARN` and
//! `--assume-role-external-id` settings, checked when parsed.

use std::collections::BTreeMap;
use std::fmt;

/// The placeholder of `--assume-role-template` replaced by the account id.
pub const ACCOUNT_PLACEHOLDER: &str = "{account}";

/// The `RoleSessionName` of every AssumeRole call: what the other account's
/// CloudTrail shows as the session.
pub const SESSION_NAME: &str = "ecr-guard";

/// The roles to assume, by account. Empty (the default) means every call is
/// made with ecr-guard's own credentials, as without this feature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssumeRoles {
    /// `arn:PARTITION:iam::{account}:role/NAME`, for every account other than
    /// ecr-guard's own that `per_account` does not name.
    pub template: Option<RoleTemplate>,
    /// Account id (12 digits) → role ARN; wins over the template.
    pub per_account: BTreeMap<String, String>,
    /// The `sts:ExternalId` the roles' trust policies require, if any.
    pub external_id: Option<String>,
}

impl AssumeRoles {
    /// No role configured: ecr-guard never calls STS.
    pub fn is_empty(&self) -> bool {
        self.template.is_none() && self.per_account.is_empty()
    }

    /// The role to assume for `account`, given ecr-guard's own account `own`:
    /// `None` for its own account and for accounts without a role.
    pub fn role_for(&self, account: &str, own: &str) -> Option<String> {
        if account == own {
            return None;
        }
        if let Some(role) = self.per_account.get(account) {
            return Some(role.clone());
        }
        self.template.as_ref().map(|t| t.for_account(account))
    }

    /// Adds `--assume-role ACCOUNT=ROLE_ARN` pairs; the last one for an
    /// account wins, like a repeated flag usually does.
    pub fn with_account_roles(mut self, roles: impl IntoIterator<Item = AccountRole>) -> Self {
        for AccountRole { account, role } in roles {
            self.per_account.insert(account, role);
        }
        self
    }
}

/// `--assume-role-template`: a role ARN with `{account}` as its account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleTemplate(String);

impl RoleTemplate {
    /// Parses `arn:PARTITION:iam::{account}:role/PATH/NAME`.
    ///
    /// Errors: a message saying what is expected, for a usage error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = format!(
            "expected an IAM role ARN with {ACCOUNT_PLACEHOLDER} as its account, like \
             arn:aws:iam::{ACCOUNT_PLACEHOLDER}:role/ecr-guard-reader"
        );
        if text.matches(ACCOUNT_PLACEHOLDER).count() != 1 {
            return Err(format!(
                "{text:?} does not contain {ACCOUNT_PLACEHOLDER} exactly once ({expected})"
            ));
        }
        match parse_role_arn(text) {
            Ok(account) if account == ACCOUNT_PLACEHOLDER => Ok(Self(text.to_owned())),
            Ok(_) => Err(format!(
                "{text:?} has {ACCOUNT_PLACEHOLDER} outside the account field ({expected})"
            )),
            Err(why) => Err(format!(
                "{text:?} is not an IAM role ARN: {why} ({expected})"
            )),
        }
    }

    /// The role ARN for `account`.
    pub fn for_account(&self, account: &str) -> String {
        self.0.replace(ACCOUNT_PLACEHOLDER, account)
    }
}

impl fmt::Display for RoleTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `--assume-role ACCOUNT=ROLE_ARN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRole {
    pub account: String,
    pub role: String,
}

impl AccountRole {
    /// Parses `ACCOUNT=ROLE_ARN`: a 12-digit account id and an IAM role ARN
    /// (`arn:PARTITION:iam::ACCOUNT:role/NAME`, of that account or another).
    ///
    /// Errors: a message saying what is expected, for a usage error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = "expected ACCOUNT=ROLE_ARN, like \
                        111122223333=arn:aws:iam::111122223333:role/ecr-guard-reader";
        let Some((account, role)) = text.split_once('=') else {
            return Err(format!("{text:?} has no '=' ({expected})"));
        };
        if !is_account_id(account) {
            return Err(format!(
                "{account:?} is not an AWS account id: 12 digits ({expected})"
            ));
        }
        match parse_role_arn(role) {
            Ok(role_account) if is_account_id(role_account) => Ok(Self {
                account: account.to_owned(),
                role: role.to_owned(),
            }),
            Ok(role_account) => Err(format!(
                "{role:?} is not an IAM role ARN: its account {role_account:?} is not 12 digits ({expected})"
            )),
            Err(why) => Err(format!(
                "{role:?} is not an IAM role ARN: {why} ({expected})"
            )),
        }
    }
}

/// `--assume-role-external-id`: 2 to 1224 characters of `[\w+=,.@:/-]`, as
/// STS requires of `ExternalId`.
pub fn parse_external_id(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c);
    if (2..=1224).contains(&text.len()) && text.chars().all(allowed) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an STS external id: expected 2 to 1224 characters of letters, \
             digits and _+=,.@:/-"
        ))
    }
}

/// Whether `text` is an AWS account id: exactly 12 ASCII digits.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The account field of `arn:PARTITION:iam::ACCOUNT:role/NAME`, or why the
/// text is not such an ARN.
fn parse_role_arn(text: &str) -> Result<&str, &'static str> {
    let mut fields = text.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err("not of the form arn:PARTITION:iam::ACCOUNT:role/NAME");
    };
    if partition.is_empty() || !partition.starts_with("aws") {
        return Err("the partition is not aws, aws-cn, aws-us-gov…");
    }
    if service != "iam" {
        return Err("the service is not iam");
    }
    if !region.is_empty() {
        return Err("IAM ARNs have an empty region field");
    }
    let Some(name) = resource.strip_prefix("role/") else {
        return Err("the resource is not role/NAME");
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-/".contains(c);
    if name.is_empty() || name.ends_with('/') || !name.chars().all(name_ok) {
        return Err("the role name is empty or has characters IAM does not allow");
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "123456789012";
    const CENTRAL: &str = "111111111111";

    #[test]
    fn a_template_names_the_role_of_each_other_account() {
        let roles = AssumeRoles {
            template: Some(
                RoleTemplate::parse("arn:aws:iam::{account}:role/ecr-guard-reader").unwrap(),
            ),
            ..AssumeRoles::default()
        };
        assert_eq!(
            roles.role_for(CENTRAL, OWN).as_deref(),
            Some("arn:aws:iam::111111111111:role/ecr-guard-reader")
        );
        assert_eq!(roles.role_for(OWN, OWN), None);
    }

    #[test]
    fn a_per_account_role_wins_over_the_template() {
        let roles = AssumeRoles {
            template: Some(RoleTemplate::parse("arn:aws:iam::{account}:role/t").unwrap()),
            ..AssumeRoles::default()
        }
        .with_account_roles([AccountRole::parse(
            "111111111111=arn:aws:iam::222222222222:role/path/central",
        )
        .unwrap()]);
        assert_eq!(
            roles.role_for(CENTRAL, OWN).as_deref(),
            Some("arn:aws:iam::222222222222:role/path/central")
        );
        assert_eq!(
            roles.role_for("333333333333", OWN).as_deref(),
            Some("arn:aws:iam::333333333333:role/t")
        );
        let without_template = AssumeRoles::default().with_account_roles([AccountRole {
            account: CENTRAL.into(),
            role: "arn:aws:iam::111111111111:role/r".into(),
        }]);
        assert_eq!(without_template.role_for("333333333333", OWN), None);
        assert!(AssumeRoles::default().is_empty());
    }

    #[test]
    fn templates_must_be_role_arns_with_the_placeholder_as_account() {
        for good in [
            "arn:aws:iam::{account}:role/ecr-guard-reader",
            "arn:aws-cn:iam::{account}:role/path/to/reader",
        ] {
            assert!(RoleTemplate::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "arn:aws:iam::111111111111:role/reader",
            "arn:aws:iam::{account}:user/reader",
            "arn:aws:s3::{account}:role/reader",
            "arn:aws:iam:us-east-1:{account}:role/reader",
            "arn:aws:iam::{account}:role/",
            "arn:aws:iam::{account}:role/{account}",
            "ecr-guard-reader",
            "",
        ] {
            let error = RoleTemplate::parse(bad).expect_err(bad);
            assert!(error.contains("expected an IAM role ARN"), "{error}");
        }
    }

    #[test]
    fn account_roles_need_twelve_digits_and_a_role_arn() {
        assert!(AccountRole::parse("111111111111=arn:aws:iam::111111111111:role/r").is_ok());
        for bad in [
            "111111111111",
            "11111111111=arn:aws:iam::111111111111:role/r",
            "1111111111111=arn:aws:iam::111111111111:role/r",
            "11111111111a=arn:aws:iam::111111111111:role/r",
            "111111111111=arn:aws:iam::111:role/r",
            "111111111111=arn:aws:iam::111111111111:policy/r",
            "111111111111=",
        ] {
            let error = AccountRole::parse(bad).expect_err(bad);
            assert!(error.contains("expected ACCOUNT=ROLE_ARN"), "{error}");
        }
    }

    #[test]
    fn external_ids_follow_the_sts_rules() {
        assert_eq!(parse_external_id("tenant-42").as_deref(), Ok("tenant-42"));
        for bad in ["x", "has space", ""] {
            assert!(parse_external_id(bad).is_err(), "{bad}");
        }
    }
}
