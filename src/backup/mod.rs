//! Backup and restore. A backup is one tar file:
//!
//! - `resellerd-backup.json`: the format version and when it was made;
//! - `db/<tree>`: every tree as length-prefixed key/value pairs;
//! - `blobs/…`: the content-addressed site files;
//! - `files/…`: the data dir's other state (TLS keys, operator token hash, secrets).
//!
//! A running server makes it without stalling writes. On redb, the API's write gate is closed
//! while the requests in flight finish and one read transaction is opened: a snapshot of every
//! tree, read into the archive while writes go on. On sled, which has no snapshots, the trees are
//! copied while writes go on, every change made meanwhile is recorded, and the recorded changes up
//! to one cut, taken with the gate closed for a few milliseconds, are laid over the copy. The
//! engine layer does either (`kv::Db::dump`); this module only archives what it reads. Either way
//! the archive holds the database exactly as it was at one moment: every write acknowledged
//! before the backup began and no half-applied request. Blobs are copied after that with garbage
//! collection held off; they are immutable and written before any record names them, so every
//! blob the dump refers to is there.

use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

pub const FORMAT: u32 = 1;
const MANIFEST: &str = "resellerd-backup.json";

/// Entries of the data dir that are not copied as files: the database and blobs (copied their
/// own way), the plaintext operator token (the hash is copied, so the same token keeps working),
/// and what a running server writes about itself.
const SKIP: &[&str] = &[
    "db",
    crate::store::REDB_FILE,
    "blobs",
    "operator-token",
    "server.json",
];

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    created_at: String,
    resellerd: String,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The lock every mutating API request holds for reading (the store's write gate): a backup of
/// a running server closes it twice, for milliseconds, to start recording changes and to cut.
/// `None` offline, where nothing else writes.
pub type Gate = Option<std::sync::Arc<tokio::sync::RwLock<()>>>;

/// A `Write` that hands what is written, in chunks of `CHUNK` bytes, to an async receiver (the
/// backup endpoint's response body). It blocks while the receiver holds enough chunks, so the
/// dump runs no further ahead of the client than the channel's capacity; a receiver that takes
/// nothing for `idle` fails the write (a client that stops reading would otherwise hold the
/// database's snapshot for ever). Call `flush` at the end. Made on the runtime's blocking pool.
pub struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<io::Result<actix_web::web::Bytes>>,
    buf: Vec<u8>,
    idle: std::time::Duration,
    runtime: tokio::runtime::Handle,
}

const CHUNK: usize = 256 * 1024;

/// How long the backup endpoint waits for a client that reads nothing.
pub const IDLE_CLIENT: std::time::Duration = std::time::Duration::from_secs(60);

impl ChunkSender {
    pub fn new(
        tx: tokio::sync::mpsc::Sender<io::Result<actix_web::web::Bytes>>,
        idle: std::time::Duration,
        runtime: tokio::runtime::Handle,
    ) -> ChunkSender {
        ChunkSender {
            tx,
            buf: Vec::with_capacity(CHUNK),
            idle,
            runtime,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let (tx, idle) = (&self.tx, self.idle);
        let sent = self
            .runtime
            .block_on(async { tokio::time::timeout(idle, tx.send(Ok(chunk.into()))).await });
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", self.idle.as_secs()),
            )),
        }
    }
}

impl Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.buf.is_empty() {
            true => Ok(()),
            false => self.send(),
        }
    }
}

/// The bytes `put_pair` writes for `k` and `v`.
fn pair_len(k: &[u8], v: &[u8]) -> u64 {
    8 + k.len() as u64 + v.len() as u64
}

fn put_pair<W: Write>(out: &mut W, k: &[u8], v: &[u8]) -> io::Result<()> {
    for part in [k, v] {
        out.write_all(&(part.len() as u32).to_be_bytes())?;
        out.write_all(part)?;
    }
    Ok(())
}

