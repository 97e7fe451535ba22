//! Policy status: `observedGeneration` and a `Ready` condition, written with
//! server-side apply to the status subresource under one field manager.
//!
//! Every replica computes the same status from the same object, so their applies
//! carry the same content and never conflict. No update loop: a status is applied
//! only when it differs from what the object already carries, and the condition's
//! `lastTransitionTime` is copied from the object while the condition's status
//! stays the same — so the watch event our own apply causes asks for nothing more.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::FIELD_MANAGER;
use crate::inventory::cluster::{ClusterInventory, policy_resource};
use crate::inventory::compile;
use crate::policy::{EcrEncryptionPolicyStatus, Policy};

/// The condition type.
pub const READY: &str = "Ready";
/// Reason of `Ready=True`.
pub const ACCEPTED: &str = "Accepted";
/// Reason of `Ready=False`.
pub const INVALID: &str = "Invalid";

/// How often every status is checked even without a policy change.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a failed apply is retried.
const RETRY: Duration = Duration::from_secs(10);
/// The same content is not re-applied to the same policy sooner than this, even if
/// something else (a replica of another version) keeps overwriting it.
const COOLDOWN: Duration = Duration::from_secs(300);

/// The status a policy object should carry.
pub fn desired_status(
    policy: &Policy,
    generation: Option<i64>,
    current: Option<&EcrEncryptionPolicyStatus>,
    now: Timestamp,
) -> EcrEncryptionPolicyStatus {
    let (status, reason, message) = if policy.is_valid() {
        (
            "True",
            ACCEPTED,
            "the policy is valid and in force".to_string(),
        )
    } else {
        ("False", INVALID, invalid_message(policy))
    };
    let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        // Whole seconds: what the API server stores.
        _ => Time(Timestamp::from_second(now.as_second()).unwrap_or(now)),
    };
    EcrEncryptionPolicyStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: READY.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time,
            observed_generation: generation,
        }],
    }
}

/// `spec.images[0]: invalid glob …; spec.rules.…: …. Invalid policies fail closed: …`
fn invalid_message(policy: &Policy) -> String {
    let problems: Vec<String> = policy.problems().iter().map(ToString::to_string).collect();
    format!(
        "{}. Invalid policies fail closed: every request this policy applies to fails it ({} mode)",
        problems.join("; "),
        policy.mode
    )
}

/// The status the object carries, if it can be read.
pub fn current_status(object: &DynamicObject) -> Option<EcrEncryptionPolicyStatus> {
    object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

/// The apply configuration: identity and status only, so the field manager owns
/// nothing of the spec.
pub fn apply_body(name: &str, status: &EcrEncryptionPolicyStatus) -> Value {
    let resource = policy_resource();
    json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": name},
        "status": status,
    })
}

/// Keeps every policy's status in line with its spec.
pub struct StatusWriter {
    api: Api<DynamicObject>,
    inventory: Arc<ClusterInventory>,
    /// What we last applied to each policy (transition time blanked) and when.
    applied: HashMap<String, (EcrEncryptionPolicyStatus, Instant)>,
}

impl StatusWriter {
    pub fn new(client: Client, inventory: Arc<ClusterInventory>) -> Self {
        Self {
            api: Api::all_with(client, &policy_resource()),
            inventory,
            applied: HashMap::new(),
        }
    }

    /// Applies each status that differs from the object's, in name order. Returns
    /// whether every apply succeeded.
    pub async fn sync(&mut self) -> bool {
        let mut objects = self.inventory.policy_objects();
        objects.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let now = Timestamp::now();
        let mut all_ok = true;
        let mut names = HashSet::new();
        for object in objects {
            let Some(name) = object.metadata.name.clone() else {
                continue;
            };
            names.insert(name.clone());
            let current = current_status(&object);
            let policy = compile(object.as_ref());
            let desired =
                desired_status(&policy, object.metadata.generation, current.as_ref(), now);
            if current.as_ref() == Some(&desired) {
                continue;
            }
            let content = without_times(&desired);
            if let Some((last, at)) = self.applied.get(&name)
                && *last == content
                && at.elapsed() < COOLDOWN
            {
                debug!(policy = %name, "status already applied recently; not applying again yet");
                continue;
            }
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let patch = Patch::Apply(apply_body(&name, &desired));
            match self.api.patch_status(&name, &params, &patch).await {
                Ok(_) => {
                    if policy.is_valid() {
                        info!(policy = %name, generation = ?object.metadata.generation, "policy accepted");
                    } else {
                        warn!(policy = %name, problems = %invalid_message(&policy), "policy is invalid: it fails closed");
                    }
                    self.applied.insert(name, (content, Instant::now()));
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    debug!(policy = %name, "policy deleted before its status was written");
                }
                Err(error) => {
                    warn!(policy = %name, %error, "failed to write policy status; will retry");
                    all_ok = false;
                }
            }
        }
        self.applied.retain(|name, _| names.contains(name));
        all_ok
    }

