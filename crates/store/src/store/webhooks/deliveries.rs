//! The delivery queue: deliveries made from events (one per listening endpoint), due in
//! `delivery_due` order, leased to the sender, their attempts recorded, retried, given up and
//! pruned.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Retried for 3 days without a 2xx, or its endpoint was deleted or disabled.
    Failed,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Timestamp,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why no answer came (timeout, refused, a refused target), if none did.
    pub error: Option<String>,
    /// The first bytes of the answer's body.
    pub excerpt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    /// Also the `webhook-id` header: the same on every attempt, so receivers can deduplicate.
    pub id: String,
    pub webhook_id: String,
    pub reseller_id: String,
    pub event_id: String,
    pub kind: String,
    /// The body, rendered once.
    pub body: Vec<u8>,
    pub created_at: Timestamp,
    pub state: DeliveryState,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    pub attempts: Vec<Attempt>,
    /// Attempts made in all (the list keeps only the newest `MAX_ATTEMPTS_KEPT`).
    pub attempt_count: u32,
}

impl Delivery {
    /// `reseller_id/webhook_id`: what the sender counts attempts in flight by.
    pub fn slot(&self) -> String {
        format!("{}/{}", self.reseller_id, self.webhook_id)
    }
}

impl Webhooks<'_> {
    /// Replaces events by their deliveries (one per listening endpoint, each with its body) and
    /// their mails, in one transaction. An endpoint at `MAX_PENDING_PER_ENDPOINT` gets none;
    /// the ids of those endpoints are returned (once per dropped delivery).
    pub fn fan_out(&self, batch: &[FanOut]) -> StoreResult<Vec<String>> {
        let t = &self.0.t;
        let result = (
            &t.events,
            &t.deliveries,
            &t.deliveries_by_webhook,
            &t.delivery_due,
            &t.counters,
            &t.mails,
            &t.mail_due,
        )
            .transaction(|(events, all, by_webhook, due, counters, mail, mail_due)| {
                let mut dropped = Vec::new();
                let mut pending: HashMap<&str, i64> = HashMap::new();
                for item in batch {
                    if events.remove(item.event_id.as_bytes())?.is_none() {
                        continue;
                    }
                    for m in &item.mails {
                        mail.insert(m.id.as_bytes(), encode(m))?;
                        if let Some(at) = m.next_attempt_at {
                            mail_due.insert(due_key(at, &m.id), &[])?;
                        }
                    }
                    for d in &item.deliveries {
                        let count = match pending.get(d.webhook_id.as_str()) {
                            Some(n) => *n,
                            None => {
                                let key = pending_key(&d.webhook_id);
                                super::super::count_of(counters.get(key.as_bytes())?)
                            }
                        };
                        if count.max(0) as u64 >= MAX_PENDING_PER_ENDPOINT {
                            dropped.push(d.webhook_id.clone());
                            continue;
                        }
                        pending.insert(&d.webhook_id, count + 1);
                        super::super::bump(counters, &count_key(&d.webhook_id), 1)?;
                        all.insert(d.id.as_bytes(), encode(d))?;
                        by_webhook.insert(format!("{}/{}", d.webhook_id, d.id).as_bytes(), &[])?;
                        if let Some(at) = d.next_attempt_at {
                            due.insert(due_key(at, &d.id), d.slot().as_bytes())?;
                        }
                    }
                }
                for (webhook_id, count) in &pending {
                    counters.insert(pending_key(webhook_id).as_bytes(), &count.to_be_bytes())?;
                }
                Ok(dropped)
            })?;
        Ok(result)
    }

    /// Queue entries due at or before `now`, oldest due first, at most `limit`, each with its
    /// delivery's `Delivery::slot` (who it is for).
    pub fn due(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<(Vec<u8>, String)>> {
        let end = (now.0.max(0) as u64 + 1).to_be_bytes();
        self.0
            .t
            .delivery_due
            .range(..&end[..])
            .take(limit)
            .map(|item| {
                let (key, webhook_id) = item?;
                Ok((
                    key.to_vec(),
                    String::from_utf8_lossy(&webhook_id).into_owned(),
                ))
            })
            .collect()
    }

    /// Takes due deliveries (by their queue keys, from `due`) for attempts, in one transaction:
    /// each is leased until `until` (its queue entry moves there), so it is not taken twice, and
    /// a crash mid-attempt leaves it to be tried again once the lease runs out. Those someone
    /// else took are left out.
    pub fn lease_many(&self, entries: &[Vec<u8>], until: Timestamp) -> StoreResult<Vec<Delivery>> {
        let t = &self.0.t;
        Ok((&t.deliveries, &t.delivery_due).transaction(|(all, due)| {
            let mut taken = Vec::with_capacity(entries.len());
            for entry in entries {
                if due.remove(entry.as_slice())?.is_none() {
                    continue;
                }
                let id = String::from_utf8_lossy(&entry[8.min(entry.len())..]).into_owned();
                let Some(raw) = all.get(id.as_bytes())? else {
                    continue;
                };
                let mut d: Delivery = decode(&raw).or_else(abort)?;
                if d.state != DeliveryState::Pending {
                    continue;
                }
                d.next_attempt_at = Some(until);
                due.insert(due_key(until, &d.id), d.slot().as_bytes())?;
                all.insert(d.id.as_bytes(), encode(&d))?;
                taken.push(d);
            }
            Ok(taken)
        })?)
    }

    /// Records an attempt and what follows it: `next` schedules another attempt, `None` ends
    /// the delivery (delivered if `delivered`, else failed).
    pub fn record_attempt(
        &self,
        id: &str,
        attempt: Attempt,
        delivered: bool,
        next: Option<Timestamp>,
    ) -> StoreResult<Delivery> {
        let outcome = Outcome {
            id: id.to_string(),
            attempt,
            delivered,
            next,
        };
        self.record_attempts(std::slice::from_ref(&outcome))?
            .pop()
            .ok_or(StoreError::NotFound("delivery"))
    }

    /// Records many attempts in one transaction (see `record_attempt`); deliveries gone
    /// meanwhile are skipped.
    pub fn record_attempts(&self, outcomes: &[Outcome]) -> StoreResult<Vec<Delivery>> {
        let t = &self.0.t;
        Ok(
            (&t.deliveries, &t.delivery_due, &t.counters).transaction(|(all, due, counters)| {
                let mut recorded = Vec::with_capacity(outcomes.len());
                for o in outcomes {
                    let Some(raw) = all.get(o.id.as_bytes())? else {
                        continue;
                    };
                    let mut d: Delivery = decode(&raw).or_else(abort)?;
                    if let Some(at) = d.next_attempt_at {
                        due.remove(due_key(at, &d.id))?;
                    }
                    d.attempts.push(o.attempt.clone());
                    if d.attempts.len() > MAX_ATTEMPTS_KEPT {
                        d.attempts.remove(0);
                    }
                    d.attempt_count += 1;
                    let was_pending = d.state == DeliveryState::Pending;
                    match (o.delivered, o.next) {
                        (true, _) => {
                            d.state = DeliveryState::Delivered;
                            d.next_attempt_at = None;
                        }
                        (false, Some(at)) => {
                            d.state = DeliveryState::Pending;
                            d.next_attempt_at = Some(at);
                            due.insert(due_key(at, &d.id), d.slot().as_bytes())?;
                        }
                        (false, None) => {
                            d.state = DeliveryState::Failed;
                            d.next_attempt_at = None;
                        }
                    }
                    let now_pending = d.state == DeliveryState::Pending;
                    if was_pending != now_pending {
                        let delta = if now_pending { 1 } else { -1 };
                        super::super::bump(counters, &pending_key(&d.webhook_id), delta)?;
                    }
                    all.insert(d.id.as_bytes(), encode(&d))?;
                    recorded.push(d);
                }
                Ok(recorded)
            })?,
        )
    }

    /// Ends a pending delivery without an attempt (its endpoint is gone or disabled).
    pub fn give_up(&self, id: &str, why: &str, now: Timestamp) -> StoreResult<Delivery> {
        let attempt = Attempt {
            at: now,
            status: None,
            latency_ms: 0,
            error: Some(why.to_string()),
            excerpt: String::new(),
        };
        self.record_attempt(id, attempt, false, None)
    }

    /// Makes a delivery of this endpoint due now (a manual retry), also after it failed.
    pub fn retry(
        &self,
        reseller_id: &str,
        webhook_id: &str,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<Delivery> {
        self.get(reseller_id, webhook_id)?;
        let t = &self.0.t;
        Ok(
            (&t.deliveries, &t.delivery_due, &t.counters).transaction(|(all, due, counters)| {
                let Some(raw) = all.get(id.as_bytes())? else {
                    return abort(StoreError::NotFound("delivery"));
                };
                let mut d: Delivery = decode(&raw).or_else(abort)?;
                if d.webhook_id != webhook_id || d.reseller_id != reseller_id {
                    return abort(StoreError::NotFound("delivery"));
                }
                if let Some(at) = d.next_attempt_at {
                    due.remove(due_key(at, &d.id))?;
                }
                if d.state != DeliveryState::Pending {
                    super::super::bump(counters, &pending_key(&d.webhook_id), 1)?;
                }
                d.state = DeliveryState::Pending;
                d.next_attempt_at = Some(now);
                due.insert(due_key(now, &d.id), d.slot().as_bytes())?;
                all.insert(d.id.as_bytes(), encode(&d))?;
                Ok(d)
            })?,
        )
    }

    /// A delivery by id, whoever's it is (for the sender).
    pub fn delivery_record(&self, id: &str) -> StoreResult<Option<Delivery>> {
        super::super::get(&self.0.t.deliveries, id)
    }

    /// A delivery of this reseller's endpoint; anything else is "not found".
    pub fn delivery(&self, reseller_id: &str, webhook_id: &str, id: &str) -> StoreResult<Delivery> {
        self.delivery_record(id)?
            .filter(|d| d.reseller_id == reseller_id && d.webhook_id == webhook_id)
            .ok_or(StoreError::NotFound("delivery"))
    }

    /// A page of an endpoint's deliveries, newest first (the endpoint must be the reseller's).
    pub fn deliveries(
        &self,
        reseller_id: &str,
        webhook_id: &str,
        want: &super::super::Want,
    ) -> StoreResult<(super::super::Window<Delivery>, usize)> {
        self.get(reseller_id, webhook_id)?;
        let prefix = format!("{webhook_id}/");
        let window =
            super::super::page_desc(&self.0.t.deliveries_by_webhook, prefix.as_bytes(), want)?;
        let counted = self.0.t.counters.get(count_key(webhook_id).as_bytes())?;
        let total = super::super::count_of(counted).max(0) as usize;
        let mut items = Vec::with_capacity(window.items.len());
        for (key, _) in &window.items {
            // The window's keys are already without the prefix.
            let id = String::from_utf8_lossy(key).into_owned();
            if let Some(d) = self.delivery_record(&id)? {
                items.push(d);
            }
        }
        Ok((window.holding(items), total))
    }

    /// Deliveries waiting (all endpoints), for the outbox-depth gauge.
    pub fn pending_count(&self) -> u64 {
        self.0
            .t
            .counters
            .scan_prefix(b"webhook_pending/")
            .values()
            .filter_map(Result::ok)
            .map(|v| super::super::count_of(Some(v)).max(0) as u64)
            .sum()
    }

    /// Removes finished deliveries created before `before`, at most `limit`; returns how many.
    pub fn prune(&self, before: Timestamp, limit: usize) -> StoreResult<usize> {
        let t = &self.0.t;
        let end = format!("msg_{}", crate::model::id_floor(before));
        let mut removed = 0;
        for item in t.deliveries.range(..end.as_bytes()).take(limit) {
            let (key, raw) = item?;
            let d: Delivery = decode(&raw)?;
            if d.state == DeliveryState::Pending {
                continue;
            }
            (&t.deliveries, &t.deliveries_by_webhook, &t.counters).transaction(
                |(all, by_webhook, counters)| {
                    if all.remove(&key)?.is_some() {
                        by_webhook.remove(format!("{}/{}", d.webhook_id, d.id).as_bytes())?;
                        super::super::bump(counters, &count_key(&d.webhook_id), -1)?;
                    }
                    Ok::<_, crate::kv::ConflictableTransactionError<StoreError>>(())
                },
            )?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// What an attempt came to (see `Webhooks::record_attempts`).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub id: String,
    pub attempt: Attempt,
    pub delivered: bool,
    /// When to try again (None: no more attempts).
    pub next: Option<Timestamp>,
}

/// One event's fan-out: its deliveries and mails (see `Webhooks::fan_out`).
pub struct FanOut {
    pub event_id: String,
    pub deliveries: Vec<Delivery>,
    pub mails: Vec<super::super::records::Mail>,
}

/// A new delivery of `event` to `endpoint`, due now.
pub fn new_delivery(event: &Event, endpoint: &Endpoint, body: Vec<u8>, now: Timestamp) -> Delivery {
    Delivery {
        id: format!("msg_{}", new_id()),
        webhook_id: endpoint.id.clone(),
        reseller_id: event.reseller_id.clone(),
        event_id: event.id.clone(),
        kind: event.kind.clone(),
        body,
        created_at: now,
        state: DeliveryState::Pending,
        next_attempt_at: Some(now),
        attempts: Vec::new(),
        attempt_count: 0,
    }
}
