//! The event outbox: an event is written by the store in the same transaction as the change that
//! causes it (`emit`), and only when someone listens for its type (`Subscriptions`, kept by
//! `webhooks` with every endpoint write, and the mail sender), so a reseller without webhooks
//! pays nothing. Every entity module emits through here; this module names their records
//! (`records`) but imports none of them.

use super::encode;
use super::records::{ApiKey, Charge, Deploy, Domain, Site, Submission, User};
use crate::error::{StoreError, StoreResult};
use crate::kv::{ConflictableTransactionResult, TransactionalTree};
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Every event type, as API.md lists them.
pub const EVENT_TYPES: &[&str] = &[
    "user.created",
    "user.deleted",
    "user.suspended",
    "site.created",
    "site.deleted",
    "deploy.ready",
    "deploy.failed",
    "domain.created",
    "domain.verified",
    "domain.failed",
    "domain.deleted",
    "certificate.issued",
    "certificate.failed",
    "certificate.expiring",
    "form.submission",
    "charge.created",
    "key.created",
    "key.deleted",
    "quota.warning",
    "quota.exceeded",
];

/// The event types a notification mail is made from.
pub const MAIL_KINDS: &[&str] = &[
    "form.submission",
    "deploy.ready",
    "deploy.failed",
    "domain.verified",
    "domain.failed",
    "certificate.issued",
    "certificate.failed",
    "certificate.expiring",
    "quota.warning",
    "quota.exceeded",
    "user.suspended",
];

/// What changed, as the store holds it; the server renders it as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Subject {
    User(User),
    Site(Site),
    Deploy(Deploy),
    Domain(Domain),
    Submission(Submission),
    Charge(Charge),
    Key(ApiKey),
    Suspension {
        user: User,
        reason: String,
    },
    Quota {
        user: User,
        limit: String,
        used: u64,
        max: u64,
        month: String,
    },
    Certificate {
        domain: String,
        site_id: String,
        expires_at: Option<Timestamp>,
        error: Option<String>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub reseller_id: String,
    pub kind: String,
    pub at: Timestamp,
    pub subject: Subject,
}

/// Which event types each reseller's enabled endpoints listen to: read without a lock held
/// for long on every event-causing write, changed with every endpoint write.
#[derive(Clone, Default)]
pub(crate) struct Subscriptions {
    map: Arc<RwLock<HashMap<String, Vec<Vec<String>>>>>,
    /// Moved by every change this node makes to `map` (see `reload`).
    changes: Arc<std::sync::atomic::AtomicU64>,
    /// True when the server sends notification mail: then the events a mail is made from are
    /// written for every reseller.
    mail: Arc<std::sync::atomic::AtomicBool>,
    /// Woken by every event written (a transaction that aborts wakes it for nothing).
    pub wake: Arc<tokio::sync::Notify>,
}

impl Subscriptions {
    pub fn wants(&self, reseller_id: &str, kind: &str) -> bool {
        if MAIL_KINDS.contains(&kind) && self.mail.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(reseller_id).is_some_and(|endpoints| {
            endpoints
                .iter()
                .any(|events| events.iter().any(|e| e == "*" || e == kind))
        })
    }

    /// Applies what `read` finds with `apply`, unless the map changed while it read (then it
    /// reads again): an older read never overwrites a newer change, whether this node's own
    /// endpoint write or another node's announcement made it. The read runs without the lock
    /// (writers check subscriptions inside their transactions, so holding it across a
    /// database read could leave them waiting on each other).
    pub(crate) fn refresh<T>(
        &self,
        read: impl Fn() -> StoreResult<T>,
        apply: impl Fn(&mut HashMap<String, Vec<Vec<String>>>, T),
    ) -> StoreResult<()> {
        use std::sync::atomic::Ordering;
        loop {
            let seen = self.changes.load(Ordering::Acquire);
            let found = read()?;
            let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
            if self.changes.load(Ordering::Acquire) == seen {
                apply(&mut map, found);
                self.changes.fetch_add(1, Ordering::AcqRel);
                return Ok(());
            }
        }
    }

    /// From now on, the events a mail is made from are written for every reseller.
    pub(crate) fn enable_mail(&self) {
        self.mail.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes an event into `events` inside the transaction of the change that causes it, if any
/// endpoint of the reseller listens for its type.
pub(crate) fn emit(
    events: &TransactionalTree,
    subs: &Subscriptions,
    reseller_id: &str,
    kind: &'static str,
    at: Timestamp,
    subject: impl FnOnce() -> Subject,
) -> ConflictableTransactionResult<(), StoreError> {
    debug_assert!(EVENT_TYPES.contains(&kind), "{kind} is not an event type");
    if !subs.wants(reseller_id, kind) {
        return Ok(());
    }
    let event = Event {
        id: new_id(),
        reseller_id: reseller_id.to_string(),
        kind: kind.to_string(),
        at,
        subject: subject(),
    };
    events.insert(event.id.as_bytes(), encode(&event))?;
    subs.wake.notify_one();
    Ok(())
}
