//! The sender: due deliveries are leased, posted, and their attempts recorded with what follows
//! (a retry with backoff, or the endpoint disabled after 3 days of failures).

use super::*;

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
pub(super) fn next_attempt(d: &Delivery, now: Timestamp) -> Option<Timestamp> {
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
