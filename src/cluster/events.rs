//! Kubernetes Events on a policy for its Warn and DryRun violations
//! (`events.k8s.io/v1`, reason `PolicyViolation`), deduplicated and rate-limited so
//! a workload that is re-created in a loop cannot flood the API server.
//!
//! Admission hands each violation to [`EventSink`], which queues it (bounded; never
//! blocks a review). One [`EventWriter`] task turns the queue into API calls, the
//! way client-go's event broadcaster aggregates isomorphic events:
//! - the first occurrence of a violation (same policy, mode and note — the note
//!   names namespace, workload, container, image and reason) creates an Event;
//! - repeats only count, and the count reaches the Event as `series` with a merge
//!   patch at most once per [`EventLimits::refresh`];
//! - a violation not seen for [`EventLimits::idle`] is forgotten, so a later one
//!   starts a new Event;
//! - at most [`EventLimits::max_tracked`] violations are tracked, and all writes
//!   share a token bucket.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::admission::{RequestContext, ViolationSink};
use crate::inventory::cluster::{ClusterInventory, policy_resource};
use crate::policy::Violation;

/// The Events' reason.
pub const REASON: &str = "PolicyViolation";
/// The Events' reportingController.
pub const REPORTING_CONTROLLER: &str = "ecrguard.io/ecr-guard";
/// Where Events about a cluster-scoped object must live: the API server accepts
/// only `default` (or `kube-system`) for them.
pub const EVENT_NAMESPACE: &str = "default";

/// The API server's limits on an Event.
const NOTE_LIMIT: usize = 1024;
const NAME_LIMIT: usize = 253;
const INSTANCE_LIMIT: usize = 128;

/// How much the Event writer may write and remember.
#[derive(Clone, Debug)]
pub struct EventLimits {
    /// Least time between two writes (create or series update) of one Event.
    pub refresh: Duration,
    /// A violation not seen for this long is forgotten; keep it above `refresh`
    /// plus `flush_interval` so the last count is written first.
    pub idle: Duration,
    /// Most distinct violations tracked; new ones beyond are not recorded.
    pub max_tracked: usize,
    /// Sustained writes per second, all Events together.
    pub writes_per_second: f64,
    /// Writes allowed in a burst.
    pub burst: u32,
    /// Violations waiting for the writer; more are dropped.
    pub queue: usize,
    /// How often pending counts are written.
    pub flush_interval: Duration,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(300),
            idle: Duration::from_secs(600),
            max_tracked: 1000,
            writes_per_second: 1.0,
            burst: 25,
            queue: 1024,
            flush_interval: Duration::from_secs(10),
        }
    }
}

/// One violation as admission saw it.
#[derive(Debug)]
struct Occurrence {
    policy: String,
    action: &'static str,
    note: String,
    at: Timestamp,
}

/// The [`ViolationSink`] of cluster mode.
pub struct EventSink {
    tx: mpsc::Sender<Occurrence>,
    dropped: Arc<AtomicU64>,
}

