//! sled as an embedded engine: the directory `db` of data dirs made before redb. The only file
//! that names sled's types: each is wrapped here and answers in the engine layer's vocabulary
//! (`kv::IVec`, `kv::Error`, `kv::TransactionError`).
//!
//! sled keeps its index in memory and replays its log at open, so a start after a long run
//! reads the whole log; `checkpoint` (an open and a close as the server stops) writes the
//! recovery snapshot that makes the next start fast. `compact` rewrites the database into a new
//! directory renamed into place; `dump` reads every tree at one moment while writes go on.

use super::{
    Batch, CompareAndSwapError, ConflictableTransactionError, ConflictableTransactionResult, Error,
    IVec, Result, TransactionError, TransactionResult, UnabortableTransactionError,
    UnabortableTransactionResult,
};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// The directory of a data dir's sled database.
pub const DIR: &str = "db";
/// Where `compact` builds the new database, and where the old one waits to be removed.
pub const COMPACTING: &str = "db.compacting";
const COMPACTED_OLD: &str = "db.old";

/// A sled failure in the engine layer's words; an I/O error keeps its kind.
fn to_error(e: ::sled::Error) -> Error {
    let text = e.to_string();
    match e {
        ::sled::Error::Io(io) => Error::Io(io),
        ::sled::Error::Unsupported(s) => Error::Unsupported(s),
        ::sled::Error::ReportableBug(s) => Error::ReportableBug(s),
        ::sled::Error::Corruption { .. } => Error::Corruption(text),
        ::sled::Error::CollectionNotFound(_) => Error::Unsupported(text),
    }
}

fn own(v: ::sled::IVec) -> IVec {
    IVec::from(&v[..])
}

fn own_pair(r: ::sled::Result<(::sled::IVec, ::sled::IVec)>) -> Result<(IVec, IVec)> {
    r.map(|(k, v)| (own(k), own(v))).map_err(to_error)
}

fn to_sled(batch: &Batch) -> ::sled::Batch {
    let mut out = ::sled::Batch::default();
    for (k, v) in &batch.ops {
        match v {
            Some(v) => out.insert(&k[..], &v[..]),
            None => out.remove(&k[..]),
        }
    }
    out
}

fn unabortable(e: ::sled::transaction::UnabortableTransactionError) -> UnabortableTransactionError {
    match e {
        ::sled::transaction::UnabortableTransactionError::Conflict => {
            UnabortableTransactionError::Conflict
        }
        ::sled::transaction::UnabortableTransactionError::Storage(e) => {
            UnabortableTransactionError::Storage(to_error(e))
        }
    }
}

/// An open sled database.
#[derive(Clone)]
pub struct Db(::sled::Db);

/// How every sled database of a data dir is opened (`db`, and a compaction's copy).
fn config(path: &Path, cache_bytes: u64) -> ::sled::Config {
    ::sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .mode(::sled::Mode::HighThroughput)
}

/// Opens the database at `path`; another process holding it is an I/O error of kind
/// `WouldBlock`.
fn open_at(path: &Path, cache_bytes: u64) -> Result<Db> {
    config(path, cache_bytes)
        .open()
        .map(Db)
        .map_err(|e| match e {
            ::sled::Error::Io(io)
                if io.kind() == io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
            {
                Error::Io(io::Error::new(io::ErrorKind::WouldBlock, io.to_string()))
            }
            e => to_error(e),
        })
}

/// Opens the sled database of the data dir `dir`, first settling a compaction a crash cut
/// short (unless a compaction is running: then the database is its to open, and the open
/// reports the dir as in use).
pub fn open(dir: &Path, cache_bytes: u64) -> Result<Db> {
    if let Some(_compaction) = compaction_lock(dir)? {
        settle_compaction(dir)?;
    }
    open_at(&dir.join(DIR), cache_bytes)
}

/// A temporary database, gone when dropped (tests).
#[cfg(test)]
pub fn temporary() -> Result<Db> {
    ::sled::Config::new()
        .temporary(true)
        .open()
        .map(Db)
        .map_err(to_error)
}

