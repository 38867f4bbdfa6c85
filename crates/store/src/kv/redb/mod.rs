//! redb as the store's embedded engine: one file (`store.redb` in the data dir), a copy-on-write
//! B-tree of 4 KiB pages with its index on disk. Memory follows the page cache, not the number of
//! records, and opening a database reads two pages, so a restart costs the same at any size.
//!
//! Every tree is a table of byte keys and values (the same byte order as sled's). A transaction
//! is a redb write transaction: writers take turns (there are no conflicts to run again), and
//! readers never wait (each read is a snapshot). Commits are not durable by themselves
//! (`Durability::None`); `flush`, which the group commit runs before any write is acknowledged,
//! commits an empty durable transaction that makes every earlier commit durable with one fsync.
//! An idle database's last durable commit also saves the allocator's state (quick repair), so a
//! start after a crash while idle does not walk the whole file; one after a crash under load
//! does (as sled replays its log).

use super::{
    Batch, ConflictableTransactionError, ConflictableTransactionResult, Error, IVec, Result,
    TransactionError, TransactionResult, UnabortableTransactionError, UnabortableTransactionResult,
};
use redb::{
    Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};
use std::cell::Cell;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

/// The file of a data dir's redb database.
pub const FILE: &str = "store.redb";

/// The table behind `Db::get` and `Db::insert` (named as sled names its default tree, so both
/// engines list the same trees).
const DEFAULT_TREE: &str = "__sled__default";

type Table<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

/// A tree opened for reading: a snapshot of it, which holds its read transaction.
type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

fn table(name: &str) -> Table<'_> {
    TableDefinition::new(name)
}

/// A redb failure in the store's vocabulary: I/O errors keep their kind (a full disk stays a
/// full disk), the rest are reported as I/O errors with redb's words.
pub(crate) fn to_error(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Io(io) => {
            if super::is_disk_full(&io) {
                NO_SPACE.store(true, Ordering::Release);
            }
            Error::Io(io)
        }
        // After an I/O error redb refuses everything until the file is opened again, naming
        // no cause: a full disk stays a full disk (507), which the disk watcher reopens from.
        redb::Error::PreviousIo => Error::Io(std::io::Error::new(
            match NO_SPACE.load(Ordering::Acquire) {
                true => std::io::ErrorKind::StorageFull,
                false => std::io::ErrorKind::Other,
            },
            "an earlier write failed; the database must be opened again",
        )),
        redb::Error::DatabaseAlreadyOpen => Error::Io(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the database file is locked by another process",
        )),
        other => Error::Io(super::types::EngineFailure::io(
            format!("redb: {other}"),
            other,
        )),
    }
}

/// Set once a write met a full disk: redb names only the first failure's cause.
static NO_SPACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// True while this thread runs a write transaction: another write from the same thread would
    /// wait for that transaction forever.
    static WRITING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside a write transaction until dropped.
struct Writing;

impl Writing {
    fn enter() -> Result<Writing> {
        if WRITING.with(|w| w.replace(true)) {
            return Err(Error::ReportableBug(
                "a write outside the transaction this thread has open would wait for it forever"
                    .into(),
            ));
        }
        Ok(Writing)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        WRITING.with(|w| w.set(false));
    }
}

struct Inner {
    db: redb::Database,
    existed: bool,
    /// Set after every commit, cleared by a flush: whether a flush has anything to make durable.
    dirty: AtomicBool,
    /// Whether the last durable commit saved the allocator state (a crash after it needs no
    /// full repair at the next open).
    repairable: AtomicBool,
    /// Trees opened for reading since the latest commit, shared by every reader (see
    /// `Inner::reading`).
    reading: RwLock<Reading>,
}

/// The trees readers opened since the latest commit (`None`: no such tree then), and how many
/// commits there were (`Db::commit` counts them as it drops the trees).
#[derive(Default)]
struct Reading {
    commits: u64,
    tables: HashMap<Arc<str>, Option<Arc<ReadTable>>>,
}

