//! Reseller API keys: at most 6 live keys per reseller, secrets kept only as SHA-256.

use super::events::{emit, Subject};
use super::{abort, decode, encode, get, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::secret::{Secret, KEY_PREFIX};
use crate::model::{new_id, IpAllowList, Permissions, Timestamp};

pub use super::records::ApiKey;

pub const MAX_LIVE_KEYS: usize = 6;

/// A key just created, with its secret (shown once).
pub struct NewKey {
    pub key: ApiKey,
    pub secret: Secret,
}

impl ApiKey {
    pub fn new(
        reseller_id: &str,
        name: String,
        permissions: Permissions,
        allowed_ips: IpAllowList,
        expires_at: Option<Timestamp>,
        secret: &Secret,
        now: Timestamp,
    ) -> ApiKey {
        ApiKey {
            id: new_id(),
            reseller_id: reseller_id.to_string(),
            name,
            hash: secret.hash(),
            masked: secret.masked(KEY_PREFIX),
            permissions,
            allowed_ips,
            created_at: now,
            expires_at,
            last_used_at: None,
        }
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

pub struct Keys<'a>(&'a Store);

impl Store {
    pub fn keys(&self) -> Keys<'_> {
        Keys(self)
    }
}

impl Keys<'_> {
    /// Creates a key unless the reseller already has 6 live (unexpired) keys; the check and
    /// the insert are one transaction, so concurrent creates cannot exceed the limit.
    pub fn create(
        &self,
        reseller_id: &str,
        name: String,
        permissions: Permissions,
        allowed_ips: IpAllowList,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<NewKey> {
        let name = crate::model::Name::parse(&name)
            .map_err(StoreError::invalid)?
            .into_string();
        if expires_at.is_some_and(|e| e <= now) {
            return Err(StoreError::invalid("expires_at must be in the future"));
        }
        let secret = Secret::generate(KEY_PREFIX);
        let key = ApiKey::new(
            reseller_id,
            name,
            permissions,
            allowed_ips,
            expires_at,
            &secret,
            now,
        );
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        (
            &*t.keys.write(),
            &*t.key_by_hash.write(),
            &t.reseller_keys,
            &t.events,
        )
            .transaction(|(k, kh, rk, events)| {
                let mut ids: Vec<String> = match rk.get(reseller_id.as_bytes())? {
                    Some(raw) => decode(&raw).or_else(abort)?,
                    None => Vec::new(),
                };
                let mut live = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(raw) = k.get(id.as_bytes())? {
                        let existing: ApiKey = decode(&raw).or_else(abort)?;
                        if !existing.is_expired(now) {
                            live.push(id.clone());
                        }
                    }
                }
                if live.len() >= MAX_LIVE_KEYS {
                    return abort(StoreError::KeyLimitReached);
                }
                ids.push(key.id.clone());
                k.insert(key.id.as_bytes(), encode(&key))?;
                kh.insert(&key.hash[..], key.id.as_bytes())?;
                rk.insert(reseller_id.as_bytes(), encode(&ids))?;
                emit(events, subs, reseller_id, "key.created", now, || {
                    Subject::Key(key.clone())
                })?;
                Ok(())
            })?;
        Ok(NewKey { key, secret })
    }

    pub fn list(&self, reseller_id: &str) -> StoreResult<Vec<ApiKey>> {
        let ids: Vec<String> = get(&self.0.t.reseller_keys, reseller_id)?.unwrap_or_default();
        super::load_all(self.0.t.keys.read(), &ids)
    }

    pub fn get(&self, id: &str) -> StoreResult<Option<ApiKey>> {
        get(self.0.t.keys.read(), id)
    }

    pub fn by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
        match self.0.t.key_by_hash.read().get(&hash[..])? {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Deletes a key of this reseller; another reseller's key id is "not found".
    pub fn delete(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        (
            &*t.keys.write(),
            &*t.key_by_hash.write(),
            &t.reseller_keys,
            &t.events,
        )
            .transaction(|(k, kh, rk, events)| {
                let Some(raw) = k.get(id.as_bytes())? else {
                    return abort(StoreError::NotFound("key"));
                };
                let key: ApiKey = decode(&raw).or_else(abort)?;
                if key.reseller_id != reseller_id {
                    return abort(StoreError::NotFound("key"));
                }
                k.remove(id.as_bytes())?;
                kh.remove(&key.hash[..])?;
                if let Some(raw) = rk.get(reseller_id.as_bytes())? {
                    let mut ids: Vec<String> = decode(&raw).or_else(abort)?;
                    ids.retain(|x| x != id);
                    rk.insert(reseller_id.as_bytes(), encode(&ids))?;
                }
                emit(
                    events,
                    subs,
                    reseller_id,
                    "key.deleted",
                    Timestamp::now(),
                    || Subject::Key(key.clone()),
                )?;
                Ok(())
            })?;
        Ok(())
    }

    /// Records a use of the key, at most every 30 s; true if it wrote. Best effort: not
    /// flushed on its own, since losing a `last_used_at` in a crash loses no acknowledged
    /// write. It keeps the credential caches: nothing a request is allowed to do depends on
    /// `last_used_at`, and the caller refreshes its cached copy itself.
    pub fn touch(&self, key: &ApiKey, now: Timestamp) -> StoreResult<bool> {
        if key.last_used_at.is_some_and(|t| now.0 - t.0 < 30_000) {
            return Ok(false);
        }
        // update_and_fetch, not get + put: a key deleted meanwhile must stay deleted.
        let keys = self.0.t.keys.write();
        keys.update_and_fetch(key.id.as_bytes(), |old| {
            let old = old?;
            match decode::<ApiKey>(old) {
                Ok(mut fresh) => {
                    fresh.last_used_at = Some(now);
                    Some(encode(&fresh))
                }
                Err(_) => Some(old.to_vec()),
            }
        })?;
        keys.keep_caches("only last_used_at moved, and the caller refreshes its cached copy");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_used_at_is_written_every_30_seconds_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = store.keys();
        let new = keys
            .create(
                "r1",
                "crm".into(),
                Permissions::all(),
                IpAllowList::default(),
                None,
                Timestamp(1_000),
            )
            .unwrap();
        let stored = |id: &str| keys.get(id).unwrap().unwrap();
        let key = stored(&new.key.id);
        assert!(
            keys.touch(&key, Timestamp(2_000)).unwrap(),
            "first use is written"
        );
        let key = stored(&key.id);
        assert_eq!(key.last_used_at, Some(Timestamp(2_000)));
        assert!(
            !keys.touch(&key, Timestamp(31_999)).unwrap(),
            "not within 30 s"
        );
        assert_eq!(stored(&key.id).last_used_at, Some(Timestamp(2_000)));
        assert!(keys.touch(&key, Timestamp(32_000)).unwrap(), "after 30 s");
        assert_eq!(stored(&key.id).last_used_at, Some(Timestamp(32_000)));
        keys.delete("r1", &key.id).unwrap();
        keys.touch(&key, Timestamp(90_000)).unwrap();
        assert!(
            keys.get(&key.id).unwrap().is_none(),
            "a deleted key stays deleted"
        );
    }
}
