//! Sites: owned by one user of a reseller, named by a DNS label unique on the whole instance
//! (`site_by_name`), optionally password-protected (argon2id), pointing at a published deploy.

use super::events::{emit, Subject};
use super::{abort, decode, encode, get, ids_under, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::secret::hashes_equal;
use crate::model::{new_id, DomainName, SiteName, Timestamp};
use rand::RngCore;

pub use super::records::{PasswordHash, Site};
use sha2::{Digest, Sha256};

impl PasswordHash {
    /// Argon2id (the argon2 crate's defaults: 19 MiB, 2 passes) of the password with a random salt.
    /// Slow by design: call it off the async workers (`PasswordHash::off_workers`).
    pub fn new(password: &str) -> PasswordHash {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        PasswordHash {
            salt,
            hash: Self::argon2(&salt, password),
        }
    }

    fn argon2(salt: &[u8; 16], password: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Only fails for parameters out of range, and these are fixed and valid.
        if argon2::Argon2::default()
            .hash_password_into(password.as_bytes(), salt, &mut out)
            .is_err()
        {
            rand::thread_rng().fill_bytes(&mut out);
        }
        out
    }

    /// `new`, on the blocking pool.
    pub async fn off_workers(password: String) -> StoreResult<PasswordHash> {
        tokio::task::spawn_blocking(move || PasswordHash::new(&password))
            .await
            .map_err(StoreError::internal)
    }

    /// Passwords set before argon2 were salted SHA-256; they keep working until changed.
    fn legacy_sha256(salt: &[u8; 16], password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Slow by design: call it off the async workers.
    pub fn verify(&self, password: &str) -> bool {
        hashes_equal(&self.hash, &Self::argon2(&self.salt, password))
            || hashes_equal(&self.hash, &Self::legacy_sha256(&self.salt, password))
    }
}

/// A partial update; `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Default)]
pub struct SitePatch {
    pub name: Option<SiteName>,
    pub custom_domain: Option<Option<DomainName>>,
    /// Hashed by the caller (`PasswordHash::new` is slow by design: off the async workers).
    pub password: Option<Option<PasswordHash>>,
}

pub struct Sites<'a>(&'a Store);

impl Store {
    pub fn sites(&self) -> Sites<'_> {
        Sites(self)
    }
}

fn taken(name: &SiteName) -> StoreError {
    StoreError::Conflict(
        crate::error::Conflict::SiteNameTaken,
        format!("the site name {name} is taken"),
    )
}

