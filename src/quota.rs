//! Bandwidth quotas at the edge. After each traffic batch is stored, the users it touched are
//! measured against their plan's `max_bandwidth_mb_month` (1 MB = 1,000,000 bytes): at 80 % the
//! reseller is told `quota.warning`, at 100 % `quota.exceeded` (each once per month and limit, as
//! webhooks and mail, and always in the audit of events), and a user on a `block` plan is blocked:
//! its sites answer with the reseller's `quota_exceeded` page until the month ends or the limit
//! is raised. The edge's check is one read of an in-memory set that is empty unless someone is
//! blocked.

use crate::model::Timestamp;
use crate::store::plans::Overuse;
use crate::store::usage::month_of;
use crate::store::Store;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

const MB: u64 = 1_000_000;

/// Users over their bandwidth on a `block` plan: `reseller_id/user_id` -> the month it is for.
#[derive(Default)]
pub struct Blocked {
    users: RwLock<HashMap<String, String>>,
    any: AtomicBool,
}

impl Blocked {
    /// True if the user's sites must show the quota page now.
    pub fn is_blocked(&self, reseller_id: &str, user_id: &str, now: Timestamp) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users
            .get(&format!("{reseller_id}/{user_id}"))
            .is_some_and(|month| *month == month_of(now))
    }

    /// The month a user is blocked for, if it is.
    fn get(&self, key: &str) -> Option<String> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.get(key).cloned()
    }

    /// Sets a user's block; true if that changed it.
    fn set(&self, key: String, month: Option<String>) -> bool {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let changed = match month {
            Some(m) => users.insert(key, m.clone()).as_ref() != Some(&m),
            None => users.remove(&key).is_some(),
        };
        self.any.store(!users.is_empty(), Ordering::Relaxed);
        changed
    }

    /// The blocks recorded before a restart, each checked again against its plan (a limit may
    /// have been raised, or the month ended): loaded before the listeners open, so a blocked
    /// user's sites never serve in full after a restart.
    pub fn load(store: &Store) -> crate::error::ApiResult<Blocked> {
        let blocked = Blocked::default();
        let now = Timestamp::now();
        let month = month_of(now);
        for (key, recorded) in store.usage().blocks()? {
            let Some((reseller_id, user_id)) = key.split_once('/') else {
                continue;
            };
            if recorded != month {
                store.usage().record_block(&key, None)?;
                continue;
            }
            blocked.set(key.clone(), Some(recorded));
            let mut changes = Vec::new();
            match check_user(
                store,
                &blocked,
                reseller_id,
                user_id,
                &month,
                now,
                &mut changes,
            ) {
                Ok(_) => {
                    for (k, m) in changes {
                        blocked.set(k, m);
                    }
                }
                // The user or reseller is gone: nothing of it is served.
                Err(crate::error::ApiError::NotFound(_)) => {
                    store.usage().record_block(&key, None)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(blocked)
    }
}

/// Measures the users a traffic batch touched against their limits.
pub async fn check(store: &Store, blocked: &Blocked, users: &BTreeSet<String>) {
    let now = Timestamp::now();
    let month = month_of(now);
    let mut told = false;
    let mut changes = Vec::new();
    for key in users {
        let Some((reseller_id, user_id)) = key.split_once('/') else {
            continue;
        };
        match check_user(
            store,
            blocked,
            reseller_id,
            user_id,
            &month,
            now,
            &mut changes,
        ) {
            Ok(t) => told |= t,
            Err(e) => tracing::warn!(error = %e.cause_chain(), "cannot check a bandwidth quota"),
        }
    }
    if told {
        if let Err(e) = store.flush().await {
            tracing::warn!(error = %e, "cannot store a quota event");
        }
    }
    // The edge sees a block only once its record is durable: a crash after a 503 never
    // serves the user's sites in full again.
    for (key, month) in changes {
        blocked.set(key, month);
    }
}

fn check_user(
    store: &Store,
    blocked_users: &Blocked,
    reseller_id: &str,
    user_id: &str,
    month: &str,
    now: Timestamp,
    changes: &mut Vec<(String, Option<String>)>,
) -> crate::error::ApiResult<bool> {
    let key = format!("{reseller_id}/{user_id}");
    let (limits, overuse) = store.plans().limits_of(reseller_id, user_id)?;
    let Some(max_mb) = limits.max_bandwidth_mb_month else {
        if blocked_users.get(&key).is_some() {
            store.usage().record_block(&key, None)?;
            changes.push((key, None));
        }
        return Ok(false);
    };
    let max = max_mb.saturating_mul(MB);
    let used = store
        .usage()
        .user_month_bytes(reseller_id, user_id, month)?;
    let mut told = false;
    if used.saturating_mul(10) >= max.saturating_mul(8) || used >= max {
        let user = store.users().get(reseller_id, user_id)?;
        let limit = "max_bandwidth_mb_month";
        if used >= max {
            told |= store
                .usage()
                .tell_quota(&user, limit, "exceeded", used, max, month, now)?;
        }
        told |= store
            .usage()
            .tell_quota(&user, limit, "warning", used, max, month, now)?;
    }
    let blocked = used >= max && overuse == Overuse::Block;
    let month = blocked.then(|| month.to_string());
    if blocked_users.get(&key) != month {
        store.usage().record_block(&key, month.as_deref())?;
        changes.push((key, month));
        told = true; // flushed with the events, before the edge sees the change
    }
    Ok(told)
}
