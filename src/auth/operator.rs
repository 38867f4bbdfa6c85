//! The operator token: its SHA-256 lives in `<data-dir>/operator-token.sha256`; the plaintext is
//! written once to `<data-dir>/operator-token` (0600) for the operator to read. Rotation with
//! `resellerd operator-token` rewrites both files, which a running server notices by mtime.

use crate::model::secret::{hash, hashes_equal, Secret, OPERATOR_PREFIX as PREFIX};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

pub struct OperatorAuth {
    hash_path: PathBuf,
    cached: Mutex<Option<(SystemTime, Vec<u8>)>>,
}

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("operator-token")
}

fn hash_path(data_dir: &Path) -> PathBuf {
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

impl OperatorAuth {
    pub fn new(data_dir: &Path) -> Self {
        OperatorAuth {
            hash_path: hash_path(data_dir),
            cached: Mutex::new(None),
        }
    }

    /// True if `presented` is the current operator token (constant-time comparison).
    pub fn verify(&self, presented: &Secret) -> bool {
        let Ok(meta) = std::fs::metadata(&self.hash_path) else {
            return false;
        };
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cache = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cache.as_ref().map(|(t, _)| *t) != Some(mtime) {
            let Ok(text) = std::fs::read_to_string(&self.hash_path) else {
                return false;
            };
            let Ok(bytes) = hex::decode(text.trim()) else {
                return false;
            };
            *cache = Some((mtime, bytes));
        }
        cache
            .as_ref()
            .is_some_and(|(_, expected)| hashes_equal(expected, &hash(presented.expose())))
    }
}
