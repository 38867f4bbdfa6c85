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

/// `resellerd backup`: writes a backup of `data_dir` to `out` (via a temp file renamed into place
/// once complete and synced). Opens the store itself when no server runs; otherwise asks the
/// running server (found through `<data-dir>/server.json`) with the operator token. Returns the
/// size written.
pub fn save(data_dir: &Path, out: &Path, token: Option<String>) -> Result<u64, String> {
    if !crate::store::has_database(data_dir) {
        return Err(format!("{} holds no resellerd data", data_dir.display()));
    }
    check_room(data_dir, out)?;
    let tmp = partial_path(out);
    let file = claim_partial(&tmp)?;
    let written = match crate::startup::open_data_dir(data_dir) {
        Ok(store) => write(&store, data_dir, file, None)
            .and_then(finish)
            .map_err(|e| e.to_string()),
        Err(crate::store::OpenError::Locked(_)) => fetch(data_dir, token, file),
        Err(e) => Err(e.to_string()),
    };
    let written = written.and_then(|n| {
        File::open(&tmp)
            .and_then(|f| crate::files::persist(&f, &tmp, out))
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        Ok(n)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Opens the partial file of a backup, locked: a second backup to the same file is refused
/// while the first runs, and what a killed one left (its lock went with it) is started over.
fn claim_partial(tmp: &Path) -> Result<BufWriter<File>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            format!(
                "another backup is writing {} now: wait for it, or write elsewhere",
                tmp.display()
            )
        },
    )?;
    file.set_len(0)
        .map_err(|e| format!("cannot truncate {}: {e}", tmp.display()))?;
    Ok(BufWriter::new(file))
}

/// Where a backup to `out` is written until it is complete (then renamed to `out`).
pub fn partial_path(out: &Path) -> PathBuf {
    out.with_file_name(format!(
        ".{}.partial",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("backup")
    ))
}

/// Refuses to start a backup that would not fit where it goes: the database and blob files are
/// an upper bound of its size (a backup holds their live data).
fn check_room(data_dir: &Path, out: &Path) -> Result<(), String> {
    let needed = crate::files::dir_size(data_dir);
    let parent = crate::files::parent_dir(out);
    let (free, _) = crate::disk::space(parent)
        .map_err(|e| format!("cannot read free space of {}: {e}", parent.display()))?;
    if needed > free {
        return Err(format!(
            "the backup may need up to {} MiB (the size of {}) but {} has {} MiB free; free space or write it elsewhere",
            needed >> 20,
            data_dir.display(),
            parent.display(),
            free >> 20
        ));
    }
    Ok(())
}

/// Flushes and syncs a finished backup file; returns its size.
fn finish(mut f: BufWriter<File>) -> io::Result<u64> {
    f.flush()?;
    let f = f.get_ref();
    f.sync_all()?;
    Ok(f.metadata()?.len())
}

/// How many bytes `fetch` writes between two syncs of the backup file.
const SYNC_EVERY: usize = 8 << 20;

/// Downloads a snapshot from the server running on `data_dir`.
fn fetch(data_dir: &Path, token: Option<String>, mut file: BufWriter<File>) -> Result<u64, String> {
    let about_path = data_dir.join("server.json");
    let about: serde_json::Value = std::fs::read(&about_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            format!(
                "the data dir is in use but {} is missing: is a resellerd server running on it?",
                about_path.display()
            )
        })?;
    let mut addr: std::net::SocketAddr = about["http"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{} has no http address", about_path.display()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let token = match token {
        Some(t) => t,
        None => std::fs::read_to_string(crate::auth::operator::token_path(data_dir))
            .map(|t| t.trim().to_string())
            .map_err(|e| {
                format!("no operator token: pass --token or RESELLERD_OPERATOR_TOKEN ({e})")
            })?,
    };
    let url = format!("http://{addr}/api/v1/admin/backup");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the server at {url}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("the server answered {status}: {body}"));
        }
        let expected = resp.content_length();
        let mut unsynced = 0;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("download interrupted: {e}"))?
        {
            file.write_all(&chunk).map_err(|e| e.to_string())?;
            // Written out a few MiB at a time: on the server's own disk, a backup's worth of
            // dirty pages written back at once stalls the server's fsyncs behind it.
            unsynced += chunk.len();
            if unsynced >= SYNC_EVERY {
                file.flush()
                    .and_then(|_| file.get_ref().sync_data())
                    .map_err(|e| e.to_string())?;
                unsynced = 0;
            }
        }
        let n = finish(file).map_err(|e| e.to_string())?;
        match expected {
            Some(len) if len != n => Err(format!("download incomplete: {n} of {len} bytes")),
            _ => Ok(n),
        }
    })
}

