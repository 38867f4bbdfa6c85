//! Access tokens of client users: the record, lookup by the secret's hash, revocation, the
//! per-user list that caps how many a user has, the expiry index and the sweeper's batches.
//! Issuing them is the issuer's job (`issuer.rs`).
//!
//! Trees: `tokens` (id -> record), `token_by_hash` (SHA-256 -> id), `user_tokens` (user id ->
//! the ids of its tokens, oldest first: the cap pops from the front inside the issuing
//! transaction) and `token_expiry` (8-byte big-endian `expires_at` + id -> (), so the sweeper
//! reads the expired ones first without a scan).

use super::*;
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::kv::{ConflictableTransactionResult, TransactionalTree};
use crate::model::Timestamp;
use crate::store::codec::{decode_as, encode_as};
use crate::store::{abort, decode, encode};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessToken {
    pub id: String,
    pub user_id: String,
    pub reseller_id: String,
    pub hash: [u8; 32],
    pub created_at: Timestamp,
    /// `None`: never expires.
    pub expires_at: Option<Timestamp>,
    /// Written at most every 30 s (see `Users::touch_token`).
    pub last_used_at: Option<Timestamp>,
    /// `rt_…a1b2`: the prefix and the secret's last four characters.
    pub masked: String,
}

impl AccessToken {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// The record's layout version (see `codec::encode_as`): 2 added expiry, last use and the mask.
const RECORD: u8 = 2;

/// A token as written before expiry existed: it never expires.
#[derive(Deserialize)]
struct AccessTokenV1 {
    id: String,
    user_id: String,
    reseller_id: String,
    hash: [u8; 32],
    created_at: Timestamp,
}

impl From<AccessTokenV1> for AccessToken {
    fn from(t: AccessTokenV1) -> Self {
        AccessToken {
            id: t.id,
            user_id: t.user_id,
            reseller_id: t.reseller_id,
            hash: t.hash,
            created_at: t.created_at,
            expires_at: None,
            last_used_at: None,
            masked: format!("{}…", crate::model::secret::TOKEN_PREFIX),
        }
    }
}

pub(super) fn read_token(raw: &[u8]) -> StoreResult<AccessToken> {
    decode_as::<AccessToken, AccessTokenV1>(RECORD, raw)
}

pub(super) fn write_token(token: &AccessToken) -> Vec<u8> {
    encode_as(RECORD, token)
}

/// A `token_expiry` key: expiry first, so a range up to now is every expired token.
pub(super) fn expiry_key(at: Timestamp, id: &str) -> Vec<u8> {
    let mut key = (at.0.max(0) as u64).to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

/// The ids of a user's tokens, oldest first.
pub(super) fn token_ids(
    tx: &TransactionalTree,
    user_id: &str,
) -> ConflictableTransactionResult<Vec<String>, StoreError> {
    match tx.get(user_id.as_bytes())? {
        Some(raw) => decode(&raw).or_else(abort),
        None => Ok(Vec::new()),
    }
}

pub(super) fn put_token_ids(
    tx: &TransactionalTree,
    user_id: &str,
    ids: &[String],
) -> ConflictableTransactionResult<(), StoreError> {
    if ids.is_empty() {
        tx.remove(user_id.as_bytes())?;
    } else {
        tx.insert(user_id.as_bytes(), encode(&ids))?;
    }
    Ok(())
}

/// Removes a token's record, hash and expiry entries (not its id from the user's list).
/// Returns the token, or `None` if it was already gone.
pub(super) fn drop_records(
    tx: &UserTx,
    id: &str,
) -> ConflictableTransactionResult<Option<AccessToken>, StoreError> {
    let Some(raw) = tx.tokens.remove(id.as_bytes())? else {
        return Ok(None);
    };
    let token = read_token(&raw).or_else(abort)?;
    tx.token_by_hash.remove(&token.hash[..])?;
    if let Some(at) = token.expires_at {
        tx.token_expiry.remove(expiry_key(at, &token.id))?;
    }
    Ok(Some(token))
}

/// Revokes tokens of one user inside a transaction: their records go, the user's list and
/// its token count shrink. Ids not in the list (already gone) are skipped.
pub(super) fn revoke_in(
    tx: &UserTx,
    reseller_id: &str,
    user_id: &str,
    ids: &[String],
) -> ConflictableTransactionResult<usize, StoreError> {
    let mut list = token_ids(&tx.user_tokens, user_id)?;
    let before = list.len();
    list.retain(|id| !ids.contains(id));
    for id in ids {
        drop_records(tx, id)?;
    }
    put_token_ids(&tx.user_tokens, user_id, &list)?;
    if let Some((mut entry, legacy)) = load_entry(tx, reseller_id, user_id)? {
        entry.tokens = list.len() as u64;
        store_entry(tx, &entry, legacy)?;
    }
    Ok(before - list.len())
}

impl Users<'_> {
    /// The token whose secret hashes to `hash`, expired or not (the caller decides).
    pub fn token_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<AccessToken>> {
        match self.0.t.token_by_hash.read().get(&hash[..])? {
            Some(id) => self.token(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn token(&self, id: &str) -> StoreResult<Option<AccessToken>> {
        self.0
            .t
            .tokens
            .read()
            .get(id.as_bytes())?
            .map(|raw| read_token(&raw))
            .transpose()
    }

    /// A user's tokens, oldest first (at most the reseller's cap, so never a long list).
    pub fn tokens_of(&self, reseller_id: &str, user_id: &str) -> StoreResult<Vec<AccessToken>> {
        self.get(reseller_id, user_id)?;
        let ids: Vec<String> = match self.0.t.user_tokens.get(user_id.as_bytes())? {
            Some(raw) => decode(&raw)?,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.token(&id)?);
        }
        Ok(out)
    }

    /// Revokes a token of this reseller's users (of one user, if `user_id` is given); any
    /// other token is "not found".
    pub fn revoke_token(
        &self,
        reseller_id: &str,
        user_id: Option<&str>,
        id: &str,
    ) -> StoreResult<AccessToken> {
        let token = self
            .token(id)?
            .filter(|t| t.reseller_id == reseller_id)
            .filter(|t| user_id.is_none_or(|u| u == t.user_id))
            .ok_or(StoreError::NotFound("access token"))?;
        let ids = [token.id.clone()];
        let revoked = self.transaction(|tx| revoke_in(tx, reseller_id, &token.user_id, &ids))?;
        if revoked == 0 {
            return Err(StoreError::NotFound("access token"));
        }
        Ok(token)
    }

    /// Revokes every token of a user ("log out everywhere"). Returns how many.
    pub fn revoke_all_tokens(&self, reseller_id: &str, user_id: &str) -> StoreResult<usize> {
        self.get(reseller_id, user_id)?;
        let revoked = self.transaction(|tx| {
            let ids = token_ids(&tx.user_tokens, user_id)?;
            revoke_in(tx, reseller_id, user_id, &ids)
        })?;
        Ok(revoked)
    }

    /// Records a token's use, at most every 30 s. Returns true if it wrote.
    pub fn touch_token(&self, token: &AccessToken, now: Timestamp) -> StoreResult<bool> {
        if token.last_used_at.is_some_and(|t| now.0 - t.0 < 30_000) {
            return Ok(false);
        }
        // update_and_fetch, not get + put: a token revoked meanwhile must stay revoked.
        let tokens = self.0.t.tokens.write();
        tokens.update_and_fetch(token.id.as_bytes(), |old| {
            let old = old?;
            match read_token(old) {
                Ok(mut fresh) => {
                    fresh.last_used_at = Some(now);
                    Some(write_token(&fresh))
                }
                Err(_) => Some(old.to_vec()),
            }
        })?;
        tokens.keep_caches("only last_used_at moved, and the caller refreshes its cached copy");
        Ok(true)
    }

    /// Removes up to `limit` tokens that expired at or before `now`, with every index entry
    /// and their users' counts, in one transaction. Returns how many were removed.
    pub fn sweep_expired(&self, now: Timestamp, limit: usize) -> StoreResult<usize> {
        let end = expiry_key(Timestamp(now.0.saturating_add(1)), "");
        let mut expired = Vec::new();
        for key in self.0.t.token_expiry.range(..end).keys().take(limit) {
            let key = key?;
            expired.push((
                key.to_vec(),
                String::from_utf8_lossy(&key[8..]).into_owned(),
            ));
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let swept = self.transaction(|tx| {
            let mut swept = 0;
            for (key, id) in &expired {
                tx.token_expiry.remove(key.as_slice())?;
                let Some(raw) = tx.tokens.get(id.as_bytes())? else {
                    continue;
                };
                let token = read_token(&raw).or_else(abort)?;
                swept += revoke_in(tx, &token.reseller_id, &token.user_id, &[token.id])?;
            }
            Ok(swept)
        })?;
        Ok(swept)
    }

    /// Data format 5: fills `user_tokens` from the index it replaces ("user_id/token_id" ->
    /// (), in `tokens_by_user`), then drops that tree. Idempotent. Returns how many tokens.
    pub(crate) fn build_token_lists(&self) -> StoreResult<usize> {
        const OLD: &[u8] = b"tokens_by_user";
        let db = &self.0.db;
        if !db.tree_names().iter().any(|n| n == OLD) {
            return Ok(0);
        }
        let old = db.open_tree(OLD)?;
        let mut count = 0;
        let mut current: Option<(String, Vec<String>)> = None;
        let write = |(user, ids): (String, Vec<String>)| -> StoreResult<()> {
            self.0.t.user_tokens.insert(user.as_bytes(), encode(&ids))?;
            Ok(())
        };
        for key in old.iter().keys() {
            let key = key?;
            let key = String::from_utf8_lossy(&key);
            let Some((user, token)) = key.split_once('/') else {
                continue;
            };
            count += 1;
            match &mut current {
                Some((u, ids)) if u == user => ids.push(token.to_string()),
                _ => {
                    if let Some(done) = current.take() {
                        write(done)?;
                    }
                    current = Some((user.to_string(), vec![token.to_string()]));
                }
            }
        }
        if let Some(done) = current {
            write(done)?;
        }
        db.flush()?;
        db.drop_tree(OLD)?;
        Ok(count)
    }

    /// Runs `f` in one transaction over every tree a user and its tokens live in.
    pub(super) fn transaction<T>(
        &self,
        f: impl Fn(&UserTx) -> ConflictableTransactionResult<T, StoreError>,
    ) -> StoreResult<T> {
        let trees = UserTrees::open(&self.0.t);
        let subs = &self.0.subscriptions;
        let result = trees.all()[..].transaction(|v| f(&UserTx::new(v, subs)));
        Ok(result?)
    }
}

/// Removes expired tokens forever: every `interval`, batches of `batch` until none is left.
/// Each batch is one transaction on the blocking pool, run under the write gate like an API
/// write (a backup sees all of a batch or none of it), so the API never waits behind a sweep
/// for more than one batch's commit.
pub async fn sweep_forever(
    store: crate::store::Store,
    interval: std::time::Duration,
    batch: usize,
) {
    let mut tick = crate::store::Store::sweep_interval(interval);
    loop {
        store.next_leading_tick(&mut tick).await;
        let mut swept = 0;
        loop {
            let s = store.clone();
            let now = Timestamp::now();
            let gate = store.write_gate().read_owned().await;
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                let _gate = gate;
                s.users().sweep_expired(now, batch)
            })
            .await;
            match result {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    swept += n;
                    // Durable before anything else: a sweep seen through the API must not come
                    // back after a crash (the tokens it removed may not be expired by then, if
                    // the clock moved).
                    if let Err(e) = store.flush().await {
                        tracing::warn!(error = %e, "cannot flush the token sweep");
                        break;
                    }
                    // A sled transaction commits under a lock every write waits for: resting
                    // as long as the batch took leaves the API at least half of the store
                    // while a large backlog is swept.
                    tokio::time::sleep(started.elapsed()).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot sweep expired access tokens");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the token sweep panicked");
                    break;
                }
            }
        }
        if swept > 0 {
            tracing::info!(swept, "removed expired access tokens");
        }
    }
}
