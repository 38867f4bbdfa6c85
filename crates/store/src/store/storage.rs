//! Storage per user and per site: the distinct bytes of the files their deploys refer to. Kept
//! as reference counts (how many of the owner's deploys name a digest) and totals, changed in
//! one transaction with each deploy's file map, so nothing is ever scanned per request and the
//! user's `max_storage_mb` is checked in the same transaction that adds the bytes: two
//! concurrent deploys cannot both pass it.
//!
//! Every deploy that exists counts, published or not: what a user can restore is stored. A
//! digest named before its content was uploaded counts 0 bytes until the upload arrives.

use super::{abort, count_of, decode, encode, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::kv::{ConflictableTransactionResult, TransactionalTree};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// 1 MB of a plan's `max_storage_mb`.
pub const MB: u64 = 1_000_000;

/// One owner's reference to one digest.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Ref {
    /// How many of the owner's deploys name the digest.
    deploys: u64,
    /// The bytes counted for it (0 until its content is stored).
    bytes: u64,
}

/// An owner of references: a user or a site.
#[derive(Clone, Copy)]
enum Owner<'a> {
    User(&'a str),
    Site(&'a str),
}

impl Owner<'_> {
    fn reference(self, sha: &str) -> String {
        match self {
            Owner::User(id) => format!("u/{id}/{sha}"),
            Owner::Site(id) => format!("s/{id}/{sha}"),
        }
    }

    fn total(self) -> String {
        match self {
            Owner::User(id) => format!("storage_user/{id}"),
            Owner::Site(id) => format!("storage_site/{id}"),
        }
    }
}

/// A change of one deploy's digests: those it no longer names and those it names now, with
/// their size where the content is stored.
#[derive(Default)]
pub(crate) struct Change {
    pub released: BTreeSet<String>,
    pub added: BTreeMap<String, Option<u64>>,
}

type Tx<T> = ConflictableTransactionResult<T, StoreError>;

fn add_to_total(counters: &TransactionalTree, owner: Owner, delta: i64) -> Tx<u64> {
    let key = owner.total();
    let now = (count_of(counters.get(key.as_bytes())?) + delta).max(0);
    if now == 0 {
        counters.remove(key.as_bytes())?;
    } else {
        counters.insert(key.as_bytes(), &now.to_be_bytes())?;
    }
    Ok(now as u64)
}

/// Applies `change` to one owner's references; returns the bytes added (may be negative).
fn apply(refs: &TransactionalTree, owner: Owner, change: &Change) -> Tx<i64> {
    let mut delta = 0i64;
    for sha in &change.released {
        let key = owner.reference(sha);
        let Some(raw) = refs.get(key.as_bytes())? else {
            continue;
        };
        let mut r: Ref = decode(&raw).or_else(abort)?;
        r.deploys = r.deploys.saturating_sub(1);
        if r.deploys == 0 {
            refs.remove(key.as_bytes())?;
            delta -= r.bytes as i64;
        } else {
            refs.insert(key.as_bytes(), encode(&r))?;
        }
    }
    for (sha, size) in &change.added {
        let key = owner.reference(sha);
        let mut r: Ref = match refs.get(key.as_bytes())? {
            Some(raw) => decode(&raw).or_else(abort)?,
            None => Ref::default(),
        };
        r.deploys += 1;
        if let (0, Some(size)) = (r.bytes, size) {
            r.bytes = *size;
            delta += *size as i64;
        }
        refs.insert(key.as_bytes(), encode(&r))?;
    }
    Ok(delta)
}

/// 403 `quota_exceeded` if the user's storage grew past `max_mb`.
fn check(before: u64, after: u64, max_mb: Option<u64>) -> StoreResult<()> {
    match max_mb {
        Some(max) if after > before && after > max.saturating_mul(MB) => {
            Err(StoreError::QuotaExceeded {
                limit: "max_storage_mb",
                used: before.div_ceil(MB),
                max,
            })
        }
        _ => Ok(()),
    }
}

pub struct Storage<'a>(&'a Store);

impl Store {
    pub fn storage(&self) -> Storage<'_> {
        Storage(self)
    }
}

