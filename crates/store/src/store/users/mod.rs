//! Client users of a reseller: unique per reseller by (lowercased) email, indexed by uid, listed
//! per reseller with their token count. Their access tokens are in `tokens.rs`, and issuing them
//! (with the user, in batches) in `issuer.rs`.

pub(crate) mod issuer;
pub(crate) mod tokens;

use super::events::{emit, Subject, Subscriptions};
use super::watched::Written;
use super::{abort, bump, count_of, decode, encode, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::{ConflictableTransactionResult, TransactionalTree};
use crate::model::secret::{Secret, TOKEN_PREFIX};
use crate::model::{Email, Timestamp};
use issuer::{upsert_in, NewToken, Upsert};
use serde::{Deserialize, Serialize};
use tokens::{drop_records, token_ids};

pub use super::records::User;
pub use tokens::AccessToken;

pub struct Users<'a>(pub(super) &'a Store);

impl Store {
    pub fn users(&self) -> Users<'_> {
        Users(self)
    }
}

/// Every tree a user and its tokens live in, opened for one write: the ones a credential
/// resolves through (users and tokens) bump the credential generation when this is dropped,
/// unless `keep_caches` says why the write left every cached credential true.
pub(super) struct UserTrees<'a> {
    users: Written<'a>,
    users_by_reseller: Written<'a>,
    tokens: Written<'a>,
    token_by_hash: Written<'a>,
    t: &'a super::Trees,
}

impl<'a> UserTrees<'a> {
    pub(super) fn open(t: &'a super::Trees) -> UserTrees<'a> {
        UserTrees {
            users: t.users.write(),
            users_by_reseller: t.users_by_reseller.write(),
            tokens: t.tokens.write(),
            token_by_hash: t.token_by_hash.write(),
            t,
        }
    }

    /// The trees, in the order `UserTx::new` reads them.
    pub(super) fn all(&self) -> [&crate::kv::Tree; 10] {
        let t = self.t;
        [
            &self.users,
            &t.user_by_email,
            &self.users_by_reseller,
            &t.counters,
            &self.tokens,
            &self.token_by_hash,
            &t.user_tokens,
            &t.users_by_uid,
            &t.token_expiry,
            &t.events,
        ]
    }

    /// See `Written::keep_caches`.
    pub(super) fn keep_caches(self, why: &'static str) {
        for written in [
            self.users,
            self.users_by_reseller,
            self.tokens,
            self.token_by_hash,
        ] {
            written.keep_caches(why);
        }
    }
}

/// Those trees inside a transaction, by name.
pub(super) struct UserTx {
    /// Format-1 user records (see `load_entry`).
    pub users: TransactionalTree,
    pub user_by_email: TransactionalTree,
    pub users_by_reseller: TransactionalTree,
    pub counters: TransactionalTree,
    pub tokens: TransactionalTree,
    pub token_by_hash: TransactionalTree,
    pub user_tokens: TransactionalTree,
    pub users_by_uid: TransactionalTree,
    pub token_expiry: TransactionalTree,
    pub events: TransactionalTree,
    /// Who listens for user events (see `webhooks::emit`).
    pub subs: Subscriptions,
}

impl UserTx {
    pub(super) fn new(v: &[TransactionalTree], subs: &Subscriptions) -> UserTx {
        UserTx {
            users: v[0].clone(),
            user_by_email: v[1].clone(),
            users_by_reseller: v[2].clone(),
            counters: v[3].clone(),
            tokens: v[4].clone(),
            token_by_hash: v[5].clone(),
            user_tokens: v[6].clone(),
            users_by_uid: v[7].clone(),
            token_expiry: v[8].clone(),
            events: v[9].clone(),
            subs: subs.clone(),
        }
    }
}

/// What a new token's lifetime and its user's cap are (the reseller's settings, or the
/// request's `expires_in`).
#[derive(Clone, Copy, Debug)]
pub struct TokenTerms {
    pub expires_at: Option<Timestamp>,
    /// Live tokens the user may have; issuing one more revokes the oldest.
    pub max_per_user: u32,
}

/// A user with the number of its live tokens, as `users_by_reseller` keeps them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Listed {
    pub user: User,
    pub tokens: u64,
}

pub(super) fn user_count_key(reseller_id: &str) -> String {
    format!("users/{reseller_id}")
}

/// Where a user lived before its index entry held it: the token count of a format-1 user.
pub(super) fn legacy_token_count_key(user_id: &str) -> String {
    format!("tokens/{user_id}")
}

/// A user's `users_by_reseller` key.
pub(crate) fn entry_key(reseller_id: &str, user_id: &str) -> String {
    format!("{reseller_id}/{user_id}")
}

