//! Webhooks: a reseller's endpoints, the event outbox and the delivery queue.
//!
//! An event is written by the store in the same transaction as the change that causes it
//! (`emit`), and only when one of the reseller's enabled endpoints listens for its type (the
//! in-memory `Subscriptions`, kept with every endpoint write), so a reseller without webhooks
//! pays nothing. The server's dispatcher then fans each event out to one delivery per listening
//! endpoint, with the body rendered once (a retry sends the same bytes), in one transaction that
//! also removes the event: a crash before it leaves the event to fan out again, never half done.
//! Deliveries wait in `delivery_due` (8-byte big-endian due time + delivery id), so the sender
//! reads what is due in order without a scan.

use super::{abort, decode, due_key, encode, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;

use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

mod deliveries;
pub(crate) use super::events::Subscriptions;
pub use super::events::{Event, Subject, EVENT_TYPES, MAIL_KINDS};
pub use deliveries::*;

/// Endpoints per reseller.
pub const MAX_ENDPOINTS: usize = 10;
/// Deliveries an endpoint may have waiting; past it, new events for it are dropped (and
/// counted), so a receiver that never answers cannot grow the disk without bound.
pub const MAX_PENDING_PER_ENDPOINT: u64 = 100_000;
/// Attempts a delivery keeps (the newest).
pub const MAX_ATTEMPTS_KEPT: usize = 30;

/// A webhook signing secret (`whsec_` + base64 of 24 random bytes). Stored as it is, since
/// the server signs with it; shown once; never printed.
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    pub fn generate() -> WebhookSecret {
        use base64::Engine;
        use rand::RngCore;
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        WebhookSecret(format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    /// The HMAC key: the base64 after `whsec_` (Standard Webhooks).
    pub fn key(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.0.strip_prefix("whsec_").unwrap_or(&self.0);
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|_| b64.as_bytes().to_vec())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub reseller_id: String,
    pub url: String,
    /// Event types, or `["*"]` for all.
    pub events: Vec<String>,
    pub secret: WebhookSecret,
    pub enabled: bool,
    /// Why the server disabled it (failing for 3 days), if it did.
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed (cleared by a success).
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Endpoint {
    pub fn listens_to(&self, kind: &str) -> bool {
        self.enabled && self.events.iter().any(|e| e == "*" || e == kind)
    }
}

impl Subscriptions {
    /// Reads one reseller's again from `tree` (one of its endpoints changed, here or on
    /// another node).
    pub(crate) fn reload_one(&self, tree: &crate::kv::Tree, reseller_id: &str) -> StoreResult<()> {
        self.refresh(
            || {
                tree.scan_prefix(endpoint_key(reseller_id, "").as_bytes())
                    .values()
                    .map(|v| decode(&v?))
                    .collect::<StoreResult<Vec<Endpoint>>>()
            },
            |map, endpoints| {
                let listening = listening(&endpoints);
                if listening.is_empty() {
                    map.remove(reseller_id);
                } else {
                    map.insert(reseller_id.to_string(), listening);
                }
            },
        )
    }

    pub(crate) fn load(tree: &crate::kv::Tree) -> StoreResult<Subscriptions> {
        let subs = Subscriptions::default();
        subs.reload(tree)?;
        Ok(subs)
    }

    /// Reads them all again from `tree` (this node may have missed announcements).
    pub(crate) fn reload(&self, tree: &crate::kv::Tree) -> StoreResult<()> {
        self.refresh(
            || {
                let mut by_reseller: HashMap<String, Vec<Endpoint>> = HashMap::new();
                for item in tree.iter().values() {
                    let endpoint: Endpoint = decode(&item?)?;
                    by_reseller
                        .entry(endpoint.reseller_id.clone())
                        .or_default()
                        .push(endpoint);
                }
                Ok(by_reseller
                    .into_iter()
                    .map(|(reseller_id, endpoints)| (reseller_id, listening(&endpoints)))
                    .filter(|(_, listening)| !listening.is_empty())
                    .collect())
            },
            |map, fresh| *map = fresh,
        )
    }
}

/// What other nodes are told, followed by the reseller's id, when one of its endpoints changed
/// (they read that reseller's subscriptions again).
pub(crate) const SUBSCRIPTIONS_TOPIC: &str = "webhooks/";

/// The event types each enabled endpoint listens to.
fn listening(endpoints: &[Endpoint]) -> Vec<Vec<String>> {
    endpoints
        .iter()
        .filter(|e| e.enabled)
        .map(|e| e.events.clone())
        .collect()
}

pub struct Webhooks<'a>(&'a Store);

impl Store {
    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks(self)
    }
}

fn endpoint_key(reseller_id: &str, id: &str) -> String {
    format!("{reseller_id}/{id}")
}

fn pending_key(webhook_id: &str) -> String {
    format!("webhook_pending/{webhook_id}")
}

fn endpoints_key(reseller_id: &str) -> String {
    format!("webhooks/{reseller_id}")
}

fn count_key(webhook_id: &str) -> String {
    format!("webhook_deliveries/{webhook_id}")
}

/// What a PATCH may change.
#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

impl Webhooks<'_> {
    /// Checks an event filter: known types, or `["*"]`; at least one; no repeats.
    pub fn valid_events(events: &[String]) -> StoreResult<()> {
        if events.is_empty() || events.len() > EVENT_TYPES.len() + 1 {
            return Err(StoreError::invalid(
                "events lists at least one event type, or [\"*\"] for all",
            ));
        }
        let distinct: std::collections::HashSet<&String> = events.iter().collect();
        if distinct.len() != events.len() {
            return Err(StoreError::invalid("events names a type twice"));
        }
        for e in events {
            if e != "*" && !EVENT_TYPES.contains(&e.as_str()) {
                return Err(StoreError::invalid(format!(
                    "{e:?} is not an event type (see the list in the API notes), nor \"*\""
                )));
            }
        }
        Ok(())
    }

    /// Creates an endpoint unless the reseller has `MAX_ENDPOINTS`.
    pub fn create(
        &self,
        reseller_id: &str,
        url: String,
        events: Vec<String>,
        now: Timestamp,
    ) -> StoreResult<Endpoint> {
        Self::valid_events(&events)?;
        let endpoint = Endpoint {
            id: new_id(),
            reseller_id: reseller_id.to_string(),
            url,
            events,
            secret: WebhookSecret::generate(),
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        // The count and the insert are one transaction: concurrent creates cannot pass the limit.
        let t = &self.0.t;
        let counted = endpoints_key(reseller_id);
        (&t.webhooks, &t.counters).transaction(|(hooks, counters)| {
            let have = super::count_of(counters.get(counted.as_bytes())?);
            if have.max(0) as usize >= MAX_ENDPOINTS {
                return abort(StoreError::Conflict(
                    crate::error::Conflict::WebhookLimitReached,
                    format!("a reseller has at most {MAX_ENDPOINTS} webhook endpoints"),
                ));
            }
            super::bump(counters, &counted, 1)?;
            hooks.insert(
                endpoint_key(reseller_id, &endpoint.id).as_bytes(),
                encode(&endpoint),
            )?;
            Ok(())
        })?;
        self.resubscribe(reseller_id)?;
        Ok(endpoint)
    }

    pub fn list(&self, reseller_id: &str) -> StoreResult<Vec<Endpoint>> {
        self.0
            .t
            .webhooks
            .scan_prefix(format!("{reseller_id}/").as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// An endpoint of this reseller; anyone else's is "not found".
    pub fn get(&self, reseller_id: &str, id: &str) -> StoreResult<Endpoint> {
        super::get(&self.0.t.webhooks, &endpoint_key(reseller_id, id))?
            .ok_or(StoreError::NotFound("webhook"))
    }

    pub fn update(
        &self,
        reseller_id: &str,
        id: &str,
        patch: EndpointPatch,
        now: Timestamp,
    ) -> StoreResult<Endpoint> {
        if let Some(events) = &patch.events {
            Self::valid_events(events)?;
        }
        let updated = self.change(reseller_id, id, |e| {
            if let Some(url) = &patch.url {
                e.url = url.clone();
            }
            if let Some(events) = &patch.events {
                e.events = events.clone();
            }
            if let Some(enabled) = patch.enabled {
                e.enabled = enabled;
                if enabled {
                    e.disabled_reason = None;
                    e.failing_since = None;
                }
            }
            e.updated_at = now;
        })?;
        self.resubscribe(reseller_id)?;
        Ok(updated)
    }

    /// Deletes an endpoint; its waiting deliveries fail when the sender reaches them.
    pub fn delete(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        let key = endpoint_key(reseller_id, id);
        (&t.webhooks, &t.counters).transaction(|(hooks, counters)| {
            if hooks.remove(key.as_bytes())?.is_none() {
                return abort(StoreError::NotFound("webhook"));
            }
            super::bump(counters, &endpoints_key(reseller_id), -1)?;
            Ok(())
        })?;
        self.resubscribe(reseller_id)?;
        Ok(())
    }

    /// Forgets every endpoint, delivery and event of a deleted reseller.
    pub fn delete_all(&self, reseller_id: &str) -> StoreResult<()> {
        for endpoint in self.list(reseller_id)? {
            self.delete(reseller_id, &endpoint.id)?;
            let prefix = format!("{}/", endpoint.id);
            for key in self
                .0
                .t
                .deliveries_by_webhook
                .scan_prefix(prefix.as_bytes())
                .keys()
            {
                let key = key?;
                let delivery_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                if let Some(d) = self.delivery_record(&delivery_id)? {
                    if let Some(at) = d.next_attempt_at {
                        self.0.t.delivery_due.remove(due_key(at, &d.id))?;
                    }
                }
                self.0.t.deliveries.remove(delivery_id.as_bytes())?;
                self.0.t.deliveries_by_webhook.remove(key)?;
            }
            for key in [pending_key(&endpoint.id), count_key(&endpoint.id)] {
                self.0.t.counters.remove(key.as_bytes())?;
            }
        }
        self.0
            .t
            .counters
            .remove(endpoints_key(reseller_id).as_bytes())?;
        Ok(())
    }

    /// Records the outcome of a delivery attempt on its endpoint: a success clears the failing
    /// streak; a failure starts one, and an endpoint failing for `disable_after` is disabled.
    /// Returns the endpoint if this call disabled it.
    pub fn record_health(
        &self,
        reseller_id: &str,
        id: &str,
        ok: bool,
        now: Timestamp,
        disable_after_ms: i64,
    ) -> StoreResult<Option<Endpoint>> {
        if ok {
            // The common case, a success on a healthy endpoint, writes nothing.
            match self.get(reseller_id, id) {
                Ok(e) if e.failing_since.is_none() => return Ok(None),
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        let mut disabled = false;
        let result = self.change(reseller_id, id, |e| {
            disabled = false;
            if ok {
                e.failing_since = None;
            } else {
                let since = *e.failing_since.get_or_insert(now);
                if e.enabled && now.0 - since.0 >= disable_after_ms {
                    e.enabled = false;
                    e.disabled_reason = Some(format!(
                        "every delivery failed since {}",
                        since.to_rfc3339()
                    ));
                    disabled = true;
                }
            }
        });
        match result {
            Ok(e) => {
                if disabled {
                    self.resubscribe(reseller_id)?;
                    Ok(Some(e))
                } else {
                    Ok(None)
                }
            }
            // Deleted meanwhile: nothing to record.
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn change(
        &self,
        reseller_id: &str,
        id: &str,
        mut f: impl FnMut(&mut Endpoint),
    ) -> StoreResult<Endpoint> {
        let key = endpoint_key(reseller_id, id);
        loop {
            let Some(raw) = self.0.t.webhooks.get(key.as_bytes())? else {
                return Err(StoreError::NotFound("webhook"));
            };
            let mut endpoint: Endpoint = decode(&raw)?;
            f(&mut endpoint);
            let swapped = self.0.t.webhooks.compare_and_swap(
                key.as_bytes(),
                Some(&raw),
                Some(encode(&endpoint)),
            )?;
            if swapped.is_ok() {
                return Ok(endpoint);
            }
        }
    }

    fn resubscribe(&self, reseller_id: &str) -> StoreResult<()> {
        self.0
            .subscriptions
            .reload_one(&self.0.t.webhooks, reseller_id)?;
        self.0
            .db
            .announce(&[&format!("{SUBSCRIPTIONS_TOPIC}{reseller_id}")]);
        Ok(())
    }

    /// From now on, write the events mail is made from for every reseller (the server has a
    /// mail relay).
    pub fn enable_mail_events(&self) {
        self.0.subscriptions.enable_mail();
    }

    /// Woken when an event may have been written (see `Subscriptions::wake`).
    pub fn events_written(&self) -> Arc<tokio::sync::Notify> {
        self.0.subscriptions.wake.clone()
    }

    /// Up to `limit` events not yet fanned out, oldest first.
    pub fn pending_events(&self, limit: usize) -> StoreResult<Vec<Event>> {
        self.0
            .t
            .events
            .iter()
            .values()
            .take(limit)
            .map(|v| decode(&v?))
            .collect()
    }
}