/// Writes a backup of `store` (opened on `data_dir`) to `out`. A running server passes its write
/// gate, closed while the dump takes its moment (see `kv::Db::dump`); offline, nothing else
/// writes.
pub fn write<W: Write>(store: &Store, data_dir: &Path, out: W, gate: Gate) -> io::Result<W> {
    let _gc = store
        .blobs_in_use()
        .map_err(|e| io::Error::other(e.to_string()))?;
    store.check_dump().map_err(unsupported)?;
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let manifest = Manifest {
        format: FORMAT,
        created_at: crate::model::Timestamp::now().to_rfc3339(),
        resellerd: env!("CARGO_PKG_VERSION").to_string(),
    };
    append_bytes(
        &mut tar,
        MANIFEST,
        &serde_json::to_vec_pretty(&manifest)?,
        0o600,
    )?;
    let began = std::time::Instant::now();
    let dump = store
        .dump(data_dir, || gate.as_ref().map(|g| g.blocking_write()))
        .map_err(unsupported)?;
    let ([start, cut], changes) = dump.held();
    tracing::info!(
        start_held_ms = start.as_secs_f64() * 1000.0,
        cut_held_ms = cut.as_secs_f64() * 1000.0,
        changes,
        "backup snapshot taken"
    );
    for name in dump.names().map_err(io::Error::other)? {
        archive_tree(&mut tar, &dump, &name)?;
    }
    tracing::info!(
        dump_secs = began.elapsed().as_secs_f64(),
        "backup of the database written"
    );
    drop(dump);
    append_dir(&mut tar, &data_dir.join("blobs"), "blobs", &|_| true)?;
    append_dir(&mut tar, data_dir, "files", &|name| {
        !SKIP.contains(&name) && !name.starts_with('.')
    })?;
    tar.into_inner()
}

/// A store error as an I/O error: a refusal (a store that cannot be dumped) keeps its words.
fn unsupported(e: resellerd_store::error::StoreError) -> io::Error {
    match e {
        resellerd_store::error::StoreError::InvalidRequest(why) => {
            io::Error::new(io::ErrorKind::Unsupported, why)
        }
        e => io::Error::other(e.to_string()),
    }
}

/// Archives the tree `name` as it is in `dump`: one pass for its size (the tar header comes
/// first), one streaming it. A dump reads the same both times.
fn archive_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    dump: &crate::kv::Dump,
    name: &str,
) -> io::Result<()> {
    let mut size = 0u64;
    for pair in dump.iter(name) {
        let (k, v) = pair.map_err(io::Error::other)?;
        size += pair_len(&k, &v);
    }
    let pairs = PairReader {
        pairs: dump.iter(name),
        buf: Vec::new(),
        at: 0,
    };
    append_read(tar, &format!("db/{name}"), size, 0o600, pairs.take(size))
}

/// Entries as the length-prefixed pairs of a dump, read as bytes.
struct PairReader<'a> {
    pairs: Box<dyn Iterator<Item = crate::kv::Result<(crate::kv::IVec, crate::kv::IVec)>> + 'a>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for PairReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            let Some(pair) = self.pairs.next() else {
                return Ok(0);
            };
            let (k, v) = pair.map_err(io::Error::other)?;
            self.buf.clear();
            self.at = 0;
            put_pair(&mut self.buf, &k, &v)?;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    append_read(tar, path, bytes.len() as u64, mode, bytes)
}

/// Appends a regular file of `size` bytes read from `data`.
fn append_read<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mode: u32,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// Appends the regular files under `dir` (recursively) as `prefix/…`, skipping top-level
/// entries whose name `keep` rejects and temporary files (names starting with a dot).
fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    keep: &dyn Fn(&str) -> bool,
) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut entries: Vec<_> = entries.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !keep(name) || name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        let path = format!("{prefix}/{name}");
        if kind.is_dir() {
            append_dir(tar, &entry.path(), &path, &|_| true)?;
        } else if kind.is_file() {
            match File::open(entry.path()) {
                Ok(mut f) => tar.append_file(&path, &mut f)?,
                // Deleted since listed (a temp file renamed away): nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

mod restore;
mod save;

pub use restore::{restore, Restored, RESTORING};
pub use save::{partial_path, save, BackupError};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dump(tx: tokio::sync::mpsc::Sender<io::Result<actix_web::web::Bytes>>) -> io::Error {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        let dumped = std::thread::spawn(move || {
            let mut out = ChunkSender::new(tx, Duration::from_millis(50), handle);
            (0..4).try_for_each(|_| out.write_all(&vec![0u8; CHUNK]))
        })
        .join()
        .unwrap();
        dumped.unwrap_err()
    }

    /// The backup endpoint's writer ends the dump for a client that reads nothing (else it
    /// would hold the database's snapshot for ever) and for one that went away.
    #[test]
    fn a_client_that_reads_nothing_or_left_ends_the_dump() {
        let (tx, _unread) = tokio::sync::mpsc::channel(1);
        let e = dump(tx);
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        let (tx, gone) = tokio::sync::mpsc::channel(1);
        drop(gone);
        assert_eq!(dump(tx).kind(), io::ErrorKind::BrokenPipe);
    }
}
