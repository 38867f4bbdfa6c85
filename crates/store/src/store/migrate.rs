//! `resellerd migrate`: an embedded instance's records copied into PostgreSQL, tree by tree,
//! each checked afterwards by its count and a digest of every key and value in order (the two
//! engines keep keys in the same order). Idempotent: each tree of the target is made equal to
//! the source's, so running it again after an interruption finishes the job. The source is a
//! stopped data dir (its lock is taken), or a backup restored into a new one for a running
//! instance (`resellerd restore`), so the copy is always of one consistent snapshot.

use super::open::{lock_data_dir, open_kv};
use super::remote::Remote;
use super::{Engine, OpenError};
use crate::error::StoreError;
use crate::kv::{Batch, Db, Tree};
use sha2::Digest;
use std::path::Path;

/// What was copied.
pub struct Report {
    /// (tree, records), for every tree.
    pub trees: Vec<(String, u64)>,
    /// Site files put into the blob store (those it lacked).
    pub blobs_uploaded: u64,
}

/// Why a migration stopped, with its cause. A run that stopped can be run again: it resumes.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "{} is in use by a running server: stop it, or migrate a snapshot of it (resellerd \
         backup, then resellerd restore into a new dir, then migrate --from that dir)",
        .0.display()
    )]
    InUse(std::path::PathBuf),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{} has no database to migrate", .0.display())]
    NoDatabase(std::path::PathBuf),
    #[error(
        "servers are running on the PostgreSQL database: stop every node first (`resellerd \
         doctor --database-url` shows how many serve it)"
    )]
    Serving,
    #[error(
        "the PostgreSQL database already holds records{0}: migrate into an empty database, or \
         pass --replace to overwrite them"
    )]
    NotEmpty(String),
    #[error(transparent)]
    Engine(#[from] crate::kv::Error),
    #[error("tree {name}")]
    Tree {
        name: String,
        #[source]
        source: Box<MigrateError>,
    },
    #[error("the copy does not match: {count} records in the source, {copied} in PostgreSQL")]
    Mismatch { count: u64, copied: u64 },
    #[error("blob {sha}")]
    Blob {
        sha: String,
        #[source]
        source: StoreError,
    },
}

/// The key the target's `meta` tree keeps the source's identity under.
const SOURCE_KEY: &[u8] = b"migrated_from";

/// Copies the records of the stopped data dir `dir` into the PostgreSQL database at `url`, and
/// the site files into `remote` if given. A target that holds another instance's records is
/// refused unless `replace`.
pub fn to_postgres(
    dir: &Path,
    url: &str,
    replace: bool,
    remote: Option<&Remote>,
) -> Result<Report, MigrateError> {
    let _lock = lock_data_dir(dir).map_err(|e| match e {
        OpenError::Locked(_) => MigrateError::InUse(dir.to_path_buf()),
        e => MigrateError::Open(e),
    })?;
    if !super::has_database(dir) {
        return Err(MigrateError::NoDatabase(dir.to_path_buf()));
    }
    let serving = crate::kv::pg::inspect(url)?;
    if serving.nodes > 0 || serving.led {
        return Err(MigrateError::Serving);
    }
    let (source, _) = open_kv(dir, super::DEFAULT_CACHE_MB << 20, Engine::Redb)?;
    let target = Db::Pg(crate::kv::pg::Db::open(url, 4)?);
    let identity = std::fs::canonicalize(dir)
        .map_err(crate::kv::Error::Io)?
        .display()
        .to_string();
    let meta = target.open_tree("meta")?;
    let marked = meta.get(SOURCE_KEY)?;
    let holds_records = marked.is_some() || meta.first()?.is_some();
    if holds_records && marked.as_deref() != Some(identity.as_bytes()) && !replace {
        return Err(MigrateError::NotEmpty(match &marked {
            Some(from) => format!(" (migrated from {})", String::from_utf8_lossy(from)),
            None => String::new(),
        }));
    }
    // Marked before the copy, so a run cut short is recognised as this source's when resumed.
    meta.insert(SOURCE_KEY, identity.as_bytes())?;
    let mut trees = Vec::new();
    for name in source.tree_names() {
        let label = String::from_utf8_lossy(&name).into_owned();
        let from = source.open_tree(&name)?;
        let to = target.open_tree(&name)?;
        let copied =
            copy_tree(&from, &to, name.as_ref() == b"meta").map_err(|e| MigrateError::Tree {
                name: label.clone(),
                source: Box::new(e),
            })?;
        trees.push((label, copied));
    }
    let blobs_uploaded = match remote {
        Some(remote) => upload_blobs(dir, remote)?,
        None => 0,
    };
    Ok(Report {
        trees,
        blobs_uploaded,
    })
}

/// Makes `to` equal to `from` and checks it: the same count and digest. The `meta` tree keeps
/// the target's own migration marker.
fn copy_tree(from: &Tree, to: &Tree, is_meta: bool) -> Result<u64, MigrateError> {
    let keep = |k: &[u8]| is_meta && k == SOURCE_KEY;
    // Keys the target has and the source lacks go first (a resumed or repeated run).
    let mut stale = Batch::default();
    for entry in to.iter() {
        let (k, _) = entry?;
        if !keep(&k) && !from.contains_key(&k)? {
            stale.remove(k);
        }
    }
    to.apply_batch(stale)?;
    let mut batch = Batch::default();
    let mut pending = 0;
    let (mut count, mut digest) = (0u64, sha2::Sha256::new());
    for entry in from.iter() {
        let (k, v) = entry?;
        if keep(&k) {
            continue;
        }
        feed(&mut digest, &k, &v);
        count += 1;
        batch.insert(k, v);
        pending += 1;
        if pending == 1000 {
            to.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    to.apply_batch(batch)?;
    let (mut copied, mut check) = (0u64, sha2::Sha256::new());
    for entry in to.iter() {
        let (k, v) = entry?;
        if keep(&k) {
            continue;
        }
        feed(&mut check, &k, &v);
        copied += 1;
    }
    if copied != count || check.finalize() != digest.finalize() {
        return Err(MigrateError::Mismatch { count, copied });
    }
    Ok(count)
}

fn feed(digest: &mut sha2::Sha256, k: &[u8], v: &[u8]) {
    digest.update((k.len() as u64).to_be_bytes());
    digest.update(k);
    digest.update((v.len() as u64).to_be_bytes());
    digest.update(v);
}

/// Puts every site file of the data dir that the blob store lacks into it; returns how many.
fn upload_blobs(dir: &Path, remote: &Remote) -> Result<u64, MigrateError> {
    let root = dir.join("blobs");
    let mut uploaded = 0;
    let Ok(shards) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let sha = format!(
                "{}{}",
                shard.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            if !super::blobs::is_sha1(&sha) {
                continue;
            }
            let blob = |source| MigrateError::Blob {
                sha: sha.clone(),
                source,
            };
            if remote.size(&sha).map_err(blob)?.is_some() {
                continue;
            }
            let len = file
                .metadata()
                .map_err(|e| blob(StoreError::from(crate::kv::Error::Io(e))))?
                .len();
            remote.upload(&sha, &file.path(), len).map_err(blob)?;
            uploaded += 1;
        }
    }
    Ok(uploaded)
}
