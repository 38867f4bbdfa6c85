//! Deploys: a map path -> SHA-1 for one site. Netlify's digest flow: the client sends the map,
//! gets back the digests the blob store lacks (`required`), uploads them, and the deploy goes
//! `ready` (and is published unless draft) once nothing is missing.
//!
//! The map, the required list and the still-missing digests live in their own trees
//! (`deploy_files` "deploy/path" -> sha, `deploy_required`, `deploy_pending` "deploy/sha"), so an
//! upload touches two small keys instead of rewriting a record that grows with the site.

use super::events::{emit, Subject};
use super::{abort, blobs, decode, encode, get, ids_under, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::{new_id, Timestamp};

pub use super::records::{Deploy, DeployState};
use std::collections::{BTreeMap, BTreeSet, HashSet};

impl DeployState {
    pub fn name(self) -> &'static str {
        match self {
            DeployState::New => "new",
            DeployState::Prepared => "prepared",
            DeployState::Ready => "ready",
            DeployState::Error => "error",
            DeployState::Enqueued => "enqueued",
            DeployState::Building => "building",
        }
    }
}

/// Options of a new deploy.
pub struct NewDeploy {
    pub draft: bool,
    pub title: Option<String>,
    pub branch: Option<String>,
}

/// A deploy path made safe: no leading slash, no `.`/`..`/empty segments, no NUL or backslash.
pub fn normalize_path(raw: &str) -> StoreResult<String> {
    let bad = |why: &str| StoreError::invalid(format!("invalid file path {raw:?}: {why}"));
    if raw.contains('\0') || raw.contains('\\') {
        return Err(bad("NUL and backslash are not allowed"));
    }
    let mut parts = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Err(bad("'..' is not allowed")),
            s if s.chars().any(char::is_control) => {
                return Err(bad("control characters are not allowed"))
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(bad("empty path"));
    }
    let path = parts.join("/");
    if path.len() > 1024 {
        return Err(bad("longer than 1024 bytes"));
    }
    Ok(path)
}

/// Validates a client's file map: paths normalised, digests lowercase SHA-1, at most `max_files`.
pub fn validate_files(
    raw: BTreeMap<String, String>,
    max_files: usize,
) -> StoreResult<BTreeMap<String, String>> {
    if raw.len() > max_files {
        return Err(StoreError::TooManyFiles(max_files));
    }
    let mut files = BTreeMap::new();
    for (path, sha) in raw {
        let sha = sha.trim().to_ascii_lowercase();
        if !blobs::is_sha1(&sha) {
            return Err(StoreError::invalid(format!(
                "the digest of {path:?} is not a SHA-1 hex string"
            )));
        }
        files.insert(normalize_path(&path)?, sha);
    }
    Ok(files)
}

pub struct Deploys<'a>(&'a Store);

impl Store {
    pub fn deploys(&self) -> Deploys<'_> {
        Deploys(self)
    }
}

fn site_key(site_id: &str, id: &str) -> String {
    format!("{site_id}/{id}")
}

