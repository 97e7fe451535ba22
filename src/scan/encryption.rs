//! How a repository's facts read in the report: encryption type, key, its
//! manager, state and rotation, as ECR and KMS reported them.

use super::report::{Encryption, KeyManagerValue, KeyRotationValue};
use crate::policy::facts::{
    EncryptionType, KeyLookup, KeyManager, KeyState, Rotation, rfc3339_utc,
};

/// What is known of a repository's key.
#[derive(Clone, Copy, Debug)]
pub enum KeyAnswer<'a> {
    /// AES256: no key.
    None,
    /// KMS answered (or the key could not be described: `KeyLookup::Unknown`).
    Described(&'a KeyLookup),
    /// The key named `arn` could not be looked up (throttled, timeout…).
    Failed { arn: &'a str },
}

/// The report's encryption columns.
pub fn encryption(encryption_type: EncryptionType, key: KeyAnswer<'_>) -> Encryption {
    let unknown = |arn: &str| Encryption {
        encryption_type: encryption_type.as_str().to_owned(),
        kms_key: Some(arn.to_owned()),
        key_manager: Some(KeyManagerValue::Unknown),
        key_state: Some("Unknown".to_owned()),
        key_deletion_date: None,
        key_rotation: Some(KeyRotationValue::Unknown),
    };
    match key {
        KeyAnswer::None => Encryption {
            encryption_type: encryption_type.as_str().to_owned(),
            kms_key: None,
            key_manager: None,
            key_state: None,
            key_deletion_date: None,
            key_rotation: None,
        },
        KeyAnswer::Failed { arn } => unknown(arn),
        KeyAnswer::Described(KeyLookup::Unknown { arn, .. }) => unknown(arn),
        KeyAnswer::Described(KeyLookup::Known(facts)) => Encryption {
            encryption_type: encryption_type.as_str().to_owned(),
            kms_key: Some(facts.arn.clone()),
            key_manager: Some(match facts.manager {
                KeyManager::Aws => KeyManagerValue::Aws,
                KeyManager::Customer => KeyManagerValue::Customer,
            }),
            key_state: Some(match &facts.state {
                KeyState::Unreported => "Unknown".to_owned(),
                state => state.to_string(),
            }),
            // DescribeKey's DeletionDate, for a key pending deletion only.
            key_deletion_date: match facts.state {
                KeyState::PendingDeletion => facts.deletion_date.and_then(rfc3339_utc),
                _ => None,
            },
            key_rotation: Some(match facts.rotation {
                Rotation::Enabled => KeyRotationValue::Enabled,
                Rotation::Disabled => KeyRotationValue::Disabled,
                Rotation::AwsManaged => KeyRotationValue::AwsManaged,
                Rotation::Unknown(..) => KeyRotationValue::Unknown,
            }),
        },
    }
}

/// The report's encryption columns of a repository whose encryption type this
/// version does not know: the type verbatim, nothing known of a key.
pub fn unknown_type(reported: &str) -> Encryption {
    Encryption {
        encryption_type: reported.to_owned(),
        kms_key: None,
        key_manager: None,
        key_state: None,
        key_deletion_date: None,
        key_rotation: None,
    }
}