/// A user's index entry, inside a transaction. Entries written by data format 1 are empty: the
/// record then lives in `users` and the token count in `counters`. Returns the entry and
/// whether it came from there.
pub(super) fn load_entry(
    tx: &UserTx,
    reseller_id: &str,
    user_id: &str,
) -> ConflictableTransactionResult<Option<(Listed, bool)>, StoreError> {
    let (users, counters) = (&tx.users, &tx.counters);
    let Some(raw) = tx
        .users_by_reseller
        .get(entry_key(reseller_id, user_id).as_bytes())?
    else {
        return Ok(None);
    };
    if !raw.is_empty() {
        return Ok(Some((decode(&raw).or_else(abort)?, false)));
    }
    let Some(raw) = users.get(user_id.as_bytes())? else {
        return Ok(None);
    };
    let user: User = decode(&raw).or_else(abort)?;
    let tokens = count_of(counters.get(legacy_token_count_key(user_id).as_bytes())?).max(0);
    Ok(Some((
        Listed {
            user,
            tokens: tokens as u64,
        },
        true,
    )))
}

/// Writes a user's index entry, retiring the format-1 record and counter it replaces.
pub(super) fn store_entry(
    tx: &UserTx,
    entry: &Listed,
    legacy: bool,
) -> ConflictableTransactionResult<(), StoreError> {
    let (users, counters) = (&tx.users, &tx.counters);
    let user = &entry.user;
    tx.users_by_reseller.insert(
        entry_key(&user.reseller_id, &user.id).as_bytes(),
        encode(entry),
    )?;
    if legacy {
        users.remove(user.id.as_bytes())?;
        counters.remove(legacy_token_count_key(&user.id).as_bytes())?;
    }
    Ok(())
}

/// A `users_by_uid` key: uids hold no control characters, so NUL ends the uid.
pub(super) fn uid_key(reseller_id: &str, uid: &str, user_id: &str) -> String {
    format!("{reseller_id}/{uid}\0{user_id}")
}

pub(super) fn email_key(reseller_id: &str, email: &Email) -> String {
    format!("{reseller_id}/{email}")
}

pub fn validate_uid(uid: &str) -> StoreResult<String> {
    if uid.is_empty() || uid.len() > 200 || uid.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            "uid must be 1 to 200 characters without control characters",
        ));
    }
    Ok(uid.to_string())
}

