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

/// The body of an event: `{"type", "timestamp", "data"}`, the data as the API shows it.
pub fn render(views: &Views, event: &Event) -> Vec<u8> {
    let data = render_subject(views, &event.subject).unwrap_or_else(|_| fallback(&event.subject));
    let body = serde_json::json!({
        "type": event.kind,
        "timestamp": event.at.to_rfc3339(),
        "data": data,
    });
    body.to_string().into_bytes()
}

fn render_subject(views: &Views, subject: &Subject) -> StoreResult<serde_json::Value> {
    use crate::views::{domains, forms, sites, KeyView, UserView};
    let json = |v: &dyn erased::Json| v.value();
    let store = &views.store;
    Ok(match subject {
        Subject::User(u) => json(&UserView::of_user(u.clone())),
        Subject::Site(site) => {
            let reseller = store.resellers().get(&site.reseller_id)?;
            json(&sites::site_view(views, &reseller, site)?)
        }
        Subject::Deploy(d) => {
            let reseller = store.resellers().get(&d.reseller_id)?;
            let site = store
                .sites()
                .get(&d.site_id)?
                .ok_or(StoreError::NotFound("site"))?;
            json(&sites::deploy_view(views, &reseller, &site, d))
        }
        Subject::Domain(d) => json(&domains::domain_view(views, d)?),
        Subject::Submission(s) => json(&forms::submission_view(s)),
        Subject::Charge(c) => json(c),
        Subject::Key(k) => json(&KeyView::from(k.clone())),
        Subject::Quota {
            user,
            limit,
            used,
            max,
            month,
        } => serde_json::json!({
            "user": json(&UserView::of_user(user.clone())),
            "limit": limit,
            "used": used,
            "max": max,
            "month": month,
        }),
        Subject::Suspension { user, reason } => serde_json::json!({
            "user": json(&UserView::of_user(user.clone())),
            "reason": reason,
        }),
        Subject::Certificate {
            domain,
            site_id,
            expires_at,
            error,
        } => serde_json::json!({
            "domain": domain,
            "site_id": site_id,
            "expires_at": expires_at,
            "error": error,
        }),
    })
}

/// When the full view cannot be made (its site was deleted meanwhile): the ids it names.
fn fallback(subject: &Subject) -> serde_json::Value {
    match subject {
        Subject::Deploy(d) => serde_json::json!({
            "id": d.id, "site_id": d.site_id, "state": d.state.name(),
            "error_message": d.error_message,
        }),
        Subject::Site(s) => serde_json::json!({"id": s.id, "name": s.name}),
        Subject::Domain(d) => serde_json::json!({"id": d.id, "domain": d.name}),
        _ => serde_json::Value::Null,
    }
}

