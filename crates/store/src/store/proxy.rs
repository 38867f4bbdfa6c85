//! Proxy profiles (TokenEx's): an origin a reseller's sites (or some users' sites) may proxy to
//! with a `_redirects` 200 rule, and the secret headers the edge adds to each proxied request. At
//! most one profile applies to a site for an origin, so clients of one reseller can each have
//! their own credentials for the same origin. Header values are stored
//! (the edge needs them) and never shown again.

use super::{decode, encode, get, Store};
use crate::error::{StoreError, StoreResult};
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};

/// Profiles per reseller.
pub const MAX_PROFILES: usize = 20;
/// Headers per profile.
pub const MAX_HEADERS: usize = 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxyProfile {
    pub id: String,
    pub reseller_id: String,
    pub name: String,
    /// `scheme://host[:port]`, lower case, without a path.
    pub origin: String,
    /// Added to every proxied request, replacing the visitor's header of the same name.
    pub headers: Vec<(String, String)>,
    /// How long the origin has to start answering, and at most between two chunks of its body.
    pub timeout_ms: u64,
    /// The users whose sites may proxy through it; None: every user of the reseller. A client
    /// not listed gets the plain redirect, never the profile's headers.
    pub user_ids: Option<Vec<String>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn key(reseller_id: &str, id: &str) -> String {
    format!("{reseller_id}/{id}")
}

pub struct ProxyProfiles<'a>(&'a Store);

impl Store {
    pub fn proxy_profiles(&self) -> ProxyProfiles<'_> {
        ProxyProfiles(self)
    }
}

fn origin_taken(origin: &str) -> StoreError {
    StoreError::Conflict(
        crate::error::Conflict::ProxyOriginTaken,
        format!(
            "another proxy profile of this reseller has the origin {origin} for some of the same users"
        ),
    )
}

/// True if two profiles would both apply to some site: the same origin, and users in common
/// (a profile without `user_ids` has them all).
fn overlaps(a: &ProxyProfile, b: &ProxyProfile) -> bool {
    a.origin == b.origin
        && match (&a.user_ids, &b.user_ids) {
            (Some(x), Some(y)) => x.iter().any(|id| y.contains(id)),
            _ => true,
        }
}

impl ProxyProfiles<'_> {
    /// Saves a new profile (its fields already validated by the caller).
    pub fn create(&self, mut profile: ProxyProfile) -> StoreResult<ProxyProfile> {
        // Counted and written under one lock: concurrent creates cannot pass the limit.
        let _counting = self.0.quota_guard()?;
        let existing = self.list(&profile.reseller_id)?;
        if existing.len() >= MAX_PROFILES {
            return Err(StoreError::Conflict(
                crate::error::Conflict::ProxyProfileLimitReached,
                format!("a reseller has at most {MAX_PROFILES} proxy profiles"),
            ));
        }
        if existing.iter().any(|p| overlaps(p, &profile)) {
            return Err(origin_taken(&profile.origin));
        }
        profile.id = new_id();
        self.0.t.proxy_profiles.insert(
            key(&profile.reseller_id, &profile.id).as_bytes(),
            encode(&profile),
        )?;
        Ok(profile)
    }

    /// A reseller's profiles, oldest first.
    pub fn list(&self, reseller_id: &str) -> StoreResult<Vec<ProxyProfile>> {
        self.0
            .t
            .proxy_profiles
            .scan_prefix(format!("{reseller_id}/").as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    pub fn get(&self, reseller_id: &str, id: &str) -> StoreResult<ProxyProfile> {
        get(&self.0.t.proxy_profiles, &key(reseller_id, id))?
            .ok_or(StoreError::NotFound("proxy profile"))
    }

    /// The reseller's profile for `origin` (`scheme://host[:port]`, lower case) that `user_id`'s
    /// sites may use, if any.
    pub fn for_origin(
        &self,
        reseller_id: &str,
        user_id: &str,
        origin: &str,
    ) -> StoreResult<Option<ProxyProfile>> {
        Ok(self.list(reseller_id)?.into_iter().find(|p| {
            p.origin == origin
                && p.user_ids
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|id| id == user_id))
        }))
    }

    /// Replaces a profile (same id and reseller).
    pub fn put(&self, profile: &ProxyProfile) -> StoreResult<()> {
        let _counting = self.0.quota_guard()?;
        self.get(&profile.reseller_id, &profile.id)?;
        let others = self.list(&profile.reseller_id)?;
        if others
            .iter()
            .any(|p| p.id != profile.id && overlaps(p, profile))
        {
            return Err(origin_taken(&profile.origin));
        }
        self.0.t.proxy_profiles.insert(
            key(&profile.reseller_id, &profile.id).as_bytes(),
            encode(profile),
        )?;
        Ok(())
    }

    pub fn delete(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        self.get(reseller_id, id)?;
        self.0
            .t
            .proxy_profiles
            .remove(key(reseller_id, id).as_bytes())?;
        Ok(())
    }

    /// Forgets a deleted reseller's profiles.
    pub fn delete_all(&self, reseller_id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        for k in t
            .proxy_profiles
            .scan_prefix(format!("{reseller_id}/").as_bytes())
            .keys()
        {
            t.proxy_profiles.remove(k?)?;
        }
        Ok(())
    }
}