impl Inner {
    /// The tree `name` as the latest commit left it, or `None` if there is no such tree.
    /// Opening one takes a read transaction and a lookup in redb's table of tables, about a
    /// tenth of a `GET /users`, so readers share what they opened until the next commit, which
    /// drops it (`Db::commit`): a shared snapshot never keeps pages that later commits freed.
    /// Whoever reads after a commit returned sees it: the commit dropped every tree opened
    /// before it, and a tree opened around it is kept only if no commit was counted since the
    /// reader looked.
    fn reading(&self, name: &Arc<str>) -> Result<Option<Arc<ReadTable>>> {
        let commits = {
            let reading = self.reading.read().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = reading.tables.get(name) {
                return Ok(t.clone());
            }
            reading.commits
        };
        let tx = self.db.begin_read().map_err(to_error)?;
        let t = match tx.open_table(table(name)) {
            Ok(t) => Some(Arc::new(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(to_error(e)),
        };
        let mut reading = self.reading.write().unwrap_or_else(|e| e.into_inner());
        // A commit since may have landed before the snapshot began or after: the next reader
        // opens its own.
        if reading.commits == commits {
            reading.tables.insert(name.clone(), t.clone());
        }
        Ok(t)
    }
}

impl Drop for Inner {
    /// A closing database makes what was committed durable (as sled's does).
    fn drop(&mut self) {
        // Readers' shared tables go before the database they read.
        self.reading
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .tables
            .clear();
        if self.dirty.load(Ordering::Acquire) && !std::thread::panicking() {
            if let Ok(mut tx) = self.db.begin_write() {
                let _ = tx.set_durability(Durability::Immediate);
                tx.set_quick_repair(true);
                if let Err(e) = tx.commit() {
                    tracing::warn!(error = %e, "cannot flush the database as it closes");
                }
            }
        }
    }
}

/// A redb database.
#[derive(Clone)]
pub struct Db(Arc<Inner>);

impl Db {
    /// Opens (or creates) the database file `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Db> {
        let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        Db::wrap(create(path, cache_bytes)?, existed)
    }

    /// Opens the database on `backend` instead of a file: the power-loss tests' simulated disk.
    pub fn open_on(backend: impl redb::StorageBackend, cache_bytes: u64) -> Result<Db> {
        let existed = backend.len().is_ok_and(|len| len > 0);
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes as usize)
            .create_with_backend(backend)
            .map_err(to_error)?;
        Db::wrap(db, existed)
    }

    fn wrap(db: redb::Database, existed: bool) -> Result<Db> {
        let db = Db(Arc::new(Inner {
            db,
            existed,
            dirty: AtomicBool::new(false),
            repairable: AtomicBool::new(false),
            reading: RwLock::default(),
        }));
        db.open_tree(DEFAULT_TREE.as_bytes())?;
        Ok(db)
    }

    /// True if the file held a database before this open.
    pub fn existed(&self) -> bool {
        self.0.existed
    }

    /// Begins this thread's write transaction (see `Writing`) with `durability`.
    fn begin(&self, durability: Durability) -> Result<(Writing, redb::WriteTransaction)> {
        let writing = Writing::enter()?;
        let mut tx = self.0.db.begin_write().map_err(to_error)?;
        tx.set_durability(durability).map_err(to_error)?;
        Ok((writing, tx))
    }

    /// Commits a transaction of `begin(Durability::None)`, leaving something for `flush`.
    /// Readers' shared tables of earlier commits are dropped (see `Inner::reading`).
    fn commit(&self, tx: redb::WriteTransaction) -> Result<()> {
        tx.commit().map_err(to_error)?;
        self.0.dirty.store(true, Ordering::Release);
        let stale = {
            let mut reading = self.0.reading.write().unwrap_or_else(|e| e.into_inner());
            reading.commits += 1;
            std::mem::take(&mut reading.tables)
        };
        drop(stale);
        Ok(())
    }