/// Serializes any view to a JSON value (the views are different types).
mod erased {
    pub trait Json {
        fn value(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Json for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// The `webhook-signature` header: `v1,<HMAC>` and, with an active EdDSA key, `v1a,<Ed25519>`,
/// both over `<id>.<timestamp>.<body>`.
pub fn signature(
    secret: &crate::store::webhooks::WebhookSecret,
    ed25519: Option<&crate::store::signing::SigningKey>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret.key());
    let mut header = format!("v1,{}", STANDARD.encode(ring::hmac::sign(&key, &content)));
    if let Some(key) = ed25519 {
        match crate::signing::sign(key, &content) {
            Ok(sig) => {
                header.push_str(" v1a,");
                header.push_str(&STANDARD.encode(sig));
            }
            Err(e) => {
                tracing::warn!(kid = %key.kid, error = %e, "cannot sign a webhook with the reseller's key")
            }
        }
    }
    header
}

/// Turns durable events into deliveries, forever.
pub async fn dispatch_forever(out: Arc<Outbound>) {
    let written = out.store.webhooks().events_written();
    loop {
        if tokio::time::timeout(IDLE, written.notified()).await.is_ok() {
            // Woken from inside the writing transaction: let it commit first.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !out.store.is_leader() {
            continue;
        }
        if let Err(e) = dispatch(&out).await {
            tracing::warn!(error = %crate::error::chain(&e), "cannot fan webhook events out; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn dispatch(out: &Outbound) -> Result<(), WorkerError> {
    let store = &out.store;
    loop {
        // (A wake-up may come a moment before its transaction commits: the next poll finds it.)
        let events = store.webhooks().pending_events(512)?;
        if events.is_empty() {
            return Ok(());
        }
        // Only events on disk go out: one that a crash could still undo must not be told.
        store.flush().await?;
        let now = Timestamp::now();
        let mut endpoints_of: HashMap<String, Vec<Endpoint>> = HashMap::new();
        let mut batch = Vec::with_capacity(events.len());
        for event in &events {
            if !endpoints_of.contains_key(&event.reseller_id) {
                let endpoints = store.webhooks().list(&event.reseller_id)?;
                endpoints_of.insert(event.reseller_id.clone(), endpoints);
            }
            let listening: Vec<&Endpoint> = endpoints_of[&event.reseller_id]
                .iter()
                .filter(|e| e.listens_to(&event.kind))
                .collect();
            let deliveries: Vec<Delivery> = if listening.is_empty() {
                Vec::new()
            } else {
                let body = render(&out.views, event);
                listening
                    .iter()
                    .map(|e| new_delivery(event, e, body.clone(), now))
                    .collect()
            };
            batch.push(FanOut {
                event_id: event.id.clone(),
                deliveries,
                mails: crate::mail::make_mails(&out.mailer, event)?,
            });
        }
        let dropped = store.webhooks().fan_out(&batch)?;
        if !dropped.is_empty() {
            let n = dropped.len() as u64;
            out.outbox.metrics.dropped.inc_by(n);
            tracing::warn!(deliveries = n, webhook_id = %dropped[0], "webhook outbox full; events dropped for its endpoint");
        }
        // The deliveries are on disk before any is sent, so a crash never re-makes one under a
        // new webhook-id.
        store.flush().await?;
        out.outbox.wake.notify_one();
    }
}

/// Sends due deliveries, forever; prunes finished ones now and then.
pub async fn send_forever(out: Arc<Outbound>) {
    let mut last_prune: Option<Instant> = None;
    loop {
        let _ = tokio::time::timeout(IDLE, out.outbox.wake.notified()).await;
        if !out.store.is_leader() {
            continue;
        }
        if let Err(e) = send_due(&out).await {
            tracing::warn!(error = %crate::error::chain(&e), "cannot read the webhook queue; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_prune = Some(Instant::now());
            let before = Timestamp(Timestamp::now().0 - KEEP_MS);
            match out.store.webhooks().prune(before, 10_000) {
                Ok(n) if n > 0 => tracing::info!(deliveries = n, "pruned old webhook deliveries"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot prune webhook deliveries"),
            }
        }
    }
}

async fn send_due(out: &Arc<Outbound>) -> Result<(), WorkerError> {
    let free = out.outbox.free_slots();
    if free == 0 {
        return Ok(());
    }
    let now = Timestamp::now();
    let lease = Timestamp(now.0 + out.timeout.as_millis() as i64 + 30_000);
    let webhooks = out.store.webhooks();
    let mut claimed: Vec<(Vec<u8>, String)> = Vec::new();
    for (entry, slot) in webhooks.due(now, SCAN)? {
        if claimed.len() >= free {
            break;
        }
        // An endpoint (or reseller) with its attempts in flight is passed over for the others'.
        if out.outbox.claim(&slot) {
            claimed.push((entry, slot));
        }
    }
    if claimed.is_empty() {
        return Ok(());
    }
    // One transaction leases them all; those taken meanwhile give their slot back.
    let entries: Vec<Vec<u8>> = claimed.iter().map(|(e, _)| e.clone()).collect();
    let leased = match webhooks.lease_many(&entries, lease) {
        Ok(leased) => leased,
        Err(e) => {
            for (_, slot) in &claimed {
                out.outbox.release(slot);
            }
            return Err(e.into());
        }
    };
    let mut unused: HashMap<String, usize> = HashMap::new();
    for (_, slot) in &claimed {
        *unused.entry(slot.clone()).or_default() += 1;
    }
    for d in &leased {
        if let Some(n) = unused.get_mut(&d.slot()) {
            *n -= 1;
        }
    }
    for (slot, n) in unused {
        for _ in 0..n {
            out.outbox.release(&slot);
        }
    }
    // The leases, and the fan-out that made these deliveries, on disk before any is sent: the
    // sender can see a fan-out before the dispatcher's flush, and a crash that undid it would
    // make the event's deliveries again under new webhook-ids.
    if let Err(e) = out.store.flush().await {
        for delivery in &leased {
            out.outbox.release(&delivery.slot());
        }
        return Err(e.into());
    }
    for delivery in leased {
        let out = out.clone();
        tokio::spawn(async move {
            let slot = delivery.slot();
            if let Err(e) = attempt(&out, delivery).await {
                tracing::warn!(error = %crate::error::chain(&e), "cannot make a webhook attempt");
            }
            out.outbox.release(&slot);
            out.outbox.wake.notify_one();
        });
    }
    Ok(())
}

/// Writes finished attempts in batches (one transaction each), then each endpoint's health,
/// forever.
pub async fn record_forever(out: Arc<Outbound>) {
    loop {
        let _ = tokio::time::timeout(IDLE, out.outbox.finished.notified()).await;
        // A moment for more attempts to finish and share the transaction.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let batch: Vec<Finished> = {
            let mut done = out.outbox.done.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *done)
        };
        if batch.is_empty() {
            continue;
        }
        let outcomes: Vec<Outcome> = batch.iter().map(|f| f.outcome.clone()).collect();
        if let Err(e) = out.store.webhooks().record_attempts(&outcomes) {
            // The leases run out and the deliveries are tried again: at least once holds.
            tracing::warn!(error = %e, attempts = outcomes.len(), "cannot record webhook attempts");
            continue;
        }
        for f in &batch {
            let health = out.store.webhooks().record_health(
                &f.reseller_id,
                &f.webhook_id,
                f.outcome.delivered,
                f.outcome.attempt.at,
                DISABLE_AFTER_MS,
            );
            match health {
                Ok(Some(disabled)) => {
                    tracing::warn!(webhook_id = %disabled.id, url = %disabled.url, "webhook endpoint disabled after failing for 3 days");
                    let path = format!("/api/v1/webhooks/{}", disabled.id);
                    out.store.audit().record(AuditEntry {
                        id: String::new(),
                        at: Timestamp::now(),
                        actor_kind: "server".into(),
                        actor_id: "webhook-sender".into(),
                        reseller_id: Some(disabled.reseller_id.clone()),
                        method: "PATCH".into(),
                        route: "/api/v1/webhooks/{id}".into(),
                        path,
                        status: 200,
                        ip: None,
                    });
                    if let Err(e) = out.store.flush().await {
                        tracing::warn!(error = %e, "cannot flush a disabled webhook endpoint");
                    }
                    tell_disabled(&out, &disabled).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot record a webhook endpoint's health"),
            }
        }
        out.outbox.wake.notify_one();
    }
}

/// An attempt made, waiting to be recorded.
struct Finished {
    outcome: Outcome,
    reseller_id: String,
    webhook_id: String,
}

/// One attempt of one delivery, recorded with what follows it.
async fn attempt(out: &Outbound, d: Delivery) -> Result<(), WorkerError> {
    let store = &out.store;
    let now = Timestamp::now();
    let endpoint = match store.webhooks().get(&d.reseller_id, &d.webhook_id) {
        Ok(e) => e,
        Err(resellerd_store::error::StoreError::NotFound(_)) => {
            store
                .webhooks()
                .give_up(&d.id, "the endpoint was deleted", now)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if !endpoint.enabled {
        store
            .webhooks()
            .give_up(&d.id, "the endpoint is disabled", now)?;
        return Ok(());
    }
    let key = store
        .signing_keys()
        .active(&d.reseller_id, crate::store::signing::Alg::EdDSA)?;
    let timestamp = now.0 / 1000;
    let signature = signature(&endpoint.secret, key.as_ref(), &d.id, timestamp, &d.body);
    let mut request = out
        .outbox
        .client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.body.clone());
    if let Some(key) = &key {
        request = request.header("webhook-key-id", &key.kid);
    }
    let began = Instant::now();
    let outcome = match crate::targets::target_allowed(&endpoint.url, out.outbox.allow_private) {
        Err(why) => Err(why),
        Ok(()) => match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                Ok((status, excerpt(response).await))
            }
            Err(e) => Err(if e.is_timeout() {
                format!("no answer within {} s", out.timeout.as_secs())
            } else {
                crate::error::chain(&e)
            }),
        },
    };
    let latency = began.elapsed();
    let metrics = &out.outbox.metrics;
    metrics.latency.observe(latency.as_secs_f64());
    let (status, error, excerpt) = match outcome {
        Ok((status, excerpt)) => (Some(status), None, excerpt),
        Err(e) => (None, Some(e), String::new()),
    };
    let delivered = status.is_some_and(|s| (200..300).contains(&s));
    let result = match (delivered, status) {
        (true, _) => "delivered",
        (false, Some(_)) => "rejected",
        (false, None) => "failed",
    };
    crate::metrics::count(&metrics.attempts, result);
    let record = Attempt {
        at: now,
        status,
        latency_ms: latency.as_millis() as u64,
        error,
        excerpt,
    };
    let next = (!delivered)
        .then(|| next_attempt(&d, Timestamp::now()))
        .flatten();
    let finished = Finished {
        outcome: Outcome {
            id: d.id,
            attempt: record,
            delivered,
            next,
        },
        reseller_id: d.reseller_id,
        webhook_id: d.webhook_id,
    };
    out.outbox
        .done
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(finished);
    out.outbox.finished.notify_one();
    Ok(())
}

/// Mails the reseller that an endpoint was disabled (if mail is on).
async fn tell_disabled(out: &Outbound, endpoint: &Endpoint) {
    use crate::mail::templates::{render, Kind, Vars};
    if !out.mailer.is_enabled() {
        return;
    }
    let made = (|| {
        let reseller = out.store.resellers().get(&endpoint.reseller_id)?;
        let mut vars = Vars::new(&reseller.name);
        vars.set("webhook_url", &endpoint.url);
        let since = endpoint.failing_since.map(|t| t.to_rfc3339());
        vars.set("failing_since", since.as_deref().unwrap_or_default());
        vars.set("user_email", reseller.email.as_str());
        let kind = Kind::WebhookDisabled;
        let custom = out.store.mail().template(&reseller.id, kind.name())?;
        let rendered = render(kind, custom.as_deref(), &vars);
        crate::mail::compose(
            &out.mailer,
            &reseller.id,
            kind.name(),
            reseller.email.as_str(),
            &rendered,
            Timestamp::now(),
        )
    })();
    let queued = match made {
        Ok(mail) => crate::mail::queue(&out.mailer, mail).await,
        Err(e) => Err(e),
    };
    if let Err(e) = queued {
        tracing::warn!(error = %crate::error::chain(&e), "cannot mail the reseller about a disabled webhook");
    }
}

/// When to try a failed delivery again: about 5 s after the first failure, doubling up to 6 h,
/// with ±20 % jitter; None once 3 days have passed since it was made. `d` is the delivery as
/// it was before this attempt was recorded.
fn next_attempt(d: &Delivery, now: Timestamp) -> Option<Timestamp> {
    use rand::Rng;
    let failures = d.attempt_count.min(30);
    let base = FIRST_BACKOFF_MS
        .saturating_mul(1i64 << failures.min(20))
        .min(MAX_BACKOFF_MS);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    let at = Timestamp(now.0 + (base as f64 * jitter) as i64);
    (at.0 <= d.created_at.0 + RETRY_FOR_MS).then_some(at)
}

/// The first `EXCERPT` bytes of an answer's body, as text.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
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
