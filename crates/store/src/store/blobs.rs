//! Content-addressed site files: `blobs/ab/cdef…` named by the SHA-1 hex of their bytes
//! (Netlify's digest). Written to a temp file, fsynced, renamed, and the directory fsynced, so
//! a blob that exists is complete. Garbage is swept when no deploy refers to it.
//!
//! With a remote blob store (`remote`), the bucket holds the blobs and the dir is this node's
//! cache: a blob is uploaded when it is committed, and fetched into the dir on first use.

use crate::error::{StoreError, StoreResult};
use sha1::{Digest, Sha1};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
    remote: Option<std::sync::Arc<super::remote::Remote>>,
    /// How old an unreferenced blob in the bucket must be before a sweep deletes it.
    grace: std::time::Duration,
    /// Digests stored (or being stored) for a deploy that does not name them yet: no sweep
    /// takes them meanwhile (see `pin`).
    pinned: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// Keeps digests from every sweep until dropped (`Blobs::pin`).
pub struct Pinned {
    blobs: Blobs,
    digests: Vec<String>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut pinned = self.blobs.pinned.lock().unwrap_or_else(|e| e.into_inner());
        for d in &self.digests {
            if let Some(n) = pinned.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pinned.remove(d);
                }
            }
        }
    }
}

/// True for 40 lowercase hex characters.
pub fn is_sha1(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// A temp file in the blob dir, removed when dropped (unless renamed into place first).
pub struct TempFile {
    pub path: PathBuf,
    pub file: std::fs::File,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A blob being written: a temp file and the SHA-1 of what went in so far. Dropped without
/// `Blobs::commit`, nothing of it stays.
pub struct Incoming {
    tmp: TempFile,
    hasher: Sha1,
    len: u64,
}

impl Incoming {
    pub fn write(&mut self, data: &[u8]) -> StoreResult<()> {
        self.tmp.file.write_all(data).map_err(io_error)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// The SHA-1 hex of everything written.
    pub fn digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A handle that reads what was written, from the start.
    pub fn reopen(&self) -> StoreResult<std::fs::File> {
        use std::io::Seek;
        let mut f = std::fs::File::open(&self.tmp.path).map_err(io_error)?;
        f.rewind().map_err(io_error)?;
        Ok(f)
    }
}

impl Incoming {
    /// Closes the written file, keeping it (and its digest) until `Blobs::commit_parked`: a
    /// zip's entries wait so, thousands at a time, until the quota is checked. Dropped, the
    /// file goes.
    pub fn park(mut self) -> StoreResult<Parked> {
        self.tmp.file.flush().map_err(io_error)?;
        let digest = self.digest();
        let path = std::mem::take(&mut self.tmp.path);
        Ok(Parked {
            path,
            digest,
            len: self.len,
        })
    }
}

/// A written, closed blob not yet stored under its digest (see `Incoming::park`).
pub struct Parked {
    path: PathBuf,
    digest: String,
    len: u64,
}

impl Parked {
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The one clock (`Timestamp::now`) as a file time, for blobs' modification times.
fn clock_now() -> std::time::SystemTime {
    let ms = crate::model::Timestamp::now().0.max(0) as u64;
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

fn io_error(e: std::io::Error) -> StoreError {
    crate::error::from_io("blob store", &e)
}

impl Blobs {
    /// Opens the blob dir, removing temp files a crash left behind (only one process serves a
    /// data dir, so none of them is still being written).
    pub fn open(dir: &Path) -> std::io::Result<Blobs> {
        let dir = dir.join("blobs");
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Blobs {
            dir,
            remote: None,
            grace: std::time::Duration::from_secs(3600),
            pinned: Default::default(),
        })
    }

    /// Keeps the blobs in `remote` (this dir becomes the node's cache); a sweep deletes
    /// unreferenced blobs from it once they are older than `grace`.
    pub fn with_remote(
        mut self,
        remote: super::remote::Remote,
        grace: std::time::Duration,
    ) -> Blobs {
        self.remote = Some(std::sync::Arc::new(remote));
        self.grace = grace;
        self
    }

    pub fn remote(&self) -> Option<&super::remote::Remote> {
        self.remote.as_deref()
    }

    /// The blob's local file, fetched from the remote store into the cache if it is not here.
    /// NotFound if neither has it.
    pub fn local(&self, sha: &str) -> StoreResult<PathBuf> {
        if !is_sha1(sha) {
            return Err(StoreError::NotFound("file"));
        }
        let path = self.path(sha);
        if path.is_file() {
            return Ok(path);
        }
        let Some(remote) = &self.remote else {
            return Err(StoreError::NotFound("file"));
        };
        let tmp = self.temp_file()?;
        if !remote.download(sha, &tmp.path)? {
            return Err(StoreError::NotFound("file"));
        }
        let parent = path
            .parent()
            .ok_or_else(|| StoreError::internal("blob path without a parent"))?;
        std::fs::create_dir_all(parent).map_err(io_error)?;
        // A concurrent fetch of the same blob renames the same content: either one wins.
        crate::files::persist(&tmp.file, &tmp.path, &path).map_err(io_error)?;
        Ok(path)
    }

    /// Where a blob lives. Callers pass validated digests only.
    pub fn path(&self, sha: &str) -> PathBuf {
        let (head, tail) = sha.split_at(2.min(sha.len()));
        self.dir.join(head).join(tail)
    }

    /// The size of a blob in this node's dir.
    pub fn cached_size(&self, sha: &str) -> Option<u64> {
        if !is_sha1(sha) {
            return None;
        }
        std::fs::metadata(self.path(sha))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// The size of a stored blob (here, or in the remote store).
    pub fn size(&self, sha: &str) -> Option<u64> {
        if !is_sha1(sha) {
            return None;
        }
        match (self.cached_size(sha), &self.remote) {
            (Some(len), _) => Some(len),
            (None, Some(remote)) => remote.size(sha).ok().flatten(),
            (None, None) => None,
        }
    }

    /// True if the blob is stored (here, or in the remote store).
    pub fn has(&self, sha: &str) -> bool {
        is_sha1(sha)
            && (self.path(sha).is_file()
                || self
                    .remote
                    .as_ref()
                    .is_some_and(|r| matches!(r.size(sha), Ok(Some(_)))))
    }

    /// A temp file in the blob dir (for a blob, or a zip body spooled to disk).
    pub fn temp_file(&self) -> StoreResult<TempFile> {
        let path = self.dir.join(format!(".tmp-{}", crate::model::new_id()));
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error)?;
        Ok(TempFile { path, file })
    }

    /// Starts writing a blob whose digest is known once it is written.
    pub fn incoming(&self) -> StoreResult<Incoming> {
        Ok(Incoming {
            tmp: self.temp_file()?,
            hasher: Sha1::new(),
            len: 0,
        })
    }

    /// Makes a written blob durable under its digest: fsynced, renamed into place, directory
    /// fsynced. Returns the digest.
    pub fn commit(&self, incoming: Incoming) -> StoreResult<String> {
        let sha = incoming.digest();
        self.commit_as(incoming, sha)
    }

    fn commit_as(&self, mut incoming: Incoming, sha: String) -> StoreResult<String> {
        if let Some(remote) = &self.remote {
            // In the bucket before anything can name it as stored.
            incoming.tmp.file.flush().map_err(io_error)?;
            remote.upload(&sha, &incoming.tmp.path, incoming.len)?;
        }
        if self.path(&sha).is_file() {
            // Fresh again, so the periodic sweep's grace covers the deploy about to name it.
            let touched = std::fs::File::options()
                .write(true)
                .open(self.path(&sha))
                .and_then(|f| f.set_modified(clock_now()));
            if let Err(e) = touched {
                tracing::warn!(error = %e, "cannot touch a stored blob");
            }
            return Ok(sha); // `incoming`'s temp file goes with it
        }
        let dest = self.path(&sha);
        let parent = dest
            .parent()
            .ok_or_else(|| StoreError::internal("blob path without a parent"))?;
        std::fs::create_dir_all(parent).map_err(io_error)?;
        incoming.tmp.file.flush().map_err(io_error)?;
        crate::files::persist(&incoming.tmp.file, &incoming.tmp.path, &dest).map_err(io_error)?;
        Ok(sha)
    }

    /// Keeps `digests` from every sweep until the guard is dropped: a zip's contents, from before
    /// they are stored until its deploy names them.
    pub fn pin(&self, digests: impl IntoIterator<Item = String>) -> Pinned {
        let digests: Vec<String> = digests.into_iter().collect();
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        for d in &digests {
            *pinned.entry(d.clone()).or_default() += 1;
        }
        Pinned {
            blobs: self.clone(),
            digests,
        }
    }

    /// The digests pinned now (see `pin`).
    pub fn pinned(&self) -> Vec<String> {
        let pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        pinned.keys().cloned().collect()
    }

    /// `commit` for a parked blob.
    pub fn commit_parked(&self, mut parked: Parked) -> StoreResult<String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&parked.path)
            .map_err(io_error)?;
        let incoming = Incoming {
            tmp: TempFile {
                path: std::mem::take(&mut parked.path),
                file,
            },
            hasher: Sha1::new(),
            len: parked.len,
        };
        let sha = std::mem::take(&mut parked.digest);
        self.commit_as(incoming, sha)
    }

    /// Stores `data` (a whole file in memory) and returns its digest.
    pub fn put(&self, data: &[u8]) -> StoreResult<String> {
        let sha = sha1_hex(data);
        if self.remote.is_none() && self.has(&sha) {
            return Ok(sha);
        }
        let mut incoming = self.incoming()?;
        incoming.write(data)?;
        self.commit(incoming)
    }

    pub fn read(&self, sha: &str) -> StoreResult<Vec<u8>> {
        if !is_sha1(sha) {
            return Err(StoreError::NotFound("file"));
        }
        std::fs::read(self.local(sha)?).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound("file"),
            _ => StoreError::internal(format!("blob store: {e}")),
        })
    }

    /// Removes every blob not in `live` (from the remote store only once older than the grace
    /// period; here too with `local_grace`, for a sweep no deletion asked for, which must not
    /// take a file a request is storing right now); returns how many were removed here.
    pub fn sweep(
        &self,
        live: &HashSet<String>,
        local_grace: Option<std::time::Duration>,
    ) -> StoreResult<usize> {
        if let Some(remote) = &self.remote {
            // The deletion that asked for the sweep is done: a bucket that does not answer now
            // leaves its garbage to the next sweep.
            match remote.sweep(live, self.grace) {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "swept unreferenced blobs from the blob store")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot sweep the blob store; the next sweep will")
                }
            }
        }
        let mut removed = 0;
        self.each_unreferenced(live, local_grace, |path, _| {
            std::fs::remove_file(path)?;
            removed += 1;
            Ok(())
        })?;
        Ok(removed)
    }

    /// How many local blobs no deploy names, and their bytes (`doctor`).
    pub fn unreferenced(&self, live: &HashSet<String>) -> StoreResult<(usize, u64)> {
        let (mut count, mut bytes) = (0, 0);
        self.each_unreferenced(live, None, |_, len| {
            count += 1;
            bytes += len;
            Ok(())
        })?;
        Ok((count, bytes))
    }

    /// Calls `f` with the path and length of every local blob not in `live` (and, with `grace`,
    /// not modified within it).
    fn each_unreferenced(
        &self,
        live: &HashSet<String>,
        grace: Option<std::time::Duration>,
        mut f: impl FnMut(&Path, u64) -> std::io::Result<()>,
    ) -> StoreResult<()> {
        let io = |e: std::io::Error| StoreError::internal(format!("blob sweep: {e}"));
        let cutoff = grace.and_then(|g| clock_now().checked_sub(g));
        for head in std::fs::read_dir(&self.dir).map_err(io)? {
            let head = head.map_err(io)?;
            if !head.file_type().map_err(io)?.is_dir() {
                continue;
            }
            let prefix = head.file_name().to_string_lossy().into_owned();
            for entry in std::fs::read_dir(head.path()).map_err(io)? {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") || live.contains(&format!("{prefix}{name}")) {
                    continue;
                }
                let meta = entry.metadata().map_err(io)?;
                if cutoff.is_some_and(|c| meta.modified().is_ok_and(|m| m > c)) {
                    continue;
                }
                f(&entry.path(), meta.len()).map_err(io)?;
            }
        }
        Ok(())
    }
}