impl Deploys<'_> {
    /// A new deploy; with a file map it is prepared at once (and may already be ready).
    pub fn create(
        &self,
        site: &super::sites::Site,
        opts: NewDeploy,
        files: Option<BTreeMap<String, String>>,
        now: Timestamp,
    ) -> StoreResult<Deploy> {
        let deploy = Deploy {
            id: new_id(),
            site_id: site.id.clone(),
            reseller_id: site.reseller_id.clone(),
            user_id: site.user_id.clone(),
            state: DeployState::New,
            draft: opts.draft,
            title: opts.title,
            branch: opts.branch,
            file_count: 0,
            error_message: None,
            created_at: now,
            updated_at: now,
            published_at: None,
        };
        let t = &self.0.t;
        let month = super::usage::month_of(now);
        let counted = super::usage::deploys_key(&deploy.site_id, &month);
        (&*t.deploys.write(), &t.deploys_by_site, &t.counters).transaction(
            |(d, by_site, counters)| {
                d.insert(deploy.id.as_bytes(), encode(&deploy))?;
                by_site.insert(site_key(&deploy.site_id, &deploy.id).as_bytes(), &[])?;
                super::bump(counters, &counted, 1)?;
                Ok(())
            },
        )?;
        let Some(files) = files else {
            return Ok(deploy);
        };
        // A refused map (over quota, a deploy gone meanwhile) leaves no deploy behind: a
        // refusal changes nothing.
        self.set_files(&deploy.id, files, now).inspect_err(|_| {
            // What the map counted, if it got that far, is given back with it.
            if let Err(e) = self.drop_map(&deploy.id, &deploy.user_id, &deploy.site_id) {
                tracing::warn!(error = %e, deploy = %deploy.id, "cannot release a refused deploy's map");
            }
            let undone = (&*t.deploys.write(), &t.deploys_by_site, &t.counters).transaction(
                |(d, by_site, counters)| {
                    d.remove(deploy.id.as_bytes())?;
                    by_site.remove(site_key(&deploy.site_id, &deploy.id).as_bytes())?;
                    super::bump(counters, &counted, -1)?;
                    Ok(())
                },
            );
            if let Err(e) = undone {
                tracing::warn!(error = %e, deploy = %deploy.id, "cannot remove a refused deploy; it expires");
            }
        })
    }

    /// Fails every deploy still `new` or `prepared` (files never all uploaded) that has not
    /// changed since `before`, as a cancel does: its map goes and its files stop counting, so
    /// the next sweep can remove them. Returns how many expired.
    pub fn expire_unfinished(&self, before: Timestamp, now: Timestamp) -> StoreResult<usize> {
        let stale = |d: &Deploy| {
            matches!(d.state, DeployState::New | DeployState::Prepared) && d.updated_at < before
        };
        let mut candidates = Vec::new();
        for raw in self.0.t.deploys.read().iter().values() {
            let d: Deploy = decode(&raw?)?;
            if stale(&d) {
                candidates.push(d.id);
            }
        }
        let mut expired = 0;
        for id in candidates {
            // Read again under the map's lock: an upload may have finished it meanwhile.
            let _map = self.0.map_lock(&id)?;
            if !self.get(&id)?.is_some_and(|d| stale(&d)) {
                continue;
            }
            let d = self.modify(&id, now, |d| {
                d.state = DeployState::Error;
                d.error_message = Some("expired: its files were not all uploaded in time".into());
                Ok(())
            })?;
            if d.state == DeployState::Error {
                self.drop_map(&id, &d.user_id, &d.site_id)?;
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// A deploy a build will fill: `enqueued` until the runner starts it.
    pub fn create_enqueued(
        &self,
        site: &super::sites::Site,
        opts: NewDeploy,
        now: Timestamp,
    ) -> StoreResult<Deploy> {
        let deploy = self.create(site, opts, None, now)?;
        self.modify(&deploy.id, now, |d| {
            d.state = DeployState::Enqueued;
            Ok(())
        })
    }

    /// A build's deploy goes `building` (or back to `enqueued` when its build waits again).
    pub fn set_building(&self, id: &str, building: bool, now: Timestamp) -> StoreResult<()> {
        self.modify(id, now, |d| {
            if matches!(d.state, DeployState::Enqueued | DeployState::Building) {
                d.state = if building {
                    DeployState::Building
                } else {
                    DeployState::Enqueued
                };
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Fails a deploy not yet ready with `reason`, giving back what its map counted.
    pub fn fail(&self, id: &str, reason: &str, now: Timestamp) -> StoreResult<()> {
        let _map = self.0.map_lock(id)?;
        let Some(d) = self.get(id)? else {
            return Ok(());
        };
        if matches!(d.state, DeployState::Ready | DeployState::Error) {
            return Ok(());
        }
        let d = self.modify(id, now, |d| {
            d.state = DeployState::Error;
            d.error_message = Some(reason.to_string());
            Ok(())
        })?;
        self.drop_map(id, &d.user_id, &d.site_id)
    }

    /// Records the file map of a deploy not yet ready and computes what must be uploaded.
    pub fn set_files(
        &self,
        id: &str,
        files: BTreeMap<String, String>,
        now: Timestamp,
    ) -> StoreResult<Deploy> {
        // Read under the map's lock: a concurrent PUT or final upload cannot interleave. Blob
        // GC waits meanwhile (see `blobs_in_use`).
        let _map_and_blobs = self.0.map_lock_and_blobs(id)?;
        let deploy = self.get(id)?.ok_or(StoreError::NotFound("deploy"))?;
        if matches!(deploy.state, DeployState::Ready | DeployState::Error) {
            return Err(StoreError::invalid(format!(
                "the deploy is {} and can no longer change",
                deploy.state.name()
            )));
        }
        // Content counts as present only if this user proved they have it (uploaded it, or
        // deployed it in a zip): naming another tenant's digest gets it `required`, and the
        // answer never tells whether anyone else on the instance has that content.
        let needed: BTreeSet<&String> = files.values().collect();
        let required: Vec<String> = needed
            .into_iter()
            .filter(|sha| !self.known_to(&deploy.user_id, sha))
            .cloned()
            .collect();
        // The storage the map adds is counted, and checked against the user's plan, before
        // anything is written; a second PUT replaces the first map, releasing its digests.
        let storage = self.0.storage();
        let change = super::storage::Change {
            released: self.files(id)?.into_values().collect(),
            added: storage.sized(&deploy.user_id, &files),
        };
        let max = self
            .0
            .plans()
            .limits_of(&deploy.reseller_id, &deploy.user_id)?
            .0
            .max_storage_mb;
        storage.charge(&deploy.user_id, &deploy.site_id, &change, max)?;
        let t = &self.0.t;
        self.clear_maps(id)?;
        let mut batch = crate::kv::Batch::default();
        for (path, sha) in &files {
            batch.insert(site_key(id, path).as_bytes(), sha.as_bytes());
        }
        t.deploy_files.apply_batch(batch)?;
        let mut batch = crate::kv::Batch::default();
        for sha in &required {
            batch.insert(site_key(id, sha).as_bytes(), &[]);
        }
        t.deploy_pending.apply_batch(batch)?;
        t.deploy_required.insert(id.as_bytes(), encode(&required))?;
        let count = files.len();
        self.modify(id, now, |d| {
            if matches!(d.state, DeployState::Ready | DeployState::Error) {
                return Err(StoreError::invalid("the deploy can no longer change"));
            }
            d.file_count = count;
            d.state = DeployState::Prepared;
            Ok(())
        })
    }

    /// Stores an uploaded file (written to `incoming`) after checking its digest against the
    /// deploy's map; a mismatch stores nothing.
    pub fn upload(
        &self,
        id: &str,
        path: &str,
        incoming: blobs::Incoming,
        now: Timestamp,
    ) -> StoreResult<Deploy> {
        let deploy = self.get(id)?.ok_or(StoreError::NotFound("deploy"))?;
        let max = self
            .0
            .plans()
            .limits_of(&deploy.reseller_id, &deploy.user_id)?
            .0
            .max_storage_mb;
        let actual = incoming.digest();
        {
            // The map and the counts are read and changed under the map's lock (see
            // `set_files`); the blob itself is written outside it, so uploads run in parallel.
            let _map = self.0.map_lock(id)?;
            let expected = self
                .file_sha(id, path)?
                .ok_or(StoreError::NotFound("file in this deploy"))?;
            if actual != expected {
                return Err(StoreError::ChecksumMismatch(format!(
                    "the SHA-1 of the uploaded {path:?} is {actual}, the deploy expects {expected}"
                )));
            }
            self.0.storage().arrived(
                &deploy.user_id,
                &deploy.site_id,
                &actual,
                incoming.len(),
                max,
            )?;
        }
        self.0.blobs.commit(incoming)?;
        self.remember(&deploy.user_id, &actual)?;
        let _map = self.0.map_lock(id)?;
        let t = &self.0.t;
        t.deploy_pending.remove(site_key(id, &actual).as_bytes())?;
        // Whoever removes the last missing digest sees an empty set and makes the deploy ready;
        // `modify` makes that transition happen once.
        self.modify(id, now, |_| Ok(()))
    }

    /// True if `user_id` proved it has the content `sha` (see `set_files`) and it is stored.
    pub fn known_to(&self, user_id: &str, sha: &str) -> bool {
        self.claimed_by(user_id, sha) && self.0.blobs.has(sha)
    }

    /// True if `user_id` uploaded or deployed the content `sha` (it may since have been swept).
    pub(crate) fn claimed_by(&self, user_id: &str, sha: &str) -> bool {
        self.0
            .t
            .user_blobs
            .contains_key(site_key(user_id, sha).as_bytes())
            .unwrap_or(false)
    }

    /// Records that `user_id` has the content `sha` (it uploaded or deployed it).
    pub fn remember(&self, user_id: &str, sha: &str) -> StoreResult<()> {
        self.0
            .t
            .user_blobs
            .insert(site_key(user_id, sha).as_bytes(), &[])?;
        Ok(())
    }

    /// Forgets every digest of a user (the user is being deleted).
    pub fn forget_user(&self, user_id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        let mut batch = crate::kv::Batch::default();
        for k in t
            .user_blobs
            .scan_prefix(format!("{user_id}/").as_bytes())
            .keys()
        {
            batch.remove(k?);
        }
        t.user_blobs.apply_batch(batch)?;
        Ok(())
    }

    /// Gives every user the digests its existing deploys name (data format 4).
    pub(crate) fn build_user_blobs(&self) -> StoreResult<usize> {
        let mut n = 0;
        for raw in self.0.t.deploys.read().iter().values() {
            let deploy: Deploy = decode(&raw?)?;
            for sha in self.files(&deploy.id)?.values() {
                self.remember(&deploy.user_id, sha)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The digest a deploy expects at `path`.
    pub fn file_sha(&self, id: &str, path: &str) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .t
            .deploy_files
            .get(site_key(id, path).as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// A deploy's map path -> SHA-1.
    pub fn files(&self, id: &str) -> StoreResult<BTreeMap<String, String>> {
        let prefix = format!("{id}/");
        self.0
            .t
            .deploy_files
            .scan_prefix(prefix.as_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// The digests the client was asked to upload.
    pub fn required(&self, id: &str) -> StoreResult<Vec<String>> {
        Ok(get(&self.0.t.deploy_required, id)?.unwrap_or_default())
    }

    /// How many required digests have not arrived yet.
    pub fn pending_count(&self, id: &str) -> usize {
        self.0
            .t
            .deploy_pending
            .scan_prefix(format!("{id}/").as_bytes())
            .count()
    }

    /// Releases the storage a deploy's map holds for its user and site, then clears the map.
    fn drop_map(&self, id: &str, user_id: &str, site_id: &str) -> StoreResult<()> {
        let change = super::storage::Change {
            released: self.files(id)?.into_values().collect(),
            added: BTreeMap::new(),
        };
        self.0.storage().charge(user_id, site_id, &change, None)?;
        self.clear_maps(id)
    }

    fn clear_maps(&self, id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        let prefix = format!("{id}/");
        for tree in [&t.deploy_files, &t.deploy_pending] {
            let mut batch = crate::kv::Batch::default();
            for k in tree.scan_prefix(prefix.as_bytes()).keys() {
                batch.remove(k?);
            }
            tree.apply_batch(batch)?;
        }
        t.deploy_required.remove(id.as_bytes())?;
        Ok(())
    }

    /// Marks a deploy that is not ready as failed (`POST /deploys/{id}/cancel`). A canceled
    /// deploy can never be served, so its map goes and its files stop counting as the user's
    /// storage (the next sweep removes those no other deploy names).
    pub fn cancel(&self, id: &str, now: Timestamp) -> StoreResult<Deploy> {
        let _map = self.0.map_lock(id)?;
        let deploy = self.modify(id, now, |d| {
            if d.state != DeployState::Ready {
                d.state = DeployState::Error;
                d.error_message = Some("canceled".into());
            }
            Ok(())
        })?;
        if deploy.state == DeployState::Error {
            self.drop_map(id, &deploy.user_id, &deploy.site_id)?;
        }
        Ok(deploy)
    }

    /// Publishes an older ready deploy of its site again (instant rollback).
    pub fn restore(&self, id: &str, now: Timestamp) -> StoreResult<Deploy> {
        let deploy = self.get(id)?.ok_or(StoreError::NotFound("deploy"))?;
        if deploy.state != DeployState::Ready {
            return Err(StoreError::invalid("only a ready deploy can be restored"));
        }
        self.publish(&deploy, now)?;
        self.get(id)?.ok_or(StoreError::NotFound("deploy"))
    }

    /// Applies `change` to a deploy in a transaction; a prepared deploy with nothing pending
    /// becomes ready and, unless draft, the site's published deploy.
    fn modify(
        &self,
        id: &str,
        now: Timestamp,
        change: impl Fn(&mut Deploy) -> StoreResult<()>,
    ) -> StoreResult<Deploy> {
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        let nothing_pending = t
            .deploy_pending
            .scan_prefix(format!("{id}/").as_bytes())
            .next()
            .is_none();
        let (deploy, became_ready) = (
            &*t.deploys.write(),
            &*t.sites.write(),
            &t.events,
            &t.encode_queue,
        )
            .transaction(|(d, s, events, encode_queue)| {
                let Some(raw) = d.get(id.as_bytes())? else {
                    return abort(StoreError::NotFound("deploy"));
                };
                let mut deploy: Deploy = decode(&raw).or_else(abort)?;
                let was = deploy.state;
                change(&mut deploy).or_else(abort)?;
                let became_ready = deploy.state == DeployState::Prepared && nothing_pending;
                if became_ready {
                    deploy.state = DeployState::Ready;
                    // Its files get precompressed variants (`encodings`).
                    encode_queue.insert(id.as_bytes(), Vec::<u8>::new())?;
                    if !deploy.draft {
                        if let Some(raw) = s.get(deploy.site_id.as_bytes())? {
                            let mut site: super::sites::Site = decode(&raw).or_else(abort)?;
                            site.published_deploy = Some(deploy.id.clone());
                            site.updated_at = now;
                            s.insert(site.id.as_bytes(), encode(&site))?;
                            deploy.published_at = Some(now);
                        }
                    }
                }
                deploy.updated_at = now;
                d.insert(id.as_bytes(), encode(&deploy))?;
                let kind = match (was, deploy.state) {
                    (DeployState::Ready, _) | (DeployState::Error, _) => None,
                    (_, DeployState::Ready) => Some("deploy.ready"),
                    (_, DeployState::Error) => Some("deploy.failed"),
                    _ => None,
                };
                if let Some(kind) = kind {
                    emit(events, subs, &deploy.reseller_id, kind, now, || {
                        Subject::Deploy(deploy.clone())
                    })?;
                }
                Ok((deploy, became_ready))
            })?;
        if became_ready {
            let files = self.files(&deploy.id)?;
            self.0.forms().scan_deploy(&deploy, &files, now)?;
        }
        Ok(deploy)
    }

    fn publish(&self, deploy: &Deploy, now: Timestamp) -> StoreResult<()> {
        let t = &self.0.t;
        (&*t.deploys.write(), &*t.sites.write()).transaction(|(d, s)| {
            let Some(raw) = s.get(deploy.site_id.as_bytes())? else {
                return abort(StoreError::NotFound("site"));
            };
            let mut site: super::sites::Site = decode(&raw).or_else(abort)?;
            site.published_deploy = Some(deploy.id.clone());
            site.updated_at = now;
            s.insert(site.id.as_bytes(), encode(&site))?;
            let mut rec = deploy.clone();
            rec.published_at = Some(now);
            rec.updated_at = now;
            d.insert(rec.id.as_bytes(), encode(&rec))?;
            Ok(())
        })?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> StoreResult<Option<Deploy>> {
        get(self.0.t.deploys.read(), id)
    }

    /// One page of a site's deploys, newest first, by offset or by seeking in the site's index
    /// (O(per_page) at any depth), and how many the site has (counted from the index's keys).
    pub fn window(
        &self,
        site_id: &str,
        want: &super::Want,
    ) -> StoreResult<(super::Window<Deploy>, usize)> {
        let t = &self.0.t;
        let prefix = format!("{site_id}/");
        let total = t
            .deploys_by_site
            .scan_prefix(prefix.as_bytes())
            .keys()
            .count();
        let window = super::page_desc(&t.deploys_by_site, prefix.as_bytes(), want)?;
        let mut items = Vec::with_capacity(window.items.len());
        for (id, _) in &window.items {
            // A deploy deleted between the index read and this one is left out.
            if let Some(d) = super::get(t.deploys.read(), &String::from_utf8_lossy(id))? {
                items.push(d);
            }
        }
        Ok((window.holding(items), total))
    }

    /// Deletes one deploy that is not its site's published one (400 for that one): its record,
    /// its map and its storage; then blobs no deploy names are swept.
    pub fn delete(&self, id: &str) -> StoreResult<()> {
        {
            let _map = self.0.map_lock(id)?;
            let deploy = self.get(id)?.ok_or(StoreError::NotFound("deploy"))?;
            let t = &self.0.t;
            // The published check and the removal are one transaction with the site's record:
            // a concurrent publish of this deploy either comes first (and this is refused) or
            // finds it gone.
            (&*t.deploys.write(), t.sites.read(), &t.deploys_by_site).transaction(
                |(d, s, by_site)| {
                    if let Some(raw) = s.get(deploy.site_id.as_bytes())? {
                        let site: super::sites::Site = decode(&raw).or_else(abort)?;
                        if site.published_deploy.as_deref() == Some(id) {
                            return abort(StoreError::invalid(
                                "this is the site's published deploy: publish another first",
                            ));
                        }
                    }
                    d.remove(id.as_bytes())?;
                    by_site.remove(site_key(&deploy.site_id, id).as_bytes())?;
                    Ok(())
                },
            )?;
            self.drop_map(id, &deploy.user_id, &deploy.site_id)?;
        }
        self.0.collect_garbage()?;
        Ok(())
    }

    pub fn delete_all_of_site(&self, site: &super::sites::Site) -> StoreResult<()> {
        let (t, site_id) = (&self.0.t, site.id.as_str());
        for id in ids_under(&t.deploys_by_site, site_id)? {
            self.drop_map(&id, &site.user_id, site_id)?;
            t.deploys.write().remove(id.as_bytes())?;
            t.deploys_by_site
                .remove(site_key(site_id, &id).as_bytes())?;
        }
        Ok(())
    }

    /// Every digest some deploy refers to (the mark phase of blob GC).
    pub fn referenced_blobs(&self) -> StoreResult<HashSet<String>> {
        self.0
            .t
            .deploy_files
            .iter()
            .values()
            .map(|v| Ok(String::from_utf8_lossy(&v?).into_owned()))
            .collect()
    }
}

/// A deploy's file map and its distinct contents (from a zip or a build), written but not yet
/// stored: dropped, they leave nothing behind.
pub struct Unpacked {
    pub files: BTreeMap<String, String>,
    pub contents: Vec<blobs::Parked>,
}

impl Store {
    /// Stores unpacked contents once the user's quota has room for what is new to them, each
    /// recorded as known to `user_id`. (A refusal here, or of the deploy after, leaves nothing
    /// the periodic sweep does not collect.) Returns the file map, and the contents pinned
    /// against every sweep until the deploy names them (drop the guard after recording it).
    pub fn store_unpacked(
        &self,
        user_id: &str,
        max_storage_mb: Option<u64>,
        unpacked: Unpacked,
    ) -> StoreResult<(BTreeMap<String, String>, blobs::Pinned)> {
        let sizes = unpacked
            .contents
            .iter()
            .map(|c| (c.digest().to_string(), c.len()))
            .collect();
        self.storage()
            .check_room_for(user_id, &sizes, max_storage_mb)?;
        let pinned = self.blobs.pin(unpacked.files.values().cloned());
        for content in unpacked.contents {
            let sha = self.blobs.commit_parked(content)?;
            self.deploys().remember(user_id, &sha)?;
        }
        Ok((unpacked.files, pinned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_escapes_rejected() {
        assert_eq!(normalize_path("/index.html").unwrap(), "index.html");
        assert_eq!(normalize_path("a//./b c.txt").unwrap(), "a/b c.txt");
        for bad in ["../x", "a/../../x", "", "/", "a\0b", "a\\b"] {
            assert!(normalize_path(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
