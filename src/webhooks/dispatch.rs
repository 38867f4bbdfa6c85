//! The dispatcher: durable events become one delivery per listening endpoint (and the mails
//! they cause).

use super::*;

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
