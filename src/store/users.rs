//! Client users of a reseller and their access tokens. A user is unique per reseller by
//! (lowercased) email; a token belongs to one user and is stored only as SHA-256.

use super::{abort, decode, encode, get, ids_under, Store};
use crate::auth::secret::Secret;
use crate::error::{ApiError, ApiResult};
use crate::model::{new_id, Email, Timestamp};
use serde::{Deserialize, Serialize};
use sled::Transactional;

pub const TOKEN_PREFIX: &str = "rt_";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub reseller_id: String,
    pub email: Email,
    pub uid: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessToken {
    pub id: String,
    pub user_id: String,
    pub reseller_id: String,
    pub hash: [u8; 32],
    pub created_at: Timestamp,
}

pub struct Users<'a>(&'a Store);

impl Store {
    pub fn users(&self) -> Users<'_> {
        Users(self)
    }
}

/// What `upsert` did: the user, whether it was created, and the token if one was asked for.
type Upserted = (User, bool, Option<(AccessToken, Secret)>);

fn user_count_key(reseller_id: &str) -> String {
    format!("users/{reseller_id}")
}

fn token_count_key(user_id: &str) -> String {
    format!("tokens/{user_id}")
}

fn read_count(tree: &sled::Tree, key: &str) -> usize {
    tree.get(key.as_bytes())
        .ok()
        .flatten()
        .and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, |b: [u8; 8]| i64::from_be_bytes(b).max(0) as usize)
}

/// Adds `delta` to a big-endian i64 counter inside a transaction.
fn bump(
    tree: &sled::transaction::TransactionalTree,
    key: &str,
    delta: i64,
) -> sled::transaction::ConflictableTransactionResult<(), ApiError> {
    let now = tree
        .get(key.as_bytes())?
        .and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, i64::from_be_bytes);
    tree.insert(key.as_bytes(), &(now + delta).to_be_bytes())?;
    Ok(())
}

fn email_key(reseller_id: &str, email: &Email) -> String {
    format!("{reseller_id}/{email}")
}