/// Opens the database of the data dir `dir` and closes it again, which brings its recovery
/// snapshot up to date: sled (0.34) writes that snapshot only when it opens, and otherwise
/// replays, on every start, the whole log written since the last open (seconds at a million
/// users).
pub fn checkpoint(dir: &Path, cache_bytes: u64) -> Result<()> {
    open(dir, cache_bytes).map(drop)
}

/// The compaction lock of the data dir `dir` (an advisory lock on a file in it, gone with the
/// process that held it), or None if another process holds it.
fn compaction_lock(dir: &Path) -> io::Result<Option<std::fs::File>> {
    use rustix::fs::{flock, FlockOperation};
    if !dir.exists() {
        return Ok(None);
    }
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".compaction.lock"))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Finishes or undoes a compaction that a crash interrupted. The new database is renamed to
/// `db` only once it is complete and flushed, so: with `db` present, a `db.compacting` is
/// unfinished (removed) and a `db.old` is the replaced one (removed); with `db` missing, the
/// crash fell between the two renames and `db.compacting` is complete (renamed into place).
fn settle_compaction(dir: &Path) -> io::Result<()> {
    let (db, new, old) = (dir.join(DIR), dir.join(COMPACTING), dir.join(COMPACTED_OLD));
    if !db.exists() && new.exists() && old.exists() {
        std::fs::rename(&new, &db)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    for leftover in [new, old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)?;
        }
    }
    Ok(())
}

/// Rewrites the database of the stopped data dir `dir` into a new one holding only its live
/// records, and puts it in place of the old one; returns the database's size in bytes before
/// and after. sled reuses the space of deleted records but gives a file back only from its end,
/// so after a burst of short-lived records (expired tokens) the file stays at its peak until
/// this runs. Crash-safe: see `settle_compaction`. Another process holding the database is an
/// I/O error of kind `WouldBlock`.
pub fn compact(dir: &Path, cache_bytes: u64) -> Result<(u64, u64)> {
    let path = dir.join(DIR);
    if !path.exists() && !dir.join(COMPACTING).exists() {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            "there is no database here",
        )));
    }
    // Held throughout, so that no other open settles (removes) the copy being built.
    let Some(_compaction) = compaction_lock(dir)? else {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another compaction is running",
        )));
    };
    settle_compaction(dir)?;
    let before = crate::files::dir_size(&path);
    {
        let old = open_at(&path, cache_bytes)?;
        let new = open_at(&dir.join(COMPACTING), cache_bytes)?;
        for name in old.0.tree_names() {
            let from = old.0.open_tree(&name).map_err(to_error)?;
            let to = new.0.open_tree(&name).map_err(to_error)?;
            let mut batch = ::sled::Batch::default();
            let mut n = 0;
            for kv in from.iter() {
                let (k, v) = kv.map_err(to_error)?;
                batch.insert(k, v);
                n += 1;
                if n % 10_000 == 0 {
                    to.apply_batch(std::mem::take(&mut batch))
                        .map_err(to_error)?;
                }
            }
            to.apply_batch(batch).map_err(to_error)?;
        }
        new.0.flush().map_err(to_error)?;
    }
    std::fs::rename(&path, dir.join(COMPACTED_OLD))?;
    std::fs::rename(dir.join(COMPACTING), &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    std::fs::remove_dir_all(dir.join(COMPACTED_OLD))?;
    // The new database's recovery snapshot, so its first start replays nothing.
    drop(open_at(&path, cache_bytes)?);
    Ok((before, crate::files::dir_size(&path)))
}

impl Db {
    pub fn open_tree(&self, name: &[u8]) -> Result<Tree> {
        self.0.open_tree(name).map(Tree).map_err(to_error)
    }

    pub fn drop_tree(&self, name: &[u8]) -> Result<bool> {
        self.0.drop_tree(name).map_err(to_error)
    }

    pub fn tree_names(&self) -> Vec<IVec> {
        self.0.tree_names().into_iter().map(own).collect()
    }

    pub fn flush(&self) -> Result<usize> {
        self.0.flush().map_err(to_error)
    }

    pub fn was_recovered(&self) -> bool {
        self.0.was_recovered()
    }