    /// Runs `f` in a write transaction of its own and commits it (not durably: see `flush`).
    fn write<T>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        let (_writing, tx) = self.begin(Durability::None)?;
        match f(&tx) {
            Ok(t) => {
                self.commit(tx)?;
                Ok(t)
            }
            Err(e) => {
                let _ = tx.abort();
                Err(e)
            }
        }
    }

    pub fn open_tree(&self, name: &[u8]) -> Result<Tree> {
        let name: Arc<str> = tree_name(name)?.into();
        self.write(|tx| tx.open_table(table(&name)).map(drop).map_err(to_error))?;
        Ok(Tree {
            db: self.clone(),
            name,
        })
    }

    pub fn drop_tree(&self, name: &[u8]) -> Result<bool> {
        let name = tree_name(name)?;
        self.write(|tx| tx.delete_table(table(&name)).map_err(to_error))
    }

    pub fn tree_names(&self) -> Result<Vec<IVec>> {
        let tx = self.0.db.begin_read().map_err(to_error)?;
        let names = tx.list_tables().map_err(to_error)?;
        Ok(names.map(|t| IVec::from(t.name().as_bytes())).collect())
    }

    pub fn default_tree(&self) -> Tree {
        Tree {
            db: self.clone(),
            name: DEFAULT_TREE.into(),
        }
    }

    /// Makes every commit so far durable: an empty durable commit (one fsync). Nothing to do if
    /// nothing was committed since the last flush began.
    pub fn flush(&self) -> Result<usize> {
        self.durable_commit(false).map(|_| 0)
    }

    /// When idle: makes unflushed commits durable, and saves the allocator state if the last
    /// durable commit did not, so that a crash while idle needs no full repair. Returns whether
    /// it committed.
    pub fn settle(&self) -> Result<bool> {
        self.durable_commit(true)
    }

    /// An empty durable commit, if there is something to make durable (or, with
    /// `quick_repair`, an allocator state to save). Saving the allocator state costs about
    /// as much as the rest of the commit, so the group commit's flushes skip it.
    fn durable_commit(&self, quick_repair: bool) -> Result<bool> {
        // Cleared first: a commit that lands after this point sets it again for the next flush.
        let dirty = self.0.dirty.swap(false, Ordering::AcqRel);
        let state_saved = self.0.repairable.load(Ordering::Acquire);
        if !dirty && (state_saved || !quick_repair) {
            return Ok(false);
        }
        let flushed = self
            .begin(Durability::Immediate)
            .and_then(|(_writing, mut tx)| {
                tx.set_quick_repair(quick_repair);
                tx.commit().map_err(to_error)
            });
        match flushed {
            Ok(()) => self.0.repairable.store(quick_repair, Ordering::Release),
            Err(_) => self.0.dirty.store(true, Ordering::Release),
        }
        flushed.map(|()| true)
    }

    /// A snapshot of every tree as it is now: reads from it see no later write.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let tx = self.0.db.begin_read().map_err(to_error)?;
        let (open, ladder) = mpsc::channel();
        let db = Arc::downgrade(&self.0);
        std::thread::Builder::new()
            .name("snapshot-ladder".into())
            .spawn(move || hold_ladder(db, ladder))
            .map_err(Error::Io)?;
        Ok(Snapshot { tx, _ladder: open })
    }

    /// (bytes of keys and values, bytes of allocated pages) over every tree.
    pub fn stats(&self) -> Result<(u64, u64)> {
        let (_writing, tx) = self.begin(Durability::None)?;
        let stats = tx.stats().map_err(to_error)?;
        let _ = tx.abort();
        Ok((
            stats.stored_bytes(),
            stats.allocated_pages() * stats.page_size() as u64,
        ))
    }
}

/// Tree names are the store's own ASCII names.
fn tree_name(name: &[u8]) -> Result<String> {
    String::from_utf8(name.to_vec())
        .map_err(|_| Error::Unsupported("a tree name that is not UTF-8".into()))
}

mod compact;
mod snapshot;

pub(crate) use compact::create;
pub use compact::{compact, remove_compaction_leftover};
use snapshot::hold_ladder;
pub use snapshot::Snapshot;

/// One tree of a redb database.
#[derive(Clone)]
pub struct Tree {
    db: Db,
    name: Arc<str>,
}

impl Tree {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn name(&self) -> IVec {
        IVec::from(self.name.as_bytes())
    }

    /// This tree inside the write transaction `tx`.
    pub fn in_tx(&self, tx: &Rc<redb::WriteTransaction>) -> TxTree {
        TxTree {
            tx: tx.clone(),
            name: self.name.clone(),
        }
    }

    /// Reads the tree as the latest commit left it (a tree dropped meanwhile reads as empty).
    fn read<T>(&self, empty: T, f: impl FnOnce(&ReadTable) -> Result<T>) -> Result<T> {
        match self.db.0.reading(&self.name)? {
            Some(t) => f(&t),
            None => Ok(empty),
        }
    }