pub fn validate_uid(uid: &str) -> ApiResult<String> {
    if uid.is_empty() || uid.len() > 200 || uid.chars().any(char::is_control) {
        return Err(ApiError::invalid(
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
    ) -> ApiResult<(User, bool)> {
        self.upsert(reseller_id, email, uid, now, false)
            .map(|(user, created, _)| (user, created))
    }

    /// `POST /access_tokens` in one transaction: the user (found or created) and a new token.
    pub fn issue_token(
        &self,
        reseller_id: &str,
        email: &Email,
        uid: Option<&str>,
        now: Timestamp,
    ) -> ApiResult<(User, AccessToken, Secret)> {
        let (user, _, token) = self.upsert(reseller_id, email, uid, now, true)?;
        let (token, secret) = token.ok_or_else(|| ApiError::internal("token not issued"))?;
        Ok((user, token, secret))
    }

    fn upsert(
        &self,
        reseller_id: &str,
        email: &Email,
        uid: Option<&str>,
        now: Timestamp,
        with_token: bool,
    ) -> ApiResult<Upserted> {
        let t = &self.0.t;
        let key = email_key(reseller_id, email);
        let secret = Secret::generate(TOKEN_PREFIX);
        let new_user = User {
            id: new_id(),
            reseller_id: reseller_id.to_string(),
            email: email.clone(),
            uid: uid.map(str::to_string),
            created_at: now,
        };
        let trees = (
            &t.users,
            &t.user_by_email,
            &t.users_by_reseller,
            &t.counters,
            &t.tokens,
            &t.token_by_hash,
            &t.tokens_by_user,
        );
        let uid_recorded = std::cell::Cell::new(false);
        let (user, created, token) = trees.transaction(
            |(u, by_email, by_reseller, counters, tk, by_hash, by_user)| {
                let existing = match by_email.get(key.as_bytes())? {
                    Some(id) => u
                        .get(&id)?
                        .map(|raw| decode::<User>(&raw))
                        .transpose()
                        .or_else(abort)?,
                    None => None,
                };
                let (user, created) = match existing {
                    Some(mut user) => {
                        if user.uid.is_none() && uid.is_some() {
                            uid_recorded.set(true);
                            user.uid = uid.map(str::to_string);
                            let record = encode(&user);
                            u.insert(user.id.as_bytes(), record.clone())?;
                            by_reseller
                                .insert(format!("{reseller_id}/{}", user.id).as_bytes(), record)?;
                        }
                        (user, false)
                    }
                    None => {
                        let record = encode(&new_user);
                        u.insert(new_user.id.as_bytes(), record.clone())?;
                        by_email.insert(key.as_bytes(), new_user.id.as_bytes())?;
                        by_reseller
                            .insert(format!("{reseller_id}/{}", new_user.id).as_bytes(), record)?;
                        bump(counters, &user_count_key(reseller_id), 1)?;
                        (new_user.clone(), true)
                    }
                };
                let token = with_token.then(|| AccessToken {
                    id: new_id(),
                    user_id: user.id.clone(),
                    reseller_id: reseller_id.to_string(),
                    hash: secret.hash(),
                    created_at: now,
                });
                if let Some(token) = &token {
                    tk.insert(token.id.as_bytes(), encode(token))?;
                    by_hash.insert(&token.hash[..], token.id.as_bytes())?;
                    by_user.insert(format!("{}/{}", user.id, token.id).as_bytes(), &[])?;
                    bump(counters, &token_count_key(&user.id), 1)?;
                }
                Ok((user, created, token))
            },
        )?;
        if uid_recorded.get() {
            // A token's cached user carries the uid.
            self.0.credentials_changed();
        }
        Ok((user, created, token.map(|t| (t, secret))))
    }

    /// A user of this reseller; anyone else's user is "not found".
    pub fn get(&self, reseller_id: &str, id: &str) -> ApiResult<User> {
        match get::<User>(&self.0.t.users, id)? {
            Some(u) if u.reseller_id == reseller_id => Ok(u),
            _ => Err(ApiError::NotFound("user")),
        }
    }

    pub fn list(&self, reseller_id: &str) -> ApiResult<Vec<User>> {
        self.page(reseller_id, 0, usize::MAX)
    }

    /// How many users the reseller has (a counter kept with every create and delete).
    pub fn count(&self, reseller_id: &str) -> usize {
        read_count(&self.0.t.counters, &user_count_key(reseller_id))
    }

    /// One page of the reseller's users in creation order, without loading the others. The
    /// index holds a copy of each user record (a covering index), so a page is one scan; entries
    /// written before it did (empty values) are read from the users tree.
    pub fn page(&self, reseller_id: &str, offset: usize, limit: usize) -> ApiResult<Vec<User>> {
        let prefix = format!("{reseller_id}/");
        let mut out = Vec::with_capacity(limit.min(crate::api::MAX_PER_PAGE));
        for entry in self
            .0
            .t
            .users_by_reseller
            .scan_prefix(prefix.as_bytes())
            .skip(offset)
            .take(limit)
        {
            let (key, record) = entry?;
            if !record.is_empty() {
                out.push(decode(&record)?);
                continue;
            }
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(u) = get(&self.0.t.users, &id)? {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// How many live tokens a user has (keys only, nothing decoded).
    pub fn token_count(&self, user_id: &str) -> usize {
        read_count(&self.0.t.counters, &token_count_key(user_id))
    }

    /// Deletes a user, its sites, and revokes all its tokens.
    pub fn delete(&self, reseller_id: &str, id: &str) -> ApiResult<()> {
        let user = self.get(reseller_id, id)?;
        self.0.sites().delete_all_of_user(reseller_id, &user.id)?;
        self.0.domains().delete_all_of_user(reseller_id, &user.id)?;
        for token_id in ids_under(&self.0.t.tokens_by_user, &user.id)? {
            self.revoke_token(reseller_id, &token_id)?;
        }
        let t = &self.0.t;
        (
            &t.users,
            &t.user_by_email,
            &t.users_by_reseller,
            &t.counters,
        )
            .transaction(|(u, by_email, by_reseller, counters)| {
                if u.remove(user.id.as_bytes())?.is_some() {
                    bump(counters, &user_count_key(reseller_id), -1)?;
                }
                counters.remove(token_count_key(&user.id).as_bytes())?;
                by_email.remove(email_key(reseller_id, &user.email).as_bytes())?;
                by_reseller.remove(format!("{reseller_id}/{}", user.id).as_bytes())?;
                Ok(())
            })?;
        self.0.credentials_changed();
        Ok(())
    }

    pub fn token_by_hash(&self, hash: &[u8; 32]) -> ApiResult<Option<AccessToken>> {
        match self.0.t.token_by_hash.get(&hash[..])? {
            Some(id) => get(&self.0.t.tokens, &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn tokens_of(&self, user_id: &str) -> ApiResult<Vec<AccessToken>> {
        let ids = ids_under(&self.0.t.tokens_by_user, user_id)?;
        super::load_all(&self.0.t.tokens, &ids)
    }

    /// Revokes a token of this reseller's users; anyone else's token is "not found".
    pub fn revoke_token(&self, reseller_id: &str, id: &str) -> ApiResult<()> {
        let t = &self.0.t;
        (&t.tokens, &t.token_by_hash, &t.tokens_by_user, &t.counters).transaction(
            |(tk, by_hash, by_user, counters)| {
                let Some(raw) = tk.get(id.as_bytes())? else {
                    return abort(ApiError::NotFound("access token"));
                };
                let token: AccessToken = decode(&raw).or_else(abort)?;
                if token.reseller_id != reseller_id {
                    return abort(ApiError::NotFound("access token"));
                }
                tk.remove(id.as_bytes())?;
                by_hash.remove(&token.hash[..])?;
                by_user.remove(format!("{}/{}", token.user_id, token.id).as_bytes())?;
                bump(counters, &token_count_key(&token.user_id), -1)?;
                Ok(())
            },
        )?;
        self.0.credentials_changed();
        Ok(())
    }
}