impl ViolationSink for EventSink {
    fn record(&self, context: &RequestContext, violation: &Violation) {
        let occurrence = Occurrence {
            policy: violation.policy.clone(),
            action: violation.mode.as_str(),
            note: note(context, violation),
            at: Timestamp::now(),
        };
        if self.tx.try_send(occurrence).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The Event's note: `DryRun policy would deny Deployment web in namespace demo
/// (reason encryption_type): container "api" image …: repository … is encrypted
/// with AES256; policy p allows only KMS, KMS_DSSE`, cut to the API's 1 kB.
pub fn note(context: &RequestContext, violation: &Violation) -> String {
    let workload = if context.name.is_empty() {
        format!("{} (unnamed)", context.kind)
    } else {
        format!("{} {}", context.kind, context.name)
    };
    let text = match violation.mode {
        crate::policy::Mode::Warn => format!(
            "Warn policy admitted {workload} in namespace {} with a warning (reason {}): {}",
            context.namespace,
            violation.reason.as_str(),
            violation.message()
        ),
        mode => format!(
            "{mode} policy would deny {workload} in namespace {} (reason {}): {}",
            context.namespace,
            violation.reason.as_str(),
            violation.message()
        ),
    };
    cut(text, NOTE_LIMIT)
}

/// `text` in at most `limit` bytes, ending with `…` when cut.
fn cut(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// The queue and its writer; spawn [`EventWriter::run`].
pub fn channel(
    client: Client,
    inventory: Arc<ClusterInventory>,
    limits: EventLimits,
) -> (EventSink, EventWriter) {
    let (tx, rx) = mpsc::channel(limits.queue.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let instance = Reporter::from(REPORTING_CONTROLLER)
        .instance
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| REPORTING_CONTROLLER.to_string());
    let writer = EventWriter {
        rx,
        api: Api::namespaced(client, EVENT_NAMESPACE),
        inventory,
        instance: shorten(instance, INSTANCE_LIMIT),
        tokens: TokenBucket::new(limits.burst, limits.writes_per_second),
        limits,
        tracked: HashMap::new(),
        dropped: dropped.clone(),
        last_name_nanos: 0,
    };
    (EventSink { tx, dropped }, writer)
}

fn shorten(mut text: String, limit: usize) -> String {
    while text.len() > limit {
        text.pop();
    }
    text
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    policy: String,
    action: &'static str,
    note: String,
}

#[derive(Debug)]
struct Tracked {
    /// The Event's name once created.
    name: Option<String>,
    first_at: Timestamp,
    last_at: Timestamp,
    last_seen: Instant,
    count: i32,
    written: i32,
    last_attempt: Option<Instant>,
}

impl Tracked {
    fn is_due(&self, now: Instant, refresh: Duration) -> bool {
        self.count > self.written && self.last_attempt.is_none_or(|t| now - t >= refresh)
    }
}

/// Writes Events for queued violations; see the module docs.
pub struct EventWriter {
    rx: mpsc::Receiver<Occurrence>,
    api: Api<Event>,
    inventory: Arc<ClusterInventory>,
    instance: String,
    limits: EventLimits,
    tokens: TokenBucket,
    tracked: HashMap<Key, Tracked>,
    dropped: Arc<AtomicU64>,
    last_name_nanos: i128,
}

impl EventWriter {
    /// Runs until every [`EventSink`] is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.limits.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                occurrence = self.rx.recv() => match occurrence {
                    Some(occurrence) => self.observe(occurrence).await,
                    None => break,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
        self.flush().await;
    }

    async fn observe(&mut self, occurrence: Occurrence) {
        let now = Instant::now();
        let key = Key {
            policy: occurrence.policy,
            action: occurrence.action,
            note: occurrence.note,
        };
        if let Some(tracked) = self.tracked.get_mut(&key) {
            tracked.count = tracked.count.saturating_add(1);
            tracked.last_seen = now;
            tracked.last_at = occurrence.at;
        } else {
            if self.tracked.len() >= self.limits.max_tracked {
                self.forget_idle(now);
            }
            if self.tracked.len() >= self.limits.max_tracked {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.tracked.insert(
                key.clone(),
                Tracked {
                    name: None,
                    first_at: occurrence.at,
                    last_at: occurrence.at,
                    last_seen: now,
                    count: 1,
                    written: 0,
                    last_attempt: None,
                },
            );
        }
        self.write_if_due(&key, now).await;
    }

    /// Writes pending counts that are due, then forgets idle violations.
    async fn flush(&mut self) {
        let now = Instant::now();
        let refresh = self.limits.refresh;
        let mut due: Vec<Key> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.is_due(now, refresh))
            .map(|(k, _)| k.clone())
            .collect();
        due.sort_by(|a, b| (&a.policy, &a.note).cmp(&(&b.policy, &b.note)));
        for key in due {
            self.write_if_due(&key, now).await;
        }
        self.forget_idle(now);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            warn!(
                dropped,
                "violations not recorded as Events: too many at once (they are still logged and counted)"
            );
        }
    }

    fn forget_idle(&mut self, now: Instant) {
        let idle = self.limits.idle;
        self.tracked.retain(|_, t| now - t.last_seen < idle);
    }

    async fn write_if_due(&mut self, key: &Key, now: Instant) {
        let Some(tracked) = self.tracked.get(key) else {
            return;
        };
        if !tracked.is_due(now, self.limits.refresh) {
            return;
        }
        let (name, count, first_at, last_at) = (
            tracked.name.clone(),
            tracked.count,
            tracked.first_at,
            tracked.last_at,
        );
        if !self.tokens.take(now) {
            return;
        }
        let result = match name {
            Some(name) => self
                .update_series(&name, count, last_at)
                .await
                .map(|()| name),
            None => {
                let Some(event) = self.new_event(key, count, first_at, last_at) else {
                    debug!(policy = %key.policy, "policy gone; no Event for its violation");
                    self.tracked.remove(key);
                    return;
                };
                self.api
                    .create(&PostParams::default(), &event)
                    .await
                    .map(|_| event.metadata.name.unwrap_or_default())
            }
        };
        let Some(tracked) = self.tracked.get_mut(key) else {
            return;
        };
        tracked.last_attempt = Some(now);
        match result {
            Ok(name) => {
                tracked.name = Some(name);
                tracked.written = count;
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                // The Event expired or was deleted: start a new one next time.
                tracked.name = None;
                tracked.written = 0;
            }
            Err(error) => {
                warn!(policy = %key.policy, %error, "failed to write a PolicyViolation Event");
            }
        }
    }

    fn new_event(
        &mut self,
        key: &Key,
        count: i32,
        first_at: Timestamp,
        last_at: Timestamp,
    ) -> Option<Event> {
        let policy = self.inventory.policy_object(&key.policy)?;
        let resource = policy_resource();
        let series = (count >= 2).then_some(EventSeries {
            count,
            last_observed_time: MicroTime(last_at),
        });
        let nanos = Timestamp::now()
            .as_nanosecond()
            .max(self.last_name_nanos + 1);
        self.last_name_nanos = nanos;
        Some(Event {
            metadata: ObjectMeta {
                name: Some(event_name(&key.policy, nanos)),
                namespace: Some(EVENT_NAMESPACE.to_string()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(first_at)),
            series,
            reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(key.action.to_string()),
            reason: Some(REASON.to_string()),
            regarding: Some(ObjectReference {
                api_version: Some(resource.api_version),
                kind: Some(resource.kind),
                name: policy.metadata.name.clone(),
                uid: policy.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            related: None,
            note: Some(key.note.clone()),
            type_: Some("Warning".to_string()),
            deprecated_count: None,
            deprecated_first_timestamp: None,
            deprecated_last_timestamp: None,
            deprecated_source: None,
        })
    }

    async fn update_series(&self, name: &str, count: i32, last_at: Timestamp) -> kube::Result<()> {
        let patch = json!({
            "series": EventSeries {
                count,
                last_observed_time: MicroTime(last_at),
            }
        });
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}

/// `POLICY.HEXNANOS` like client-go's: at most 253 characters, a DNS subdomain.
fn event_name(policy: &str, nanos: i128) -> String {
    let suffix = format!(".{nanos:x}");
    let mut prefix: String = policy.chars().take(NAME_LIMIT - suffix.len()).collect();
    while prefix.ends_with(['.', '-']) {
        prefix.pop();
    }
    format!("{prefix}{suffix}")
}

/// Writes allowed now: `burst` at once, refilled at `per_second`.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(burst: u32, per_second: f64) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second,
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Finding, Mode, Reason};

    fn context() -> RequestContext {
        RequestContext {
            namespace: "demo".to_string(),
            kind: "Deployment".to_string(),
            name: "web".to_string(),
            operation: "CREATE".to_string(),
        }
    }

    fn violation(mode: Mode) -> Violation {
        Violation {
            policy: "regulated".to_string(),
            mode,
            reason: Reason::EncryptionType,
            image_use: Some((
                "container \"api\" image 123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.4".to_string(),
                "container \"api\"".to_string(),
            )),
            finding: Finding {
                problem: "repository payments/api is encrypted with AES256".to_string(),
                requirement: "policy regulated allows only KMS, KMS_DSSE".to_string(),
            },
            hint: None,
        }
    }

    #[test]
    fn notes_name_namespace_workload_container_image_and_reason() {
        assert_eq!(
            note(&context(), &violation(Mode::DryRun)),
            "DryRun policy would deny Deployment web in namespace demo (reason encryption_type): \
             container \"api\" image 123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.4: \
             repository payments/api is encrypted with AES256; policy regulated allows only KMS, KMS_DSSE"
        );
        assert!(
            note(&context(), &violation(Mode::Warn))
                .starts_with("Warn policy admitted Deployment web in namespace demo with a warning (reason encryption_type): container \"api\" image 1234")
        );
    }

    #[test]
    fn notes_fit_the_api_limit() {
        let mut long = violation(Mode::DryRun);
        long.finding.problem = "é".repeat(2000);
        let text = note(&context(), &long);
        assert!(text.len() <= NOTE_LIMIT, "{}", text.len());
        assert!(text.ends_with('…'));
    }

    #[test]
    fn event_names_are_valid_and_short_enough() {
        assert_eq!(event_name("regulated", 0x17a2b), "regulated.17a2b");
        let nanos = Timestamp::now().as_nanosecond();
        let long = event_name(&format!("{}-{}", "a".repeat(235), "b".repeat(20)), nanos);
        assert!(long.len() <= NAME_LIMIT, "{}", long.len());
        let (prefix, _) = long.rsplit_once('.').unwrap();
        assert!(prefix.ends_with('a'), "{long}");
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 0.5);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        assert!(!bucket.take(start + Duration::from_secs(1)));
        assert!(bucket.take(start + Duration::from_secs(2)));
        assert!(!bucket.take(start + Duration::from_secs(2)));
    }
}
