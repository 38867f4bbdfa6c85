//! Deploys: a map path -> SHA-1 for one site. Netlify's digest flow: the client sends the map,
//! gets back the digests the blob store lacks (`required`), uploads them, and the deploy goes
//! `ready` (and is published unless draft) once nothing is missing.

use super::{abort, blobs, decode, encode, get, ids_under, Store};
use crate::error::{ApiError, ApiResult};
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::collections::{BTreeMap, BTreeSet, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployState {
    New,
    Prepared,
    Ready,
    Error,
}

impl DeployState {
    pub fn name(self) -> &'static str {
        match self {
            DeployState::New => "new",
            DeployState::Prepared => "prepared",
            DeployState::Ready => "ready",
            DeployState::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deploy {
    pub id: String,
    pub site_id: String,
    pub reseller_id: String,
    pub user_id: String,
    pub state: DeployState,
    pub draft: bool,
    pub title: Option<String>,
    pub branch: Option<String>,
    /// Normalised path (no leading slash) -> SHA-1 hex.
    pub files: BTreeMap<String, String>,
    /// The digests the client was asked for (kept, so a client can see what was uploaded).
    pub required: Vec<String>,
    /// The digests still missing.
    pub pending: Vec<String>,
    pub error_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub published_at: Option<Timestamp>,
}

/// Options of a new deploy.
pub struct NewDeploy {
    pub draft: bool,
    pub title: Option<String>,
    pub branch: Option<String>,
}

/// A deploy path made safe: no leading slash, no `.`/`..`/empty segments, no NUL or backslash.
pub fn normalize_path(raw: &str) -> ApiResult<String> {
    let bad = |why: &str| ApiError::invalid(format!("invalid file path {raw:?}: {why}"));
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
) -> ApiResult<BTreeMap<String, String>> {
    if raw.len() > max_files {
        return Err(ApiError::TooManyFiles(max_files));
    }
    let mut files = BTreeMap::new();
    for (path, sha) in raw {
        let sha = sha.trim().to_ascii_lowercase();
        if !blobs::is_sha1(&sha) {
            return Err(ApiError::invalid(format!(
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
    ) -> ApiResult<Deploy> {
        let deploy = Deploy {
            id: new_id(),
            site_id: site.id.clone(),
            reseller_id: site.reseller_id.clone(),
            user_id: site.user_id.clone(),
            state: DeployState::New,
            draft: opts.draft,
            title: opts.title,
            branch: opts.branch,
            files: BTreeMap::new(),
            required: Vec::new(),
            pending: Vec::new(),
            error_message: None,
            created_at: now,
            updated_at: now,
            published_at: None,
        };
        let t = &self.0.t;
        (&t.deploys, &t.deploys_by_site).transaction(|(d, by_site)| {
            d.insert(deploy.id.as_bytes(), encode(&deploy))?;
            by_site.insert(site_key(&deploy.site_id, &deploy.id).as_bytes(), &[])?;
            Ok(())
        })?;
        match files {
            Some(files) => self.set_files(&deploy.id, files, now),
            None => Ok(deploy),
        }
    }

    /// Records the file map of a deploy not yet ready and computes what must be uploaded.
    pub fn set_files(
        &self,
        id: &str,
        files: BTreeMap<String, String>,
        now: Timestamp,
    ) -> ApiResult<Deploy> {
        let needed: BTreeSet<&String> = files.values().collect();
        let required: Vec<String> = needed
            .into_iter()
            .filter(|sha| !self.0.blobs.has(sha))
            .cloned()
            .collect();
        self.modify(id, now, |d| {
            if matches!(d.state, DeployState::Ready | DeployState::Error) {
                return Err(ApiError::invalid(format!(
                    "the deploy is {} and can no longer change",
                    d.state.name()
                )));
            }
            d.files = files.clone();
            d.required = required.clone();
            d.pending = required.clone();
            d.state = DeployState::Prepared;
            Ok(())
        })
    }

    /// Stores an uploaded file after checking its digest against the deploy's map.
    pub fn upload(&self, id: &str, path: &str, data: &[u8], now: Timestamp) -> ApiResult<Deploy> {
        let deploy = self.get(id)?.ok_or(ApiError::NotFound("deploy"))?;
        let expected = deploy
            .files
            .get(path)
            .ok_or(ApiError::NotFound("file in this deploy"))?;
        let actual = blobs::sha1_hex(data);
        if &actual != expected {
            return Err(ApiError::ChecksumMismatch(format!(
                "the SHA-1 of the uploaded {path:?} is {actual}, the deploy expects {expected}"
            )));
        }
        self.0.blobs.put(&actual, data)?;
        self.modify(id, now, |d| {
            d.pending.retain(|s| s != &actual);
            Ok(())
        })
    }

    /// Marks a deploy that is not ready as failed (`POST /deploys/{id}/cancel`).
    pub fn cancel(&self, id: &str, now: Timestamp) -> ApiResult<Deploy> {
        self.modify(id, now, |d| {
            if d.state != DeployState::Ready {
                d.state = DeployState::Error;
                d.error_message = Some("canceled".into());
            }
            Ok(())
        })
    }

    /// Publishes an older ready deploy of its site again (instant rollback).
    pub fn restore(&self, id: &str, now: Timestamp) -> ApiResult<Deploy> {
        let deploy = self.get(id)?.ok_or(ApiError::NotFound("deploy"))?;
        if deploy.state != DeployState::Ready {
            return Err(ApiError::invalid("only a ready deploy can be restored"));
        }
        self.publish(&deploy, now)?;
        self.get(id)?.ok_or(ApiError::NotFound("deploy"))
    }

    /// Applies `change` to a deploy in a transaction; a prepared deploy with nothing pending
    /// becomes ready and, unless draft, the site's published deploy.
    fn modify(
        &self,
        id: &str,
        now: Timestamp,
        change: impl Fn(&mut Deploy) -> ApiResult<()>,
    ) -> ApiResult<Deploy> {
        let t = &self.0.t;
        let (deploy, became_ready) = (&t.deploys, &t.sites).transaction(|(d, s)| {
            let Some(raw) = d.get(id.as_bytes())? else {
                return abort(ApiError::NotFound("deploy"));
            };
            let mut deploy: Deploy = decode(&raw).or_else(abort)?;
            change(&mut deploy).or_else(abort)?;
            let became_ready = deploy.state == DeployState::Prepared && deploy.pending.is_empty();
            if became_ready {
                deploy.state = DeployState::Ready;
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
            Ok((deploy, became_ready))
        })?;
        if became_ready {
            self.0.forms().scan_deploy(&deploy, now)?;
        }
        Ok(deploy)
    }

    fn publish(&self, deploy: &Deploy, now: Timestamp) -> ApiResult<()> {
        let t = &self.0.t;
        (&t.deploys, &t.sites).transaction(|(d, s)| {
            let Some(raw) = s.get(deploy.site_id.as_bytes())? else {
                return abort(ApiError::NotFound("site"));
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

    pub fn get(&self, id: &str) -> ApiResult<Option<Deploy>> {
        get(&self.0.t.deploys, id)
    }

    /// A site's deploys, newest first.
    pub fn list(&self, site_id: &str) -> ApiResult<Vec<Deploy>> {
        let mut ids = ids_under(&self.0.t.deploys_by_site, site_id)?;
        ids.reverse();
        super::load_all(&self.0.t.deploys, &ids)
    }

    pub fn delete_all_of_site(&self, site_id: &str) -> ApiResult<()> {
        let t = &self.0.t;
        for id in ids_under(&t.deploys_by_site, site_id)? {
            t.deploys.remove(id.as_bytes())?;
            t.deploys_by_site
                .remove(site_key(site_id, &id).as_bytes())?;
        }
        Ok(())
    }

    /// Every digest some deploy refers to (the mark phase of blob GC).
    pub fn referenced_blobs(&self) -> ApiResult<HashSet<String>> {
        let mut live = HashSet::new();
        for raw in self.0.t.deploys.iter().values() {
            let d: Deploy = decode(&raw?)?;
            live.extend(d.files.into_values());
        }
        Ok(live)
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
