//! A read-through cache of resolved credentials, so an authenticated request does not read and
//! decode the key (or token), the reseller and the user on every call.
//!
//! Correctness rests on the store's credentials generation, bumped after every write that can
//! change what a cached entry says (keys deleted, resellers updated, suspended or deleted,
//! tokens revoked, users changed or deleted). A key's or token's `last_used_at` is the
//! exception: the request that writes it refreshes the entry itself. A token's expiry is
//! checked on every use, cached or not. An entry remembers the generation read
//! *before* its records were loaded and is used only while the generation is unchanged, so a
//! write racing with a load can only make the entry unusable, never stale.

use crate::error::ApiResult;
use crate::store::keys::ApiKey;
use crate::store::resellers::Reseller;
use crate::store::users::{AccessToken, User};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Entries kept at most; past it the cache starts over. Only valid credentials enter it.
const CAPACITY: usize = 10_000;

#[derive(Clone)]
pub enum CachedCredential {
    Key(Arc<(ApiKey, Reseller)>),
    /// The token, its user, the reseller, and whether the user is suspended.
    Token(Arc<(AccessToken, User, Reseller, bool)>),
}

#[derive(Default)]
pub struct CredentialCache {
    entries: RwLock<HashMap<[u8; 32], (u64, CachedCredential)>>,
}

impl CredentialCache {
    /// What the credential with this SHA-256 resolves to: the cached entry if still current at
    /// `generation` (read before `load` reads any record), else what `load` finds, then cached.
    pub fn resolve(
        &self,
        hash: [u8; 32],
        generation: u64,
        load: impl FnOnce() -> ApiResult<CachedCredential>,
    ) -> ApiResult<CachedCredential> {
        if let Some(resolved) = self.get(&hash, generation) {
            return Ok(resolved);
        }
        let resolved = load()?;
        self.put(hash, generation, resolved.clone());
        Ok(resolved)
    }

    /// What the credential with this SHA-256 resolved to, if still current at `generation`.
    fn get(&self, hash: &[u8; 32], generation: u64) -> Option<CachedCredential> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        match entries.get(hash) {
            Some((g, resolved)) if *g == generation => Some(resolved.clone()),
            _ => None,
        }
    }

    /// Remembers a resolution whose records were read at or after `generation`.
    pub fn put(&self, hash: [u8; 32], generation: u64, resolved: CachedCredential) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(hash, (generation, resolved));
    }
}