impl Storage<'_> {
    /// The distinct bytes of every file the user's deploys name.
    pub fn user_bytes(&self, user_id: &str) -> StoreResult<u64> {
        self.total(Owner::User(user_id))
    }

    /// The distinct bytes of every file the site's deploys name.
    pub fn site_bytes(&self, site_id: &str) -> StoreResult<u64> {
        self.total(Owner::Site(site_id))
    }

    fn total(&self, owner: Owner) -> StoreResult<u64> {
        Ok(count_of(self.0.t.counters.get(owner.total().as_bytes())?).max(0) as u64)
    }

    /// The digests a deploy of `user_id` names, each once, with its size where the content is
    /// stored. A remote blob store is asked only about digests the user is known to have: a map
    /// of made-up digests costs no request to it (their bytes count when they are uploaded).
    pub(crate) fn sized(
        &self,
        user_id: &str,
        files: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Option<u64>> {
        let blobs = &self.0.blobs;
        files
            .values()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|sha| {
                // Only content this user has (uploaded, or deployed in a zip) counts: another
                // tenant's file of the same digest must change neither the answer nor the
                // user's storage, or it would tell whether that content is on the instance.
                let size = match self.0.deploys().claimed_by(user_id, sha) {
                    true => blobs.cached_size(sha).or_else(|| blobs.size(sha)),
                    false => None,
                };
                (sha.clone(), size)
            })
            .collect()
    }

    /// Refuses (403 `quota_exceeded`) content of these sizes by digest that would take the user
    /// past `max_mb`, without changing anything: checked before a zip's files are stored. What
    /// the user already counts is not counted again.
    pub fn check_room_for(
        &self,
        user_id: &str,
        sizes: &BTreeMap<String, u64>,
        max_mb: Option<u64>,
    ) -> StoreResult<()> {
        if max_mb.is_none() {
            return Ok(());
        }
        let t = &self.0.t;
        let user = Owner::User(user_id);
        let before = self.total(user)?;
        let mut added = 0u64;
        for (sha, size) in sizes {
            let counted = match t.storage_refs.get(user.reference(sha).as_bytes())? {
                Some(raw) => decode::<Ref>(&raw)?.bytes > 0,
                None => false,
            };
            if !counted {
                added = added.saturating_add(*size);
            }
        }
        check(before, before.saturating_add(added), max_mb)
    }

    /// Refuses (403 `quota_exceeded`) a deploy whose distinct content is at least `bytes` when
    /// that alone is over `max_mb`: checked from a zip's directory, before anything is expanded.
    pub fn check_deploy_fits(
        &self,
        user_id: &str,
        bytes: u64,
        max_mb: Option<u64>,
    ) -> StoreResult<()> {
        let Some(max) = max_mb.filter(|max| bytes > max.saturating_mul(MB)) else {
            return Ok(());
        };
        // A user already storing that much (over a plan lowered since) may be redeploying
        // what it has, which adds nothing: the exact check after expansion decides then.
        let used = self.user_bytes(user_id)?;
        if used >= bytes {
            return Ok(());
        }
        Err(StoreError::QuotaExceeded {
            limit: "max_storage_mb",
            used: used.div_ceil(MB),
            max,
        })
    }

    /// Applies a change of one of the user's deploys (of `site_id`), refusing it with
    /// `quota_exceeded` if it takes the user past `max_mb`.
    pub(crate) fn charge(
        &self,
        user_id: &str,
        site_id: &str,
        change: &Change,
        max_mb: Option<u64>,
    ) -> StoreResult<()> {
        self.count(user_id, site_id, max_mb, |refs, owner| {
            apply(refs, owner, change)
        })
    }

    /// Changes the user's and then the site's references with `change` (which returns the
    /// bytes it added) and their totals, in one transaction; refused past the user's `max_mb`.
    fn count(
        &self,
        user_id: &str,
        site_id: &str,
        max_mb: Option<u64>,
        change: impl Fn(&TransactionalTree, Owner) -> Tx<i64>,
    ) -> StoreResult<()> {
        let t = &self.0.t;
        (&t.storage_refs, &t.counters).transaction(|(refs, counters)| {
            let user = Owner::User(user_id);
            let before = count_of(counters.get(user.total().as_bytes())?).max(0) as u64;
            let grew = change(refs, user)?;
            let after = add_to_total(counters, user, grew)?;
            check(before, after, max_mb).or_else(abort)?;
            let site = Owner::Site(site_id);
            let grew = change(refs, site)?;
            add_to_total(counters, site, grew)?;
            Ok(())
        })?;
        Ok(())
    }

    /// The content of `sha` arrived (`size` bytes): counts it for the user and the site where
    /// their references waited for it, refusing it past `max_mb`.
    pub(crate) fn arrived(
        &self,
        user_id: &str,
        site_id: &str,
        sha: &str,
        size: u64,
        max_mb: Option<u64>,
    ) -> StoreResult<()> {
        if size == 0 {
            return Ok(());
        }
        let fill = |refs: &TransactionalTree, owner: Owner| -> Tx<i64> {
            let key = owner.reference(sha);
            let Some(raw) = refs.get(key.as_bytes())? else {
                return Ok(0);
            };
            let mut r: Ref = decode(&raw).or_else(abort)?;
            if r.bytes != 0 {
                return Ok(0);
            }
            r.bytes = size;
            refs.insert(key.as_bytes(), encode(&r))?;
            Ok(size as i64)
        };
        self.count(user_id, site_id, max_mb, fill)
    }

    /// Counts every deploy again from its file map (data format 7; idempotent).
    pub(crate) fn rebuild(&self) -> StoreResult<usize> {
        let t = &self.0.t;
        t.storage_refs.clear()?;
        for prefix in ["storage_user/", "storage_site/"] {
            for key in t.counters.scan_prefix(prefix.as_bytes()).keys() {
                t.counters.remove(key?)?;
            }
        }
        let mut n = 0;
        for raw in t.deploys.read().iter().values() {
            let deploy: super::records::Deploy = decode(&raw?)?;
            let files = self.0.deploys().files(&deploy.id)?;
            let change = Change {
                released: BTreeSet::new(),
                added: self.sized(&deploy.user_id, &files),
            };
            self.charge(&deploy.user_id, &deploy.site_id, &change, None)?;
            n += 1;
        }
        Ok(n)
    }
}