/// What a restore brought back.
pub struct Restored {
    pub trees: usize,
    pub records: u64,
    pub files: u64,
}

/// The longest key and value a restore accepts (the store's records are far smaller), and the
/// bytes of records it batches before writing them.
const MAX_KEY: usize = 1 << 20;
const MAX_VALUE: usize = 64 << 20;
const BATCH_BYTES: usize = 64 << 20;
/// Free space a restore leaves on the filesystem beyond what it writes.
const RESTORE_MARGIN: u64 = 64 << 20;

/// Restores a backup into `data_dir`, which must be missing or empty. Nothing in the archive is
/// trusted: only regular files and directories are taken, keys and values are capped, the
/// archive must fit in the free space (`archive_len`, when known) and every file as it comes,
/// and a restore that fails leaves the directory as it found it.
pub fn restore(
    input: impl Read,
    data_dir: &Path,
    archive_len: Option<u64>,
) -> io::Result<Restored> {
    let marker = data_dir.join(RESTORING);
    // A restore that was killed left its marker: the dir was empty when it began, so what is
    // in it now is that restore's, to clear before running again.
    if marker.exists() {
        clear_dir(data_dir)?;
    }
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is not empty: restore only into a new or empty directory",
                data_dir.display()
            ),
        ));
    }
    let existed = data_dir.exists();
    crate::create_private_dir(data_dir)?;
    // In place (a mount point or a symlinked state dir stays what it is), marked until done: a
    // server refuses a marked dir, and the database file gets its name last.
    let result = crate::files::write_private(&marker, b"a restore is writing this directory\n")
        .and_then(|_| restore_into(input, data_dir, archive_len))
        .and_then(|restored| {
            std::fs::remove_file(&marker)?;
            File::open(data_dir)?.sync_all()?;
            Ok(restored)
        });
    if result.is_err() {
        // Nothing of a failed restore stays: the directory as it was (empty, or gone).
        let cleaned = match existed {
            true => clear_dir(data_dir),
            false => std::fs::remove_dir_all(data_dir),
        };
        if let Err(e) = cleaned {
            tracing::warn!(error = %e, dir = %data_dir.display(), "cannot clean up after a failed restore");
        }
    }
    result
}

/// The marker of a restore under way (or killed) in a data dir.
pub const RESTORING: &str = ".restore-incomplete";

/// Removes everything in `dir`, keeping the directory.
fn clear_dir(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        match e.file_type()?.is_dir() {
            true => std::fs::remove_dir_all(e.path())?,
            false => std::fs::remove_file(e.path())?,
        }
    }
    Ok(())
}

/// Refuses to write `bytes` more into `dir` when that would leave less than the margin free.
fn check_free(dir: &Path, bytes: u64) -> io::Result<()> {
    let (free, _) = crate::disk::space(dir)?;
    if free < bytes.saturating_add(RESTORE_MARGIN) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{} has {} MiB free; the backup needs about {} MiB more: free some space or restore elsewhere",
                dir.display(),
                free >> 20,
                (bytes + RESTORE_MARGIN) >> 20
            ),
        ));
    }
    Ok(())
}

