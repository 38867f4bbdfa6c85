//! The operator token: its SHA-256 lives in `<data-dir>/operator-token.sha256`; the plaintext is
//! written once to `<data-dir>/operator-token` (0600) for the operator to read. Rotation with
//! `resellerd operator-token` rewrites both files, which a running server notices by mtime.
//!
//! On PostgreSQL the hash every node checks is the database's (`Store::cluster_secret`): the
//! first node to start stores its own; a node that finds another there takes it (its files are
//! rewritten to match, and its own token, never valid on the cluster, is removed), so the
//! operator token works on every node. A rotation in any node's data dir (`resellerd
//! operator-token`) is stored in the database by that node at its next operator request;
//! `resellerd operator-token --database-url` stores it there at once.

use crate::model::secret::{hash, hashes_equal, Secret, OPERATOR_PREFIX as PREFIX};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

pub struct OperatorAuth {
    hash_path: PathBuf,
    cached: Mutex<Option<(SystemTime, Vec<u8>)>>,
    /// On PostgreSQL, the store holding the cluster's hash (read on each check).
    cluster: Option<Store>,
}

/// The name of the operator token's hash among the cluster's secrets.
pub const CLUSTER_SECRET: &str = "operator-token.sha256";

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("operator-token")
}

/// Where the operator token's hash lives (in every data dir a server has started on).
pub fn hash_path(data_dir: &Path) -> PathBuf {
    data_dir.join("operator-token.sha256")
}

/// Writes a new operator token (replacing any old one) and returns it.
pub fn rotate(data_dir: &Path) -> std::io::Result<Secret> {
    std::fs::create_dir_all(data_dir)?;
    let secret = Secret::generate(PREFIX);
    crate::files::write_private(
        &token_path(data_dir),
        format!("{}\n", secret.expose()).as_bytes(),
    )?;
    crate::files::write_private(&hash_path(data_dir), hex::encode(secret.hash()).as_bytes())?;
    Ok(secret)
}

/// Makes a token on the first start of an empty data dir. Returns it if one was made.
pub fn ensure(data_dir: &Path) -> std::io::Result<Option<Secret>> {
    if hash_path(data_dir).exists() {
        return Ok(None);
    }
    rotate(data_dir).map(Some)
}

/// The hash kept in the file `path` (hex).
fn read_hash(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    hex::decode(text.trim()).map_err(|e| format!("{} is corrupt: {e}", path.display()))
}

impl OperatorAuth {
    /// The data dir's token; on PostgreSQL the cluster's (see the module's doc).
    pub fn new(data_dir: &Path, store: &Store) -> Result<Self, String> {
        let hash_path = hash_path(data_dir);
        let mut cluster = None;
        if store.is_shared() {
            let local = read_hash(&hash_path)?;
            let shared = store
                .cluster_secret(CLUSTER_SECRET, &local)
                .map_err(|e| format!("cannot read the cluster's operator token: {e}"))?;
            if shared != local {
                crate::files::write_private(&hash_path, hex::encode(&shared).as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", hash_path.display()))?;
                let _ = std::fs::remove_file(token_path(data_dir));
                tracing::info!("this node uses the cluster's operator token (the first node to serve this database wrote it to its data dir; `resellerd operator-token --database-url` makes a new one)");
            }
            cluster = Some(store.clone());
        }
        // On PostgreSQL the file's time as it is now: a later one means a local rotation.
        let cached = match (&cluster, std::fs::metadata(&hash_path)) {
            (Some(_), Ok(meta)) => {
                Some((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), vec![]))
            }
            _ => None,
        };
        Ok(OperatorAuth {
            hash_path,
            cached: Mutex::new(cached),
            cluster,
        })
    }

    /// On PostgreSQL: if the data dir's hash changed since it was last seen (`resellerd
    /// operator-token` ran here), makes it the cluster's.
    fn store_local_rotation(&self, store: &Store) {
        let Ok(meta) = std::fs::metadata(&self.hash_path) else {
            return;
        };
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cache = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cache.as_ref().is_some_and(|(t, _)| *t == mtime) {
            return;
        }
        let Ok(bytes) = read_hash(&self.hash_path) else {
            return;
        };
        match store.set_cluster_secret(CLUSTER_SECRET, &bytes) {
            Ok(()) => *cache = Some((mtime, bytes)),
            Err(e) => tracing::warn!(error = %e, "cannot store the rotated operator token"),
        }
    }

    /// True if `presented` is the current operator token (constant-time comparison).
    pub fn verify(&self, presented: &Secret) -> bool {
        if let Some(store) = &self.cluster {
            self.store_local_rotation(store);
            return match store.stored_cluster_secret(CLUSTER_SECRET) {
                Ok(Some(expected)) => hashes_equal(&expected, &hash(presented.expose())),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the cluster's operator token");
                    false
                }
            };
        }
        let Ok(meta) = std::fs::metadata(&self.hash_path) else {
            return false;
        };
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cache = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cache.as_ref().map(|(t, _)| *t) != Some(mtime) {
            let Ok(bytes) = read_hash(&self.hash_path) else {
                return false;
            };
            *cache = Some((mtime, bytes));
        }
        cache
            .as_ref()
            .is_some_and(|(_, expected)| hashes_equal(expected, &hash(presented.expose())))
    }
}