    /// Runs `f` on this tree in a write transaction of its own.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<T>,
    ) -> Result<T> {
        self.db.write(|tx| {
            let mut t = tx.open_table(table(&self.name)).map_err(to_error)?;
            f(&mut t)
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.read(None, |t| {
            Ok(t.get(key).map_err(to_error)?.map(|v| IVec::from(v.value())))
        })
    }

    pub fn insert(&self, key: &[u8], value: IVec) -> Result<Option<IVec>> {
        self.write(|t| {
            let old = t.insert(key, value.as_ref()).map_err(to_error)?;
            Ok(old.map(|v| IVec::from(v.value())))
        })
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.write(|t| {
            let old = t.remove(key).map_err(to_error)?;
            Ok(old.map(|v| IVec::from(v.value())))
        })
    }

    pub fn count(&self) -> Result<usize> {
        self.read(0, |t| Ok(t.len().map_err(to_error)? as usize))
    }

    pub fn clear(&self) -> Result<()> {
        self.write(|t| t.retain(|_, _| false).map_err(to_error))
    }

    pub fn apply_batch(&self, batch: &Batch) -> Result<()> {
        self.write(|t| {
            for (k, v) in batch.settled() {
                match v {
                    Some(v) => drop(t.insert(k.as_ref(), v.as_ref()).map_err(to_error)?),
                    None => drop(t.remove(k.as_ref()).map_err(to_error)?),
                }
            }
            Ok(())
        })
    }

    /// The entries between `lo` and `hi`, read from one snapshot.
    pub fn range(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Iter {
        // redb panics on a range whose start lies after its end; such a range is empty.
        let empty = match (lo, hi) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
            _ => false,
        };
        if empty {
            return Iter::new(Ok(None));
        }
        Iter::new(self.read(None, |t| {
            t.range_owned((lo, hi)).map(Some).map_err(to_error)
        }))
    }
}

/// Runs `f` as one write transaction. Writers take turns, so nothing conflicts; `f` runs once.
pub fn transaction<A, E>(
    db: &Db,
    f: impl Fn(&Rc<redb::WriteTransaction>) -> ConflictableTransactionResult<A, E>,
) -> TransactionResult<A, E> {
    let (_writing, tx) = db
        .begin(Durability::None)
        .map_err(TransactionError::Storage)?;
    let tx = Rc::new(tx);
    let result = f(&tx);
    let Ok(tx) = Rc::try_unwrap(tx) else {
        return Err(TransactionError::Storage(Error::ReportableBug(
            "a transaction's tree outlived the transaction".into(),
        )));
    };
    match result {
        Ok(a) => {
            db.commit(tx).map_err(TransactionError::Storage)?;
            Ok(a)
        }
        Err(e) => {
            let _ = tx.abort();
            Err(match e {
                ConflictableTransactionError::Abort(e) => TransactionError::Abort(e),
                ConflictableTransactionError::Storage(e) => TransactionError::Storage(e),
                // Only another engine's reads report conflicts.
                ConflictableTransactionError::Conflict => TransactionError::Storage(
                    Error::ReportableBug("a conflict in a redb transaction".into()),
                ),
            })
        }
    }
}

/// A tree inside a write transaction: reads see the transaction's own writes.
#[derive(Clone)]
pub struct TxTree {
    tx: Rc<redb::WriteTransaction>,
    name: Arc<str>,
}

impl TxTree {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>) -> Result<T>,
    ) -> UnabortableTransactionResult<T> {
        let mut t = self
            .tx
            .open_table(table(&self.name))
            .map_err(|e| UnabortableTransactionError::Storage(to_error(e)))?;
        f(&mut t).map_err(UnabortableTransactionError::Storage)
    }

    pub fn get(&self, key: &[u8]) -> UnabortableTransactionResult<Option<IVec>> {
        self.with(|t| Ok(t.get(key).map_err(to_error)?.map(|v| IVec::from(v.value()))))
    }

    /// Sets (Some) or removes (None) `key`; returns the value it had.
    pub fn insert(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> UnabortableTransactionResult<Option<IVec>> {
        self.with(|t| {
            let old = match value {
                Some(v) => t.insert(key, v),
                None => t.remove(key),
            };
            Ok(old.map_err(to_error)?.map(|v| IVec::from(v.value())))
        })
    }
}

type Range = redb::OwnedRange<&'static [u8], &'static [u8]>;

/// Entries of a tree in key order, from one snapshot (either end first).
pub struct Iter {
    range: Option<Range>,
    error: Option<Error>,
}

impl Iter {
    fn new(range: Result<Option<Range>>) -> Iter {
        match range {
            Ok(range) => Iter { range, error: None },
            Err(e) => Iter {
                range: None,
                error: Some(e),
            },
        }
    }

    fn step(
        &mut self,
        next: impl FnOnce(&mut Range) -> Option<redb::Result<EntryGuards>>,
    ) -> Option<Result<(IVec, IVec)>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let entry = next(self.range.as_mut()?)?;
        Some(match entry {
            Ok((k, v)) => Ok((IVec::from(k.value()), IVec::from(v.value()))),
            Err(e) => {
                self.range = None;
                Err(to_error(e))
            }
        })
    }
}

type EntryGuards = (
    redb::OwnedAccessGuard<&'static [u8]>,
    redb::OwnedAccessGuard<&'static [u8]>,
);

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(|r| r.next())
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(|r| r.next_back())
    }
}