    /// The tree behind `Db::get` and `Db::insert`.
    pub fn default_tree(&self) -> Tree {
        Tree((*self.0).clone())
    }

    /// Every tree as it is at one moment, read while writes go on (see `Dump`); `hold` returns
    /// a guard under which no write is half done (the store's write gate), taken twice for
    /// milliseconds. The dump is spilled to a temporary file in `scratch`.
    pub fn dump<G>(&self, scratch: &Path, hold: impl Fn() -> G) -> Result<Dump> {
        Dump::take(self, scratch, hold)
    }
}

/// One tree of a sled database.
#[derive(Clone)]
pub struct Tree(::sled::Tree);

impl Tree {
    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.0.get(key).map(|v| v.map(own)).map_err(to_error)
    }

    pub fn insert(&self, key: &[u8], value: IVec) -> Result<Option<IVec>> {
        self.0
            .insert(key, &value[..])
            .map(|v| v.map(own))
            .map_err(to_error)
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.0.remove(key).map(|v| v.map(own)).map_err(to_error)
    }

    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.0.contains_key(key).map_err(to_error)
    }

    pub fn range(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Iter {
        Iter(self.0.range::<&[u8], _>((lo, hi)))
    }

    pub fn scan_prefix(&self, prefix: &[u8]) -> Iter {
        Iter(self.0.scan_prefix(prefix))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn apply_batch(&self, batch: &Batch) -> Result<()> {
        self.0.apply_batch(to_sled(batch)).map_err(to_error)
    }

    pub fn flush(&self) -> Result<usize> {
        self.0.flush().map_err(to_error)
    }

    pub fn clear(&self) -> Result<()> {
        self.0.clear().map_err(to_error)
    }

    pub fn compare_and_swap(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<IVec>,
    ) -> Result<std::result::Result<(), CompareAndSwapError>> {
        let new = new.map(|v| ::sled::IVec::from(&v[..]));
        Ok(self
            .0
            .compare_and_swap(key, old, new)
            .map_err(to_error)?
            .map_err(|e| CompareAndSwapError {
                current: e.current.map(own),
                proposed: e.proposed.map(own),
            }))
    }

    pub fn update_and_fetch(
        &self,
        key: &[u8],
        mut f: impl FnMut(Option<&[u8]>) -> Option<IVec>,
    ) -> Result<Option<IVec>> {
        self.0
            .update_and_fetch(key, |old| f(old).map(|v| ::sled::IVec::from(&v[..])))
            .map(|v| v.map(own))
            .map_err(to_error)
    }

    pub fn name(&self) -> IVec {
        own(self.0.name())
    }
}

/// A tree inside a transaction.
#[derive(Clone)]
pub struct TxTree(::sled::transaction::TransactionalTree);

impl TxTree {
    pub fn get(&self, key: &[u8]) -> UnabortableTransactionResult<Option<IVec>> {
        self.0.get(key).map(|v| v.map(own)).map_err(unabortable)
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> UnabortableTransactionResult<()> {
        self.0.insert(key, value).map(drop).map_err(unabortable)
    }

    pub fn remove(&self, key: &[u8]) -> UnabortableTransactionResult<Option<IVec>> {
        self.0.remove(key).map(|v| v.map(own)).map_err(unabortable)
    }

    pub fn apply_batch(&self, batch: &Batch) -> UnabortableTransactionResult<()> {
        self.0.apply_batch(&to_sled(batch)).map_err(unabortable)
    }
}

/// Why a sled transaction stopped: the closure's own abort, or an engine failure it met (sled's
/// closures abort with one type; the engine layer's keep the two apart).
enum Stopped<E> {
    Abort(E),
    Storage(Error),
}

/// Runs `f` as one transaction over `trees` (sled runs it again on a conflict).
pub fn transaction<A, E>(
    trees: &[&Tree],
    f: impl Fn(&[TxTree]) -> ConflictableTransactionResult<A, E>,
) -> TransactionResult<A, E> {
    use ::sled::transaction::ConflictableTransactionError as Sled;
    use ::sled::Transactional as _;
    let trees: Vec<&::sled::Tree> = trees.iter().map(|t| &t.0).collect();
    let result = trees[..].transaction(|txs| {
        let txs: Vec<TxTree> = txs.iter().cloned().map(TxTree).collect();
        f(&txs).map_err(|e| match e {
            ConflictableTransactionError::Abort(e) => Sled::Abort(Stopped::Abort(e)),
            ConflictableTransactionError::Conflict => Sled::Conflict,
            ConflictableTransactionError::Storage(e) => Sled::Abort(Stopped::Storage(e)),
        })
    });
    result.map_err(|e| match e {
        ::sled::transaction::TransactionError::Abort(Stopped::Abort(e)) => {
            TransactionError::Abort(e)
        }
        ::sled::transaction::TransactionError::Abort(Stopped::Storage(e)) => {
            TransactionError::Storage(e)
        }
        ::sled::transaction::TransactionError::Storage(e) => TransactionError::Storage(to_error(e)),
    })
}

/// Entries of a tree in key order.
pub struct Iter(::sled::Iter);

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(own_pair)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(own_pair)
    }
}

