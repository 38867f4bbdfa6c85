//! Content-addressed site files: `blobs/ab/cdef…` named by the SHA-1 hex of their bytes
//! (Netlify's digest). Written to a temp file, fsynced, renamed, and the directory fsynced, so
//! a blob that exists is complete. Garbage is swept when no deploy refers to it.

use crate::error::{ApiError, ApiResult};
use sha1::{Digest, Sha1};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
}

/// True for 40 lowercase hex characters.
pub fn is_sha1(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

impl Blobs {
    pub fn open(dir: &Path) -> std::io::Result<Blobs> {
        let dir = dir.join("blobs");
        std::fs::create_dir_all(&dir)?;
        Ok(Blobs { dir })
    }

    /// Where a blob lives. Callers pass validated digests only.
    pub fn path(&self, sha: &str) -> PathBuf {
        let (head, tail) = sha.split_at(2.min(sha.len()));
        self.dir.join(head).join(tail)
    }

    pub fn has(&self, sha: &str) -> bool {
        is_sha1(sha) && self.path(sha).is_file()
    }

    /// Stores `data` under its digest `sha` (already verified by the caller).
    pub fn put(&self, sha: &str, data: &[u8]) -> ApiResult<()> {
        if !is_sha1(sha) {
            return Err(ApiError::invalid("not a SHA-1 digest"));
        }
        if self.has(sha) {
            return Ok(());
        }
        let dest = self.path(sha);
        let parent = dest
            .parent()
            .ok_or_else(|| ApiError::internal("blob path without a parent"))?;
        let io = |e: std::io::Error| ApiError::internal(format!("blob store: {e}"));
        std::fs::create_dir_all(parent).map_err(io)?;
        let tmp = parent.join(format!(".tmp-{}-{}", &sha[2..], crate::model::new_id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &dest)?;
            std::fs::File::open(parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    pub fn read(&self, sha: &str) -> ApiResult<Vec<u8>> {
        if !is_sha1(sha) {
            return Err(ApiError::NotFound("file"));
        }
        std::fs::read(self.path(sha)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ApiError::NotFound("file"),
            _ => ApiError::internal(format!("blob store: {e}")),
        })
    }

    /// Removes every blob not in `live`; returns how many were removed.
    pub fn sweep(&self, live: &HashSet<String>) -> ApiResult<usize> {
        let io = |e: std::io::Error| ApiError::internal(format!("blob sweep: {e}"));
        let mut removed = 0;
        for head in std::fs::read_dir(&self.dir).map_err(io)? {
            let head = head.map_err(io)?;
            if !head.file_type().map_err(io)?.is_dir() {
                continue;
            }
            let prefix = head.file_name().to_string_lossy().into_owned();
            for entry in std::fs::read_dir(head.path()).map_err(io)? {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    continue;
                }
                if !live.contains(&format!("{prefix}{name}")) {
                    std::fs::remove_file(entry.path()).map_err(io)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