fn restore_into(
    input: impl Read,
    data_dir: &Path,
    archive_len: Option<u64>,
) -> io::Result<Restored> {
    if let Some(len) = archive_len {
        check_free(data_dir, len)?;
    }
    let db_path = data_dir.join(format!(".{}.restoring", crate::store::REDB_FILE));
    let db = crate::kv::Engine::create_file(&db_path, crate::store::DEFAULT_CACHE_MB << 20)
        .map_err(io::Error::other)?;
    let mut archive = tar::Archive::new(BufReader::new(input));
    let mut done = Restored {
        trees: 0,
        records: 0,
        files: 0,
    };
    let mut saw_manifest = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let path_str = path.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(invalid(format!(
                "entry {path_str} in backup is not a regular file ({kind:?}): not a resellerd backup"
            )));
        }
        if path_str == MANIFEST {
            let mut text = Vec::new();
            entry.by_ref().take(1 << 20).read_to_end(&mut text)?;
            let m: Manifest = serde_json::from_slice(&text)
                .map_err(|e| invalid(format!("bad backup manifest: {e}")))?;
            if m.format > FORMAT {
                return Err(invalid(format!(
                    "backup format {} is newer than this resellerd understands ({FORMAT}); \
                     restore with resellerd {} or later",
                    m.format, m.resellerd
                )));
            }
            saw_manifest = true;
            continue;
        }
        if !saw_manifest {
            return Err(invalid("not a resellerd backup (no manifest first)"));
        }
        let size = entry.header().size()?;
        if archive_len.is_none_or(|len| size > len) {
            check_free(data_dir, size)?;
        }
        let rel = safe_relative(&path)?;
        let mut parts = rel.iter();
        let top = parts.next().and_then(|p| p.to_str()).unwrap_or_default();
        let rest: PathBuf = parts.collect();
        match top {
            "db" => {
                let name = rest.to_string_lossy().into_owned();
                let tree = db.open_tree(name.as_bytes()).map_err(io::Error::other)?;
                done.records += load_tree(&mut entry.by_ref().take(size), &tree)?;
                done.trees += 1;
            }
            "blobs" | "files" => {
                let dest = if top == "blobs" {
                    data_dir.join("blobs").join(&rest)
                } else {
                    data_dir.join(&rest)
                };
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mode = entry.header().mode().unwrap_or(0o600) & 0o700;
                let mut f = create_with_mode(&dest, mode)?;
                let copied = io::copy(&mut entry.by_ref().take(size), &mut f)?;
                if copied != size {
                    return Err(invalid(format!("entry {path_str} in backup is truncated")));
                }
                f.flush()?;
                f.get_ref().sync_all()?;
                done.files += 1;
            }
            other => return Err(invalid(format!("unexpected entry {other:?} in backup"))),
        }
    }
    if !saw_manifest {
        return Err(invalid("not a resellerd backup (empty)"));
    }
    db.flush().map_err(io::Error::other)?;
    drop(db);
    // The database gets its name last: a data dir is one only once everything is in it.
    let db_file = data_dir.join(crate::store::REDB_FILE);
    std::fs::rename(&db_path, &db_file)?;
    File::open(data_dir)?.sync_all()?;
    Ok(done)
}

fn create_with_mode(path: &Path, mode: u32) -> io::Result<BufWriter<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.max(0o600))
        .open(path)?;
    Ok(BufWriter::new(f))
}

/// Reads length-prefixed key/value pairs into `tree`; returns how many.
fn load_tree(input: &mut impl Read, tree: &crate::kv::Tree) -> io::Result<u64> {
    let mut count = 0;
    let (mut batch, mut bytes) = (crate::kv::Batch::default(), 0);
    while let Some(key) = read_part(input, true, MAX_KEY)? {
        let value =
            read_part(input, false, MAX_VALUE)?.ok_or_else(|| invalid("truncated record"))?;
        bytes += key.len() + value.len();
        batch.insert(key, value);
        count += 1;
        if count % 10_000 == 0 || bytes >= BATCH_BYTES {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(io::Error::other)?;
            bytes = 0;
        }
    }
    tree.apply_batch(batch).map_err(io::Error::other)?;
    Ok(count)
}

/// One length-prefixed part of at most `max` bytes; `None` at a clean end of input when
/// `at_start`.
fn read_part(input: &mut impl Read, at_start: bool, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = input.read(&mut len[got..])?;
        if n == 0 {
            return if got == 0 && at_start {
                Ok(None)
            } else {
                Err(invalid("truncated record"))
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!(
            "a record in the backup declares {len} bytes, more than any record holds ({max}): not a resellerd backup"
        )));
    }
    let mut buf = Vec::new();
    input.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(invalid("truncated record"));
    }
    Ok(Some(buf))
}

/// A path inside the archive, refused if it could escape the target directory.
fn safe_relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(invalid(format!("unsafe path {} in backup", path.display()))),
        }
    }
    if out.components().count() < 2 {
        return Err(invalid(format!(
            "unexpected entry {} in backup",
            path.display()
        )));
    }
    Ok(out)
}

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