    /// Syncs after every policy change, every few minutes, and soon after a failure.
    pub async fn run(mut self) {
        loop {
            let wait = if self.sync().await { RESYNC } else { RETRY };
            tokio::select! {
                () = self.inventory.policies_changed().notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn without_times(status: &EcrEncryptionPolicyStatus) -> EcrEncryptionPolicyStatus {
    let mut status = status.clone();
    for c in &mut status.conditions {
        c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EcrEncryptionPolicySpec;

    fn compile(spec: Value) -> Policy {
        let spec: EcrEncryptionPolicySpec = serde_json::from_value(spec).unwrap();
        Policy::compile("p", &spec)
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn valid_policies_are_ready_with_their_generation() {
        let status = desired_status(&compile(json!({})), Some(3), None, at(1000));
        assert_eq!(status.observed_generation, Some(3));
        let [ready] = &status.conditions[..] else {
            panic!("one condition: {status:?}")
        };
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "True", "Accepted")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(ready.last_transition_time, Time(at(1000)));
    }

    #[test]
    fn invalid_policies_say_every_problem_with_its_path() {
        let policy = compile(json!({
            "mode": "DryRun",
            "images": ["[oops"],
            "rules": {
                "allowedEncryptionTypes": ["AES256"],
                "requireKeyRotation": true,
                "allowedKmsKeys": ["alias/aws/ecr"],
            },
        }));
        let status = desired_status(&policy, Some(1), None, at(1000));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Invalid")
        );
        for path in [
            "spec.images[0]: invalid glob",
            "spec.rules.allowedKmsKeys[0]: \"alias/aws/ecr\" is not a key ARN glob",
            "spec.rules.requireKeyRotation: can never hold",
            "spec.rules.allowedKmsKeys: can never hold",
        ] {
            assert!(ready.message.contains(path), "{path} in {}", ready.message);
        }
        assert!(
            ready.message.ends_with("Invalid policies fail closed: every request this policy applies to fails it (DryRun mode)"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn transition_time_moves_only_when_the_condition_status_changes() {
        let valid = compile(json!({}));
        let invalid = compile(json!({"images": []}));
        let first = desired_status(&valid, Some(1), None, at(1000));
        // Generation 2, still valid: same transition time.
        let second = desired_status(&valid, Some(2), Some(&first), at(2000));
        assert_eq!(second.conditions[0].last_transition_time, Time(at(1000)));
        assert_eq!(second.observed_generation, Some(2));
        // Now invalid: a transition.
        let third = desired_status(&invalid, Some(3), Some(&second), at(3000));
        assert_eq!(third.conditions[0].last_transition_time, Time(at(3000)));
        // Invalid in another way: message changes, transition time does not.
        let fourth = desired_status(
            &compile(json!({"images": ["["]})),
            Some(4),
            Some(&third),
            at(4000),
        );
        assert_eq!(fourth.conditions[0].last_transition_time, Time(at(3000)));
        assert_ne!(fourth.conditions[0].message, third.conditions[0].message);
    }

    #[test]
    fn an_applied_status_asks_for_nothing_more() {
        // What the API server hands back after our apply (time in whole seconds) is
        // exactly what we would apply again, at any later time: no update loop.
        let policy = compile(json!({"images": []}));
        let applied = desired_status(&policy, Some(7), None, Timestamp::now());
        let stored: EcrEncryptionPolicyStatus =
            serde_json::from_value(serde_json::to_value(&applied).unwrap()).unwrap();
        assert_eq!(stored, applied);
        let later = Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1);
        assert_eq!(
            desired_status(&policy, Some(7), Some(&stored), later),
            stored
        );
    }

    #[test]
    fn apply_body_carries_identity_and_status_only() {
        let status = desired_status(&compile(json!({})), Some(2), None, at(1_700_000_000));
        assert_eq!(
            apply_body("p", &status),
            json!({
                "apiVersion": "ecrguard.io/v1alpha1",
                "kind": "EcrEncryptionPolicy",
                "metadata": {"name": "p"},
                "status": {
                    "observedGeneration": 2,
                    "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "reason": "Accepted",
                        "message": "the policy is valid and in force",
                        "lastTransitionTime": "2023-11-14T22:13:20Z",
                        "observedGeneration": 2,
                    }],
                },
            })
        );
    }
}