impl Users<'_> {
    /// The reseller's user with this email, created if none exists. Returns (user, created).
    /// A uid given for an existing user without one is recorded.
    pub fn find_or_create(
        &self,
        reseller_id: &str,
        email: &Email,
        uid: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<(User, bool)> {
        let mut job = Upsert::new(reseller_id, email, uid, now, None);
        job.max_users = self.0.plans().reseller_limits(reseller_id)?.max_users;
        let out = self.transaction(|tx| upsert_in(tx, &job))?;
        Ok((out.user, out.created))
    }

    /// `POST /access_tokens`: the user (found or created) and a new token, in one transaction
    /// shared with the other requests issuing tokens at the same time (see `Issuer`). Past the
    /// cap, the user's oldest tokens are revoked in the same transaction.
    pub async fn issue_token(
        &self,
        reseller_id: &str,
        email: &Email,
        uid: Option<&str>,
        now: Timestamp,
        terms: TokenTerms,
    ) -> StoreResult<(User, AccessToken, Secret)> {
        let secret = Secret::generate(TOKEN_PREFIX);
        let token = NewToken::new(&secret, terms);
        let mut job = Upsert::new(reseller_id, email, uid, now, Some(token));
        job.max_users = self.0.plans().reseller_limits(reseller_id)?.max_users;
        let out = self.0.issuer.run(job).await?;
        let token = out
            .token
            .ok_or_else(|| StoreError::internal("token not issued"))?;
        Ok((out.user, token, secret))
    }

    /// A user of this reseller, with its token count; anyone else's user is "not found".
    pub fn get_listed(&self, reseller_id: &str, id: &str) -> StoreResult<Listed> {
        let t = &self.0.t;
        let key = entry_key(reseller_id, id);
        // Twice: a format-1 user read while a write converts its entry is found on the second.
        for _ in 0..2 {
            let Some(raw) = t.users_by_reseller.read().get(key.as_bytes())? else {
                break;
            };
            if !raw.is_empty() {
                return decode(&raw);
            }
            if let Some(listed) = self.legacy(id)? {
                return Ok(listed);
            }
        }
        Err(StoreError::NotFound("user"))
    }

    /// A user of this reseller; anyone else's user is "not found".
    pub fn get(&self, reseller_id: &str, id: &str) -> StoreResult<User> {
        self.get_listed(reseller_id, id).map(|l| l.user)
    }

    /// Every user of the reseller, in creation order.
    pub fn list(&self, reseller_id: &str) -> StoreResult<Vec<Listed>> {
        let all = super::Want::Offset {
            offset: 0,
            limit: usize::MAX,
        };
        Ok(self.window(reseller_id, &all)?.items)
    }

    /// How many users the reseller has (a counter kept with every create and delete).
    pub fn count(&self, reseller_id: &str) -> usize {
        let raw = self
            .0
            .t
            .counters
            .get(user_count_key(reseller_id).as_bytes())
            .ok()
            .flatten();
        count_of(raw).max(0) as usize
    }

    /// One page of the reseller's users in creation order, by offset or by seeking to a
    /// cursor (O(per_page) at any depth). Each index entry holds the user and its token count,
    /// so a page is one scan.
    pub fn window(
        &self,
        reseller_id: &str,
        want: &super::Want,
    ) -> StoreResult<super::Window<Listed>> {
        let prefix = format!("{reseller_id}/");
        let window = super::page(self.0.t.users_by_reseller.read(), prefix.as_bytes(), want)?;
        let mut items = Vec::with_capacity(window.items.len());
        for (id, raw) in &window.items {
            if !raw.is_empty() {
                items.push(decode(raw)?);
                continue;
            }
            items.extend(self.legacy(&String::from_utf8_lossy(id))?);
        }
        Ok(window.holding(items))
    }

    /// The reseller's user with this email (compared case-insensitively), from the email
    /// index: one lookup. An address that is not a valid email matches nobody.
    pub fn with_email(&self, reseller_id: &str, email: &str) -> StoreResult<Option<Listed>> {
        let Ok(email) = Email::parse(email) else {
            return Ok(None);
        };
        match self
            .0
            .t
            .user_by_email
            .get(email_key(reseller_id, &email).as_bytes())?
        {
            Some(id) => match self.get_listed(reseller_id, &String::from_utf8_lossy(&id)) {
                Ok(listed) => Ok(Some(listed)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// The reseller's users with this uid, in creation order (an index lookup, not a scan).
    pub fn with_uid(&self, reseller_id: &str, uid: &str) -> StoreResult<Vec<Listed>> {
        let prefix = format!("{reseller_id}/{uid}\0");
        let mut ids = Vec::new();
        for key in self.0.t.users_by_uid.scan_prefix(prefix.as_bytes()).keys() {
            ids.push(String::from_utf8_lossy(&key?[prefix.len()..]).into_owned());
        }
        self.listed_in_order(reseller_id, ids)
    }

    /// These users (ids are time-ordered, so sorting them orders by creation), skipping any
    /// deleted since their id was read.
    fn listed_in_order(&self, reseller_id: &str, mut ids: Vec<String>) -> StoreResult<Vec<Listed>> {
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get_listed(reseller_id, &id) {
                Ok(listed) => out.push(listed),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Data format 3: fills `users_by_uid` from every user. Idempotent, so a migration cut
    /// short is simply run again. Returns how many users have a uid.
    pub(crate) fn build_uid_index(&self) -> StoreResult<usize> {
        let t = &self.0.t;
        let mut indexed = 0;
        for entry in t.users_by_reseller.read().iter() {
            let (key, raw) = entry?;
            let user = if raw.is_empty() {
                let key = String::from_utf8_lossy(&key);
                let id = key.split_once('/').map_or("", |(_, id)| id);
                self.legacy(id)?.map(|l| l.user)
            } else {
                Some(decode::<Listed>(&raw)?.user)
            };
            if let Some(user @ User { uid: Some(uid), .. }) = &user {
                t.users_by_uid
                    .insert(uid_key(&user.reseller_id, uid, &user.id).as_bytes(), &[])?;
                indexed += 1;
            }
        }
        Ok(indexed)
    }

    /// A user whose index entry is from data format 1 (empty): the record and the token count
    /// live in `users` and `counters`.
    fn legacy(&self, id: &str) -> StoreResult<Option<Listed>> {
        let t = &self.0.t;
        let Some(user) = super::get::<User>(t.users.read(), id)? else {
            return Ok(None);
        };
        let raw = t.counters.get(legacy_token_count_key(id).as_bytes())?;
        Ok(Some(Listed {
            user,
            tokens: count_of(raw).max(0) as u64,
        }))
    }

    /// Deletes a user, its sites, and revokes all its tokens.
    pub fn delete(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        let user = self.get(reseller_id, id)?;
        self.0.suspensions().forget(reseller_id, &user.id)?;
        self.0.sites().delete_all_of_user(reseller_id, &user.id)?;
        self.0.domains().delete_all_of_user(reseller_id, &user.id)?;
        self.0.deploys().forget_user(&user.id)?;
        self.transaction(|tx| {
            for id in token_ids(&tx.user_tokens, &user.id)? {
                drop_records(tx, &id)?;
            }
            tx.user_tokens.remove(user.id.as_bytes())?;
            if tx
                .users_by_reseller
                .remove(entry_key(reseller_id, &user.id).as_bytes())?
                .is_some()
            {
                bump(&tx.counters, &user_count_key(reseller_id), -1)?;
            }
            tx.users.remove(user.id.as_bytes())?;
            tx.counters
                .remove(legacy_token_count_key(&user.id).as_bytes())?;
            emit(
                &tx.events,
                &tx.subs,
                reseller_id,
                "user.deleted",
                Timestamp::now(),
                || Subject::User(user.clone()),
            )?;
            tx.user_by_email
                .remove(email_key(reseller_id, &user.email).as_bytes())?;
            if let Some(uid) = &user.uid {
                tx.users_by_uid
                    .remove(uid_key(reseller_id, uid, &user.id).as_bytes())?;
            }
            Ok(())
        })?;
        Ok(())
    }
}
