//! Precompressed variants of site files. A deploy that becomes ready is queued
//! (`encode_queue`, in the transaction that makes it ready); a background worker compresses its
//! compressible files and records, per original digest, the digests of its brotli and gzip
//! variants (`encodings`). Variants are blobs like any other, content-addressed by their own
//! bytes. Until a deploy leaves the queue the edge serves what is recorded so far (identity for
//! the rest).
//!
//! Nothing here is counted against a quota: storage counts the files a deploy names, and
//! variants are named by none. Blob GC keeps a variant while its original is kept, and forgets
//! the record of an original it removes.

use super::{decode, encode, Store};
use crate::error::StoreResult;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The variants recorded for one original; `None` where compressing did not pay (or the file
/// is not compressible), so the worker does not try again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Variants {
    pub br: Option<String>,
    pub gzip: Option<String>,
}

impl Variants {
    pub fn is_empty(&self) -> bool {
        self.br.is_none() && self.gzip.is_none()
    }

    fn digests(&self) -> impl Iterator<Item = &String> {
        self.br.iter().chain(self.gzip.iter())
    }
}

pub struct Encodings<'a>(&'a Store);

impl Store {
    pub fn encodings(&self) -> Encodings<'_> {
        Encodings(self)
    }
}

impl Encodings<'_> {
    /// The variants recorded for the original `sha`, if it was looked at.
    pub fn get(&self, sha: &str) -> StoreResult<Option<Variants>> {
        self.0
            .t
            .encodings
            .get(sha.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn set(&self, sha: &str, variants: &Variants) -> StoreResult<()> {
        self.0
            .t
            .encodings
            .insert(sha.as_bytes(), encode(variants))?;
        Ok(())
    }

    /// The oldest queued deploy, if any.
    pub fn next_queued(&self) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .t
            .encode_queue
            .first()?
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned()))
    }

    /// True while the deploy's files are still being compressed.
    pub fn is_queued(&self, deploy_id: &str) -> StoreResult<bool> {
        Ok(self.0.t.encode_queue.contains_key(deploy_id.as_bytes())?)
    }

    pub fn enqueue(&self, deploy_id: &str) -> StoreResult<()> {
        self.0
            .t
            .encode_queue
            .insert(deploy_id.as_bytes(), Vec::<u8>::new())?;
        Ok(())
    }

    pub fn dequeue(&self, deploy_id: &str) -> StoreResult<()> {
        self.0.t.encode_queue.remove(deploy_id.as_bytes())?;
        Ok(())
    }

    /// Queues every site's published deploy (the upgrade to data format 9: sites deployed
    /// before variants existed get them too). Returns how many.
    pub(super) fn enqueue_published(&self) -> StoreResult<usize> {
        let mut n = 0;
        for raw in self.0.t.sites.read().iter().values() {
            let site: super::sites::Site = decode(&raw?)?;
            if let Some(deploy) = site.published_deploy {
                self.enqueue(&deploy)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The variants of the originals in `live`, which blob GC must keep; with `prune`, records
    /// of originals not in `live` are removed (their variants then go with the sweep).
    pub(super) fn keep_for(&self, live: &HashSet<String>, prune: bool) -> StoreResult<Vec<String>> {
        let tree = &self.0.t.encodings;
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        for entry in tree.iter() {
            let (k, v) = entry?;
            let sha = String::from_utf8_lossy(&k).into_owned();
            if live.contains(&sha) {
                let variants: Variants = decode(&v)?;
                keep.extend(variants.digests().cloned());
            } else if prune {
                gone.push(k);
            }
        }
        for k in gone {
            tree.remove(&k)?;
        }
        Ok(keep)
    }
}
