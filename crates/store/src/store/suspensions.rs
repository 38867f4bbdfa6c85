//! Suspended client users: their tokens are refused and their sites show the reseller's
//! `suspended` page; nothing of theirs is deleted. One record per suspended user, in a watched
//! tree, so the credential and host caches drop what they hold when it changes.

use super::events::{emit, Subject};
use super::{abort, encode, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Suspension {
    pub reason: String,
    pub since: Timestamp,
}

fn key(reseller_id: &str, user_id: &str) -> String {
    format!("{reseller_id}/{user_id}")
}

pub struct Suspensions<'a>(&'a Store);

impl Store {
    pub fn suspensions(&self) -> Suspensions<'_> {
        Suspensions(self)
    }
}

impl Suspensions<'_> {
    /// True if any user of the reseller is suspended (one seek: listings skip the per-user
    /// lookups when none is).
    pub fn any(&self, reseller_id: &str) -> StoreResult<bool> {
        let prefix = format!("{reseller_id}/");
        Ok(self
            .0
            .t
            .suspensions
            .read()
            .scan_prefix(prefix.as_bytes())
            .next()
            .transpose()?
            .is_some())
    }

    pub fn get(&self, reseller_id: &str, user_id: &str) -> StoreResult<Option<Suspension>> {
        super::get(self.0.t.suspensions.read(), &key(reseller_id, user_id))
    }

    /// Suspends a user of this reseller (again: the reason and time are replaced), telling
    /// `user.suspended` in the same transaction.
    pub fn suspend(
        &self,
        reseller_id: &str,
        user_id: &str,
        reason: String,
        now: Timestamp,
    ) -> StoreResult<Suspension> {
        let user = self.0.users().get(reseller_id, user_id)?;
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        let record = Suspension { reason, since: now };
        let k = key(reseller_id, user_id);
        (
            &*t.suspensions.write(),
            t.users_by_reseller.read(),
            &t.events,
        )
            .transaction(|(s, users, events)| {
                let entry = super::users::entry_key(reseller_id, user_id);
                if users.get(entry.as_bytes())?.is_none() {
                    return abort(StoreError::NotFound("user"));
                }
                s.insert(k.as_bytes(), encode(&record))?;
                emit(events, subs, reseller_id, "user.suspended", now, || {
                    Subject::Suspension {
                        user: user.clone(),
                        reason: record.reason.clone(),
                    }
                })?;
                Ok(())
            })?;
        Ok(record)
    }

    /// Lifts a suspension (a user not suspended stays as it is).
    pub fn unsuspend(&self, reseller_id: &str, user_id: &str) -> StoreResult<()> {
        self.0.users().get(reseller_id, user_id)?;
        self.0
            .t
            .suspensions
            .write()
            .remove(key(reseller_id, user_id).as_bytes())?;
        Ok(())
    }

    /// Forgets a deleted user's suspension.
    pub fn forget(&self, reseller_id: &str, user_id: &str) -> StoreResult<()> {
        let k = key(reseller_id, user_id);
        if self.0.t.suspensions.read().contains_key(k.as_bytes())? {
            self.0.t.suspensions.write().remove(k.as_bytes())?;
        }
        Ok(())
    }
}