mod dump;

pub use dump::Dump;

#[cfg(test)]
mod tests {
    use super::*;

    /// A running compaction's half-built copy is not settled (removed) by another open; once no
    /// compaction holds the lock, the next open removes it.
    #[test]
    fn an_open_leaves_a_running_compactions_copy_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        checkpoint(dir, 8 << 20).unwrap();
        let copy = dir.join(COMPACTING);
        std::fs::create_dir(&copy).unwrap();
        let running = compaction_lock(dir).unwrap().expect("the lock is free");
        assert!(compaction_lock(dir).unwrap().is_none(), "held once");
        checkpoint(dir, 8 << 20).unwrap();
        assert!(copy.exists(), "a running compaction's copy is kept");
        drop(running);
        checkpoint(dir, 8 << 20).unwrap();
        assert!(!copy.exists(), "an abandoned copy is removed");
    }

    /// A dump is the database at its cut: writes made while it copies are laid over the copy
    /// (changed, added, removed keys), writes after the cut are not.
    #[test]
    fn a_dump_is_the_database_at_its_cut() {
        let db = temporary().unwrap();
        let t = db.open_tree(b"t").unwrap();
        for i in 0..2_000u32 {
            t.insert(&i.to_be_bytes(), IVec::from(&b"old"[..])).unwrap();
        }
        let scratch = tempfile::tempdir().unwrap();
        let holds = std::cell::Cell::new(0);
        let dump = db
            .dump(scratch.path(), || {
                holds.set(holds.get() + 1);
                if holds.get() == 2 {
                    // Made between the start and the cut: in the dump.
                    t.insert(&5u32.to_be_bytes(), IVec::from(&b"new"[..]))
                        .unwrap();
                    t.remove(&6u32.to_be_bytes()).unwrap();
                    t.insert(&9_999u32.to_be_bytes(), IVec::from(&b"added"[..]))
                        .unwrap();
                    // sled hands events over asynchronously: let the capture take them.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            })
            .unwrap();
        // After the cut: not in the dump.
        t.insert(&7u32.to_be_bytes(), IVec::from(&b"late"[..]))
            .unwrap();
        assert_eq!(holds.get(), 2);
        assert!(dump.names().contains(&"t".to_string()));
        let seen: Vec<(IVec, IVec)> = dump.iter("t").map(|r| r.unwrap()).collect();
        let mut want: Vec<(IVec, IVec)> = (0..2_000u32)
            .filter(|i| *i != 6)
            .map(|i| {
                let v: &[u8] = if i == 5 { b"new" } else { b"old" };
                (IVec::from(&i.to_be_bytes()), IVec::from(v))
            })
            .collect();
        want.push((
            IVec::from(&9_999u32.to_be_bytes()),
            IVec::from(&b"added"[..]),
        ));
        assert_eq!(seen, want);
        // Read again, the same.
        assert_eq!(dump.iter("t").count(), want.len());
        assert_eq!(dump.iter("missing").count(), 0);
    }
}
