//! Webhook delivery. The store writes an event with the change that causes it (see
//! `store::webhooks`); here the dispatcher turns each durable event into one delivery per
//! listening endpoint, its body rendered once as the API shows the resource, and the sender posts
//! them: Standard Webhooks headers and HMAC signature, plus an Ed25519 signature (`v1a`) with the
//! reseller's active EdDSA signing key; retries with exponential backoff and jitter for 3 days;
//! a few attempts at a time per endpoint; every attempt recorded. Targets that resolve to
//! loopback, private or link-local addresses are refused unless the operator allows them, when
//! the endpoint is saved and again at every connection (so DNS cannot be turned on us later).

use crate::mail::Mailer;
use crate::model::Timestamp;
use crate::store::audit::AuditEntry;
use crate::store::webhooks::{
    new_delivery, Attempt, Delivery, Endpoint, Event, FanOut, Outcome, Subject,
};
use crate::store::Store;
use crate::views::Views;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use resellerd_store::error::{StoreError, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a delivery is retried.
pub const RETRY_FOR_MS: i64 = 3 * 24 * 3600 * 1000;
/// An endpoint whose every attempt failed for this long is disabled.
pub const DISABLE_AFTER_MS: i64 = RETRY_FOR_MS;
/// The first retry waits about this long; each next one twice as long, up to `MAX_BACKOFF_MS`.
const FIRST_BACKOFF_MS: i64 = 5_000;
const MAX_BACKOFF_MS: i64 = 6 * 3600 * 1000;
/// Attempts at once, per endpoint, per reseller and in all: a reseller whose endpoints never
/// answer holds at most `PER_RESELLER` of the `IN_FLIGHT`, however many endpoints it has.
const PER_ENDPOINT: usize = 8;
const PER_RESELLER: usize = 16;
const IN_FLIGHT: usize = 128;
/// Queue entries one pass of the sender looks at, at most: past an endpoint that has its
/// attempts in flight, to the others' entries.
const SCAN: usize = 1024;
/// The longest an idle sender or dispatcher sleeps before looking again.
const IDLE: Duration = Duration::from_millis(250);
/// Bytes of a receiver's answer kept with the attempt.
const EXCERPT: usize = 1024;
/// Finished deliveries are kept this long, then pruned.
const KEEP_MS: i64 = 30 * 24 * 3600 * 1000;

/// Delivery attempts by result (delivered: a 2xx; rejected: another status; failed: no
/// answer), their latency, and events dropped for a full outbox: counted here, registered with
/// `metrics` where the app is assembled.
pub struct OutboxMetrics {
    pub attempts: crate::metrics::Outcomes,
    pub dropped: prometheus_client::metrics::counter::Counter,
    pub latency: prometheus_client::metrics::histogram::Histogram,
}

/// Upper bounds of the delivery latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Default for OutboxMetrics {
    fn default() -> Self {
        OutboxMetrics {
            attempts: Default::default(),
            dropped: Default::default(),
            latency: prometheus_client::metrics::histogram::Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl OutboxMetrics {
    /// Adds these to `metrics`.
    pub fn register(&self, metrics: &mut crate::metrics::Metrics) {
        metrics.register(
            "resellerd_webhook_attempts",
            "Webhook delivery attempts, by result (delivered: a 2xx; rejected: another status; failed: no answer).",
            self.attempts.clone(),
        );
        metrics.register(
            "resellerd_webhook_events_dropped",
            "Webhook events not queued because their endpoint's outbox was full.",
            self.dropped.clone(),
        );
        metrics.register(
            "resellerd_webhook_attempt_duration_seconds",
            "Time a webhook attempt took.",
            self.latency.clone(),
        );
    }
}

/// Why a round of the webhook workers stopped short (logged; the round runs again).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot make an event's notification mails")]
    Mail(#[from] crate::mail::MailError),
}

/// What the webhook workers run on: their own parts, never `AppState`.
pub struct Outbound {
    pub store: Store,
    /// Renders an event's data as the API shows it.
    pub views: Views,
    pub outbox: Arc<Outbox>,
    /// Makes and queues the mails an event causes.
    pub mailer: Arc<Mailer>,
    /// How long an attempt may take (`--webhook-timeout`).
    pub timeout: Duration,
}

/// The sender's shared parts.
pub struct Outbox {
    client: reqwest::Client,
    allow_private: bool,
    /// Woken when deliveries were made or made due (a manual retry).
    pub wake: tokio::sync::Notify,
    /// Attempts made, waiting for `record_forever`, which `finished` wakes.
    done: Mutex<Vec<Finished>>,
    finished: tokio::sync::Notify,
    in_flight: Mutex<HashMap<String, usize>>,
    pub metrics: OutboxMetrics,
}

impl Outbox {
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Outbox, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would reach addresses the resolver below refuses.
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("resellerd-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(crate::targets::GuardedResolver { allow_private }))
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Outbox {
            client,
            allow_private,
            wake: tokio::sync::Notify::new(),
            done: Mutex::new(Vec::new()),
            finished: tokio::sync::Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            metrics: OutboxMetrics::default(),
        })
    }

    /// Claims an attempt slot for `slot` (`reseller_id/webhook_id`, see `Delivery::slot`), if
    /// its endpoint, its reseller and the sender each have one free.
    fn claim(&self, slot: &str) -> bool {
        let reseller = slot.split('/').next().unwrap_or_default();
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = map.values().sum();
        let of_reseller: usize = map
            .iter()
            .filter(|(k, _)| k.split('/').next() == Some(reseller))
            .map(|(_, n)| n)
            .sum();
        let mine = map.entry(slot.to_string()).or_default();
        if *mine >= PER_ENDPOINT || of_reseller >= PER_RESELLER || total >= IN_FLIGHT {
            return false;
        }
        *mine += 1;
        true
    }

    fn release(&self, slot: &str) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(slot) {
            *n -= 1;
            if *n == 0 {
                map.remove(slot);
            }
        }
    }

    fn free_slots(&self) -> usize {
        let map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        IN_FLIGHT.saturating_sub(map.values().sum())
    }
}

/// An attempt made, waiting to be recorded.
struct Finished {
    outcome: Outcome,
    reseller_id: String,
    webhook_id: String,
}

mod dispatch;
mod render;
mod send;

pub use dispatch::dispatch_forever;
pub use render::{render, signature};
pub use send::{record_forever, send_forever};

#[cfg(test)]
mod tests {
    use super::send::next_attempt;
    use super::*;

    /// A hostile reseller's endpoints that never answer cannot take every attempt slot.
    #[test]
    fn attempts_in_flight_are_bounded_per_endpoint_and_per_reseller() {
        let outbox = Outbox::new(false, Duration::from_secs(10)).unwrap();
        let taken = (0..100).filter(|_| outbox.claim("hostile/w1")).count();
        assert_eq!(taken, PER_ENDPOINT);
        let more = (0..100)
            .filter(|i| outbox.claim(&format!("hostile/w{}", 2 + i % 9)))
            .count();
        assert_eq!(taken + more, PER_RESELLER);
        assert!(
            outbox.claim("other/w1"),
            "another reseller still gets a slot"
        );
        outbox.release("hostile/w1");
        assert!(outbox.claim("hostile/w1"), "a released slot is free again");
        assert_eq!(outbox.free_slots(), IN_FLIGHT - PER_RESELLER - 1);
    }

    #[test]
    fn backoff_grows_and_stops_after_three_days() {
        let now = Timestamp(1_000_000_000_000);
        let mut d = new_delivery(
            &Event {
                id: "e".into(),
                reseller_id: "r".into(),
                kind: "user.created".into(),
                at: now,
                subject: Subject::Certificate {
                    domain: "x".into(),
                    site_id: "s".into(),
                    expires_at: None,
                    error: None,
                },
            },
            &Endpoint {
                id: "w".into(),
                reseller_id: "r".into(),
                url: "http://x".into(),
                events: vec!["*".into()],
                secret: crate::store::webhooks::WebhookSecret::generate(),
                enabled: true,
                disabled_reason: None,
                failing_since: None,
                created_at: now,
                updated_at: now,
            },
            Vec::new(),
            now,
        );
        // `attempt_count` is the attempts made before the one that just failed.
        let first = next_attempt(&d, now).unwrap().0 - now.0;
        assert!((4_000..=6_000).contains(&first), "{first}");
        d.attempt_count = 4;
        let fifth = next_attempt(&d, now).unwrap().0 - now.0;
        assert!(fifth > 8 * first, "{fifth}");
        assert!(next_attempt(&d, Timestamp(now.0 + RETRY_FOR_MS)).is_none());
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks specification's example.
        let secret =
            crate::store::webhooks::WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let body = br#"{"test": 2432232314}"#;
        let header = signature(
            &secret,
            None,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