impl Sites<'_> {
    /// Creates a site for a user; a missing name is generated.
    pub fn create(
        &self,
        reseller_id: &str,
        user_id: &str,
        name: Option<SiteName>,
        custom_domain: Option<DomainName>,
        password: Option<PasswordHash>,
        now: Timestamp,
    ) -> StoreResult<Site> {
        let explicit = name.is_some();
        // Counted and written under one lock: concurrent creates cannot pass the limit.
        let max = self.0.plans().limits_of(reseller_id, user_id)?.0.max_sites;
        let _counting = max.map(|_| self.0.quota_guard()).transpose()?;
        if max.is_some() {
            let owned = self
                .0
                .t
                .sites_by_owner
                .scan_prefix(format!("{reseller_id}/{user_id}/").as_bytes())
                .count();
            super::plans::check("max_sites", owned as u64, max)?;
        }
        for _ in 0..8 {
            let site = Site {
                id: new_id(),
                reseller_id: reseller_id.to_string(),
                user_id: user_id.to_string(),
                name: name.clone().unwrap_or_else(SiteName::generate),
                custom_domain: custom_domain.clone(),
                password: password.clone(),
                published_deploy: None,
                created_at: now,
                updated_at: now,
            };
            let (t, subs) = (&self.0.t, &self.0.subscriptions);
            let user_key = super::users::entry_key(reseller_id, user_id);
            let result = (
                &*t.sites.write(),
                &*t.site_by_name.write(),
                &t.sites_by_owner,
                t.users_by_reseller.read(),
                &t.events,
            )
                .transaction(|(s, by_name, by_owner, users, events)| {
                    // Every user of the reseller has an entry here.
                    if users.get(user_key.as_bytes())?.is_none() {
                        return abort(StoreError::NotFound("user"));
                    }
                    if by_name.get(site.name.as_str().as_bytes())?.is_some() {
                        return abort(taken(&site.name));
                    }
                    s.insert(site.id.as_bytes(), encode(&site))?;
                    by_name.insert(site.name.as_str().as_bytes(), site.id.as_bytes())?;
                    by_owner.insert(owner_key(&site).as_bytes(), &[])?;
                    emit(events, subs, reseller_id, "site.created", now, || {
                        Subject::Site(site.clone())
                    })?;
                    Ok(())
                });
            match result {
                Ok(()) => {
                    return Ok(site);
                }
                Err(crate::kv::TransactionError::Abort(StoreError::Conflict(..))) if !explicit => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::internal("could not generate a free site name"))
    }

    pub fn get(&self, id: &str) -> StoreResult<Option<Site>> {
        get(self.0.t.sites.read(), id)
    }

    pub fn by_name(&self, name: &str) -> StoreResult<Option<Site>> {
        match self.0.t.site_by_name.read().get(name.as_bytes())? {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// A reseller's sites, or one user's when `user_id` is given, oldest first.
    pub fn list(&self, reseller_id: &str, user_id: Option<&str>) -> StoreResult<Vec<Site>> {
        let prefix = match user_id {
            Some(u) => format!("{reseller_id}/{u}"),
            None => reseller_id.to_string(),
        };
        let ids: Vec<String> = ids_under(&self.0.t.sites_by_owner, &prefix)?
            .into_iter()
            .map(|k| k.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        let mut sites: Vec<Site> = super::load_all(self.0.t.sites.read(), &ids)?;
        sites.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(sites)
    }

    pub fn update(&self, id: &str, patch: SitePatch, now: Timestamp) -> StoreResult<Site> {
        let password = patch.password.clone();
        let t = &self.0.t;
        let site = (&*t.sites.write(), &*t.site_by_name.write()).transaction(|(s, by_name)| {
            let Some(raw) = s.get(id.as_bytes())? else {
                return abort(StoreError::NotFound("site"));
            };
            let mut site: Site = decode(&raw).or_else(abort)?;
            if let Some(name) = &patch.name {
                if name != &site.name {
                    if by_name.get(name.as_str().as_bytes())?.is_some() {
                        return abort(taken(name));
                    }
                    by_name.remove(site.name.as_str().as_bytes())?;
                    by_name.insert(name.as_str().as_bytes(), id.as_bytes())?;
                    site.name = name.clone();
                }
            }
            if let Some(d) = &patch.custom_domain {
                site.custom_domain = d.clone();
            }
            if let Some(p) = &password {
                site.password = p.clone();
            }
            site.updated_at = now;
            s.insert(id.as_bytes(), encode(&site))?;
            Ok(site)
        })?;
        Ok(site)
    }

    /// Deletes a site with its deploys, forms and submissions, then sweeps unreferenced blobs.
    pub fn delete(&self, id: &str) -> StoreResult<()> {
        let Some(site) = self.get(id)? else {
            return Err(StoreError::NotFound("site"));
        };
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        (
            &*t.sites.write(),
            &*t.site_by_name.write(),
            &t.sites_by_owner,
            &t.events,
        )
            .transaction(|(s, by_name, by_owner, events)| {
                s.remove(site.id.as_bytes())?;
                by_name.remove(site.name.as_str().as_bytes())?;
                by_owner.remove(owner_key(&site).as_bytes())?;
                let now = Timestamp::now();
                emit(events, subs, &site.reseller_id, "site.deleted", now, || {
                    Subject::Site(site.clone())
                })?;
                Ok(())
            })?;
        self.0.domains().detach_site(&site.reseller_id, &site.id)?;
        self.0.deploys().delete_all_of_site(&site)?;
        self.0.forms().delete_all_of_site(&site.id)?;
        self.0.builds().delete_all_of_site(&site.id)?;
        self.0
            .env()
            .delete_all_of_site(&site.reseller_id, &site.user_id, &site.id)?;
        self.0.collect_garbage()?;
        Ok(())
    }

    /// Deletes every site of a user (the user is being deleted).
    pub fn delete_all_of_user(&self, reseller_id: &str, user_id: &str) -> StoreResult<()> {
        for site in self.list(reseller_id, Some(user_id))? {
            self.delete(&site.id)?;
        }
        Ok(())
    }
}

fn owner_key(site: &Site) -> String {
    format!("{}/{}/{}", site.reseller_id, site.user_id, site.id)
}

impl Store {
    /// Mark and sweep: every blob no deploy refers to is removed.
    pub fn collect_garbage(&self) -> StoreResult<usize> {
        self.sweep_blobs(None)
    }

    /// The periodic sweep: unfinished deploys untouched since `expire_before` fail and free
    /// their files, then every blob no deploy refers to and older than `grace` is removed, so
    /// no path (a refused upload, a crash between storing a file and its deploy) leaves bytes
    /// behind for good.
    pub fn sweep_unreferenced(
        &self,
        expire_before: Timestamp,
        grace: std::time::Duration,
        now: Timestamp,
    ) -> StoreResult<(usize, usize)> {
        let expired = self.deploys().expire_unfinished(expire_before, now)?;
        Ok((expired, self.sweep_blobs(Some(grace))?))
    }

    /// How many local blobs no deploy names, and their bytes.
    pub fn unreferenced_blobs(&self) -> StoreResult<(usize, u64)> {
        self.blobs.unreferenced(&self.live_blobs(false)?)
    }

    /// Every blob GC keeps: the files deploys name, their precompressed variants (with `prune`,
    /// the records of originals no deploy names are dropped) and what is pinned.
    fn live_blobs(&self, prune: bool) -> StoreResult<std::collections::HashSet<String>> {
        let mut live = self.deploys().referenced_blobs()?;
        let variants = self.encodings().keep_for(&live, prune)?;
        live.extend(variants);
        live.extend(self.blobs.pinned());
        Ok(live)
    }

    fn sweep_blobs(&self, local_grace: Option<std::time::Duration>) -> StoreResult<usize> {
        let local = self.gc_lock.write().unwrap_or_else(|e| e.into_inner());
        let _exclusive = self.held(local, &[(super::lock_key::GC, false)])?;
        let live = self.live_blobs(true)?;
        self.blobs.sweep(&live, local_grace)
    }
}

/// The periodic sweep (`Store::sweep_unreferenced`), every `interval` on the leader: unfinished
/// deploys older than `expire_after` fail, and blobs unreferenced for longer than `grace` go.
pub async fn sweep_unreferenced_forever(
    store: Store,
    interval: std::time::Duration,
    expire_after: std::time::Duration,
    grace: std::time::Duration,
) {
    let mut tick = Store::sweep_interval(interval);
    // The first round comes one interval after the start, not with it: a start (a restart at
    // a million records) does not walk every deploy and file.
    tick.tick().await;
    loop {
        store.next_leading_tick(&mut tick).await;
        let s = store.clone();
        let gate = store.write_gate().read_owned().await;
        let result = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            let now = Timestamp::now();
            s.sweep_unreferenced(now.plus_secs(-(expire_after.as_secs() as i64)), grace, now)
        })
        .await;
        match result {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((expired, removed))) => {
                tracing::info!(
                    expired,
                    removed,
                    "expired unfinished deploys and swept unreferenced files"
                );
                if let Err(e) = store.flush().await {
                    tracing::warn!(error = %e, "cannot flush the deploy expiry");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot sweep unreferenced files"),
            Err(e) => tracing::warn!(error = %e, "the file sweep stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2_and_legacy_hashes_still_verify() {
        let pw = PasswordHash::new("open sesame");
        assert!(pw.verify("open sesame"));
        assert!(!pw.verify("open sesame!"));
        assert_ne!(
            pw.hash,
            PasswordHash::legacy_sha256(&pw.salt, "open sesame"),
            "new hashes are not SHA-256"
        );
        let salt = [7u8; 16];
        let legacy = PasswordHash {
            salt,
            hash: PasswordHash::legacy_sha256(&salt, "old"),
        };
        assert!(legacy.verify("old"));
        assert!(!legacy.verify("new"));
    }
}
