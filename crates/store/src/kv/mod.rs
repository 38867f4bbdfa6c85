//! The ordered key-value engine under the store: redb, embedded (the default for a new data
//! dir), sled (embedded, in data dirs made before redb), or PostgreSQL (`--database-url`). One
//! set of types (trees of byte keys in order, serializable transactions over several trees,
//! atomic batches), so every store module is written once and runs on any. The layer speaks its
//! own vocabulary (`types`): each engine's module is the only place that names its types, and
//! its open, compaction, snapshot (`Dump`) and bulk copy live there.

pub mod pg;
pub mod redb;
pub mod sled;
mod types;

use std::ops::{Bound, RangeBounds};
use std::path::Path;

pub use types::{
    is_disk_full, CompareAndSwapError, ConflictableTransactionError, ConflictableTransactionResult,
    Error, IVec, Result, TransactionError, TransactionResult, UnabortableTransactionError,
    UnabortableTransactionResult,
};

/// The embedded engines a data dir can be made with. A data dir keeps the one it was made with:
/// sled's is the directory `db`, redb's the file `store.redb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Redb,
    Sled,
}

impl Engine {
    /// The engine of the data dir `dir`: the one its database was made with, or `new` for a dir
    /// with none yet.
    pub fn of(dir: &Path, new: Engine) -> Engine {
        // A sled compaction cut short between its renames leaves only its complete copy.
        if dir.join(sled::DIR).is_dir() || dir.join(sled::COMPACTING).is_dir() {
            Engine::Sled
        } else if dir.join(redb::FILE).is_file() {
            Engine::Redb
        } else {
            new
        }
    }

    /// Opens the database of the data dir `dir` (whose lock the caller holds) on the engine it
    /// was made with (`new` for a new one); returns it and its path. Another process holding it
    /// is an I/O error of kind `WouldBlock`.
    pub fn open(dir: &Path, cache_bytes: u64, new: Engine) -> Result<(Db, std::path::PathBuf)> {
        Ok(match Engine::of(dir, new) {
            Engine::Sled => (Db::Sled(sled::open(dir, cache_bytes)?), dir.join(sled::DIR)),
            Engine::Redb => {
                let path = dir.join(redb::FILE);
                redb::remove_compaction_leftover(&path)?;
                (Db::Redb(redb::Db::open(&path, cache_bytes)?), path)
            }
        })
    }

    /// Rewrites the stopped database of the data dir `dir` into a new one holding only its live
    /// records (see each engine's `compact`); returns its size before and after.
    pub fn compact(dir: &Path, cache_bytes: u64) -> Result<(u64, u64)> {
        match Engine::of(dir, Engine::Sled) {
            Engine::Redb => redb::compact(&dir.join(redb::FILE), cache_bytes),
            Engine::Sled => sled::compact(dir, cache_bytes),
        }
    }

    /// Makes the next start of the stopped data dir `dir` fast (sled replays its log unless
    /// its recovery snapshot is up to date; redb's open reads two pages at any size).
    pub fn checkpoint(dir: &Path, cache_bytes: u64) -> Result<()> {
        match Engine::of(dir, Engine::Redb) {
            Engine::Sled => sled::checkpoint(dir, cache_bytes),
            Engine::Redb => Ok(()),
        }
    }

    /// A new, empty database at `path` for a restore to fill (always redb).
    pub fn create_file(path: &Path, cache_bytes: u64) -> Result<Db> {
        redb::Db::open(path, cache_bytes).map(Db::Redb)
    }
}

/// True if the data dir `dir` holds a database of either embedded engine.
pub fn has_database(dir: &Path) -> bool {
    dir.join(sled::DIR).is_dir() || dir.join(redb::FILE).is_file()
}

/// A database: a set of named trees.
#[derive(Clone)]
pub enum Db {
    Sled(sled::Db),
    Pg(pg::Db),
    Redb(redb::Db),
}

/// One named tree: keys in byte order.
#[derive(Clone)]
pub enum Tree {
    Sled(sled::Tree),
    Pg(pg::Tree),
    Redb(redb::Tree),
}

/// A tree inside a transaction: reads see the transaction's own writes, which all land at once
/// when the closure returns Ok.
#[derive(Clone)]
pub enum TransactionalTree {
    Sled(sled::TxTree),
    Pg(pg::TxTree),
    Redb(redb::TxTree),
}

/// Writes applied to one tree atomically; the last write to a key wins.
#[derive(Clone, Default, Debug)]
pub struct Batch {
    pub(crate) ops: Vec<(IVec, Option<IVec>)>,
}

impl Batch {
    pub fn insert<K: Into<IVec>, V: Into<IVec>>(&mut self, key: K, value: V) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove<K: Into<IVec>>(&mut self, key: K) {
        self.ops.push((key.into(), None));
    }

    /// The batch's final write per key, in key order.
    pub(crate) fn settled(&self) -> std::collections::BTreeMap<IVec, Option<IVec>> {
        self.ops.iter().cloned().collect()
    }
}

impl Db {
    pub fn open_tree<N: AsRef<[u8]>>(&self, name: N) -> Result<Tree> {
        match self {
            Db::Sled(db) => db.open_tree(name.as_ref()).map(Tree::Sled),
            Db::Pg(db) => db.open_tree(name.as_ref()).map(Tree::Pg),
            Db::Redb(db) => db.open_tree(name.as_ref()).map(Tree::Redb),
        }
    }

    pub fn drop_tree<N: AsRef<[u8]>>(&self, name: N) -> Result<bool> {
        match self {
            Db::Sled(db) => db.drop_tree(name.as_ref()),
            Db::Pg(db) => db.drop_tree(name.as_ref()),
            Db::Redb(db) => db.drop_tree(name.as_ref()),
        }
    }

    pub fn tree_names(&self) -> Vec<IVec> {
        match self {
            Db::Sled(db) => db.tree_names(),
            Db::Pg(db) => db.tree_names().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot list the database's trees");
                Vec::new()
            }),
            Db::Redb(db) => db.tree_names().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot list the database's trees");
                Vec::new()
            }),
        }
    }

    /// Makes every write so far durable (PostgreSQL's are when they commit).
    pub fn flush(&self) -> Result<usize> {
        match self {
            Db::Sled(db) => db.flush(),
            Db::Pg(_) => Ok(0),
            Db::Redb(db) => db.flush(),
        }
    }

    /// When idle: makes unflushed writes durable, if there are any (only redb needs asking:
    /// sled flushes by itself every half second, PostgreSQL at every commit).
    pub fn settle(&self) -> Result<()> {
        match self {
            Db::Redb(db) => db.settle().map(drop),
            Db::Sled(_) | Db::Pg(_) => Ok(()),
        }
    }

    /// True if the database existed before this open.
    pub fn was_recovered(&self) -> bool {
        match self {
            Db::Sled(db) => db.was_recovered(),
            Db::Pg(db) => db.existed(),
            Db::Redb(db) => db.existed(),
        }
    }

    /// The default tree's value under `key` (a health check reads it).
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        match self {
            Db::Sled(db) => db.default_tree().get(key.as_ref()),
            Db::Pg(db) => db.default_tree()?.get(key.as_ref()),
            Db::Redb(db) => db.default_tree().get(key.as_ref()),
        }
    }

    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> Result<Option<IVec>> {
        match self {
            Db::Sled(db) => db.default_tree().insert(key.as_ref(), value.into()),
            Db::Pg(db) => db.default_tree()?.insert(key.as_ref(), value.into()),
            Db::Redb(db) => db.default_tree().insert(key.as_ref(), value.into()),
        }
    }

    /// True if this process runs the background work: always on sled (one process per data
    /// dir); on PostgreSQL, while it holds the cluster's leader lock.
    pub fn is_leader(&self) -> bool {
        match self {
            Db::Sled(_) | Db::Redb(_) => true,
            Db::Pg(db) => db.is_leader(),
        }
    }

    /// True if no other process's change can be missed: always on sled; on PostgreSQL, while
    /// this node hears the other nodes' announcements.
    pub fn in_sync(&self) -> bool {
        match self {
            Db::Sled(_) | Db::Redb(_) => true,
            Db::Pg(db) => db.in_sync(),
        }
    }

    /// Calls `f` with the topics other processes announced (`None`: announcements may have
    /// been missed); `f` says whether it caught up. Never called on sled, where no other
    /// process writes.
    pub fn listen(&self, f: impl Fn(Option<&[&str]>) -> bool + Send + 'static) {
        if let Db::Pg(db) = self {
            db.listen(f);
        }
    }

    /// Tells the other processes on this database that `topics` changed (nothing on sled).
    pub fn announce(&self, topics: &[&str]) {
        if let Db::Pg(db) = self {
            db.announce(topics);
        }
    }

    /// Locks every process on this database respects (`None` on sled, where the process's
    /// own locks are enough), taken in order: (key, shared) each.
    pub fn cluster_lock(&self, keys: &[(i64, bool)]) -> Result<Option<pg::AdvisoryLock>> {
        match self {
            Db::Sled(_) | Db::Redb(_) => Ok(None),
            Db::Pg(db) => db.lock(keys).map(Some),
        }
    }

    /// Which engine holds the data, for logs and `doctor`.
    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sled(_) => "sled",
            Db::Pg(_) => "postgresql",
            Db::Redb(_) => "redb",
        }
    }

    /// Every tree as it is at one moment, read while writes go on: a backup's copy. `hold`
    /// returns a guard under which no write is half done (the store's write gate); it is held
    /// for milliseconds. `scratch` is a directory for what an engine must spill (sled has no
    /// snapshots). PostgreSQL answers `Unsupported`: its own tools back it up.
    pub fn dump<G>(&self, scratch: &Path, hold: impl Fn() -> G) -> Result<Dump> {
        match self {
            Db::Redb(db) => {
                let began = std::time::Instant::now();
                let snapshot = {
                    let _held = hold();
                    db.snapshot()?
                };
                Ok(Dump::Redb(snapshot, began.elapsed()))
            }
            Db::Sled(db) => db.dump(scratch, hold).map(Dump::Sled),
            Db::Pg(_) => Err(Error::Unsupported(pg::NO_DUMP.into())),
        }
    }

    /// True if other processes write this database too (PostgreSQL): caches must hear their
    /// changes, and secrets every node shares are kept in it.
    pub fn is_shared(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

/// Every tree of a database at one moment (see `Db::dump`).
pub enum Dump {
    Redb(redb::Snapshot, std::time::Duration),
    Sled(sled::Dump),
}

impl Dump {
    /// The trees there were at that moment.
    pub fn names(&self) -> Result<Vec<String>> {
        match self {
            Dump::Redb(s, _) => s.names(),
            Dump::Sled(d) => Ok(d.names()),
        }
    }

    /// The entries of the tree `name` at that moment, in key order; each call reads them again.
    pub fn iter(&self, name: &str) -> Box<dyn Iterator<Item = Result<(IVec, IVec)>> + '_> {
        match self {
            Dump::Redb(s, _) => Box::new(s.iter(name.as_bytes())),
            Dump::Sled(d) => d.iter(name),
        }
    }

    /// How long writers were held (at the start and at the cut), and how many changes made
    /// meanwhile were laid over the copy: for the log.
    pub fn held(&self) -> ([std::time::Duration; 2], usize) {
        match self {
            Dump::Redb(_, held) => ([*held, std::time::Duration::ZERO], 0),
            Dump::Sled(d) => (d.held, d.changes),
        }
    }
}

impl Tree {
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.get(key.as_ref()),
            Tree::Pg(t) => t.get(key.as_ref()),
            Tree::Redb(t) => t.get(key.as_ref()),
        }
    }

    pub fn insert<K: AsRef<[u8]>, V: Into<IVec>>(&self, key: K, value: V) -> Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.insert(key.as_ref(), value.into()),
            Tree::Pg(t) => t.insert(key.as_ref(), value.into()),
            Tree::Redb(t) => t.insert(key.as_ref(), value.into()),
        }
    }

    pub fn remove<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<IVec>> {
        match self {
            Tree::Sled(t) => t.remove(key.as_ref()),
            Tree::Pg(t) => t.remove(key.as_ref()),
            Tree::Redb(t) => t.remove(key.as_ref()),
        }
    }

    pub fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> Result<bool> {
        match self {
            Tree::Sled(t) => t.contains_key(key.as_ref()),
            Tree::Pg(t) => t.get(key.as_ref()).map(|v| v.is_some()),
            Tree::Redb(t) => t.get(key.as_ref()).map(|v| v.is_some()),
        }
    }

    pub fn iter(&self) -> Iter {
        match self {
            Tree::Sled(t) => Iter::Sled(t.range(Bound::Unbounded, Bound::Unbounded)),
            Tree::Pg(t) => {
                Iter::Pg(t.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded))
            }
            Tree::Redb(t) => {
                Iter::Redb(t.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded))
            }
        }
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        match self {
            Tree::Sled(t) => {
                let (lo, hi) = (range.start_bound(), range.end_bound());
                Iter::Sled(t.range(lo.map(AsRef::as_ref), hi.map(AsRef::as_ref)))
            }
            Tree::Pg(t) => {
                let own = |b: std::ops::Bound<&K>| b.map(|k| k.as_ref().to_vec());
                Iter::Pg(t.range(own(range.start_bound()), own(range.end_bound())))
            }
            Tree::Redb(t) => {
                let (lo, hi) = (range.start_bound(), range.end_bound());
                Iter::Redb(t.range(lo.map(AsRef::as_ref), hi.map(AsRef::as_ref)))
            }
        }
    }

    pub fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> Iter {
        match self {
            Tree::Sled(t) => Iter::Sled(t.scan_prefix(prefix.as_ref())),
            Tree::Pg(t) => {
                use std::ops::Bound::{Excluded, Included, Unbounded};
                let prefix = prefix.as_ref().to_vec();
                let end = prefix_end(&prefix).map_or(Unbounded, Excluded);
                Iter::Pg(t.range(Included(prefix), end))
            }
            Tree::Redb(t) => {
                use std::ops::Bound::{Excluded, Included, Unbounded};
                let prefix = prefix.as_ref();
                let end = prefix_end(prefix);
                let end = end.as_deref().map_or(Unbounded, Excluded);
                Iter::Redb(t.range(Included(prefix), end))
            }
        }
    }

    pub fn first(&self) -> Result<Option<(IVec, IVec)>> {
        self.iter().next().transpose()
    }

    pub fn last(&self) -> Result<Option<(IVec, IVec)>> {
        self.iter().next_back().transpose()
    }

    /// How many entries (a scan on either engine).
    pub fn len(&self) -> usize {
        match self {
            Tree::Sled(t) => t.len(),
            Tree::Pg(t) => t.count().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot count a tree");
                0
            }),
            Tree::Redb(t) => t.count().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot count a tree");
                0
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Tree::Sled(t) => t.is_empty(),
            Tree::Pg(_) | Tree::Redb(_) => self.first().map_or_else(
                |e| {
                    tracing::warn!(error = %e, "cannot read a tree");
                    true
                },
                |f| f.is_none(),
            ),
        }
    }

    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        match self {
            Tree::Sled(t) => t.apply_batch(&batch),
            Tree::Pg(t) => t.apply_batch(&batch),
            Tree::Redb(t) => t.apply_batch(&batch),
        }
    }

    /// Makes this tree's writes durable (see `Db::flush`).
    pub fn flush(&self) -> Result<usize> {
        match self {
            Tree::Sled(t) => t.flush(),
            Tree::Pg(_) => Ok(0),
            Tree::Redb(t) => t.db().flush(),
        }
    }

    pub fn clear(&self) -> Result<()> {
        match self {
            Tree::Sled(t) => t.clear(),
            Tree::Pg(t) => t.clear(),
            Tree::Redb(t) => t.clear(),
        }
    }

    /// Sets `key` to `new` if it holds `old` (None: absent / remove), atomically.
    pub fn compare_and_swap<K, OV, NV>(
        &self,
        key: K,
        old: Option<OV>,
        new: Option<NV>,
    ) -> Result<std::result::Result<(), CompareAndSwapError>>
    where
        K: AsRef<[u8]>,
        OV: AsRef<[u8]>,
        NV: Into<IVec>,
    {
        match self {
            Tree::Sled(t) => t.compare_and_swap(
                key.as_ref(),
                old.as_ref().map(AsRef::as_ref),
                new.map(Into::into),
            ),
            Tree::Pg(_) | Tree::Redb(_) => {
                let old = old.map(|o| o.as_ref().to_vec());
                let new: Option<IVec> = new.map(Into::into);
                let key = key.as_ref();
                self.transaction::<_, _, std::convert::Infallible>(|tx| {
                    let current = tx.get(key)?;
                    if current.as_deref() != old.as_deref() {
                        return Ok(Err(CompareAndSwapError {
                            current,
                            proposed: new.clone(),
                        }));
                    }
                    match &new {
                        Some(v) => tx.insert(key, v.clone())?,
                        None => drop(tx.remove(key)?),
                    };
                    Ok(Ok(()))
                })
                .map_err(storage_error)
            }
        }
    }

    /// Replaces the value under `key` with what `f` makes of it (None removes), atomically;
    /// returns the new value.
    pub fn update_and_fetch<K, V, F>(&self, key: K, mut f: F) -> Result<Option<IVec>>
    where
        K: AsRef<[u8]>,
        F: FnMut(Option<&[u8]>) -> Option<V>,
        IVec: From<V>,
    {
        match self {
            Tree::Sled(t) => t.update_and_fetch(key.as_ref(), |old| f(old).map(IVec::from)),
            Tree::Pg(_) | Tree::Redb(_) => {
                let key = key.as_ref();
                let f = std::cell::RefCell::new(&mut f);
                self.transaction::<_, _, std::convert::Infallible>(|tx| {
                    let current = tx.get(key)?;
                    let new = (f.borrow_mut())(current.as_deref()).map(IVec::from);
                    match &new {
                        Some(v) => tx.insert(key, v.clone())?,
                        None => drop(tx.remove(key)?),
                    };
                    Ok(new)
                })
                .map_err(storage_error)
            }
        }
    }

    /// Tells the other processes that `topics` changed (see `Db::announce`).
    pub fn announce(&self, topics: &[&str]) {
        if let Tree::Pg(t) = self {
            t.db().announce(topics);
        }
    }

    pub fn name(&self) -> IVec {
        match self {
            Tree::Sled(t) => t.name(),
            Tree::Pg(t) => t.name(),
            Tree::Redb(t) => t.name(),
        }
    }

    /// Runs `f` as one transaction over this tree.
    pub fn transaction<F, A, E>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&TransactionalTree) -> ConflictableTransactionResult<A, E>,
    {
        match self {
            Tree::Sled(t) => {
                sled::transaction(&[t], |txs| f(&TransactionalTree::Sled(txs[0].clone())))
            }
            Tree::Pg(t) => {
                pg::transaction(t.db(), |state| f(&TransactionalTree::Pg(t.in_tx(state))))
            }
            Tree::Redb(t) => {
                redb::transaction(t.db(), |tx| f(&TransactionalTree::Redb(t.in_tx(tx))))
            }
        }
    }
}

impl TransactionalTree {
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> UnabortableTransactionResult<Option<IVec>> {
        match self {
            TransactionalTree::Sled(t) => t.get(key.as_ref()),
            TransactionalTree::Pg(t) => t.get(key.as_ref()),
            TransactionalTree::Redb(t) => t.get(key.as_ref()),
        }
    }

    /// Sets `key` (a blind write: read it first if the old value matters; on PostgreSQL the
    /// write costs no round trip until the commit).
    pub fn insert<K, V>(&self, key: K, value: V) -> UnabortableTransactionResult<()>
    where
        K: AsRef<[u8]> + Into<IVec>,
        V: Into<IVec>,
    {
        match self {
            TransactionalTree::Sled(t) => t.insert(key.as_ref(), &value.into()),
            TransactionalTree::Pg(t) => {
                t.write(key.into(), Some(value.into()));
                Ok(())
            }
            TransactionalTree::Redb(t) => t.insert(key.as_ref(), Some(&value.into())).map(drop),
        }
    }

    pub fn remove<K>(&self, key: K) -> UnabortableTransactionResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
    {
        match self {
            TransactionalTree::Sled(t) => t.remove(key.as_ref()),
            TransactionalTree::Pg(t) => t.insert(key.into(), None),
            TransactionalTree::Redb(t) => t.insert(key.as_ref(), None),
        }
    }

    pub fn apply_batch(&self, batch: &Batch) -> UnabortableTransactionResult<()> {
        match self {
            TransactionalTree::Sled(t) => t.apply_batch(batch),
            TransactionalTree::Pg(t) => {
                for (k, v) in batch.settled() {
                    t.write(k, v);
                }
                Ok(())
            }
            TransactionalTree::Redb(t) => {
                for (k, v) in batch.settled() {
                    t.insert(&k, v.as_deref())?;
                }
                Ok(())
            }
        }
    }
}

/// Entries of a tree in key order (either end first).
pub enum Iter {
    Sled(sled::Iter),
    Pg(pg::Iter),
    Redb(redb::Iter),
}

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next(),
            Iter::Pg(i) => i.next(),
            Iter::Redb(i) => i.next(),
        }
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Sled(i) => i.next_back(),
            Iter::Pg(i) => i.next_back(),
            Iter::Redb(i) => i.next_back(),
        }
    }
}

impl Iter {
    pub fn keys(self) -> impl DoubleEndedIterator<Item = Result<IVec>> {
        self.map(|r| r.map(|(k, _)| k))
    }

    pub fn values(self) -> impl DoubleEndedIterator<Item = Result<IVec>> {
        self.map(|r| r.map(|(_, v)| v))
    }
}

/// Several trees in one transaction: `(&a, &b).transaction(|(a, b)| ...)`, as with sled.
pub trait Transactional<E> {
    type View;

    fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>;
}

/// The error of a transaction over trees of two engines (a bug: a store opens one database).
fn mixed<A, E>() -> TransactionResult<A, E> {
    Err(TransactionError::Storage(Error::Unsupported(
        "a transaction over trees of two databases".into(),
    )))
}

macro_rules! transactional_tuple {
    ($($t:ident),+) => {
        impl<'a, E> Transactional<E> for ($(transactional_tuple!(@tree 'a $t),)+) {
            type View = ($(transactional_tuple!(@view $t),)+);

            fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
            where
                F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
            {
                let ($($t,)+) = *self;
                if let ($(Tree::Sled($t),)+) = ($($t,)+) {
                    return sled::transaction(&[$($t),+], |txs| {
                        let mut txs = txs.iter().cloned().map(TransactionalTree::Sled);
                        f(&($(transactional_tuple!(@next txs $t),)+))
                    });
                }
                if let ($(Tree::Pg($t),)+) = ($($t,)+) {
                    let db = transactional_tuple!(@first $($t),+).db();
                    return pg::transaction(db, |state| {
                        f(&($(TransactionalTree::Pg($t.in_tx(state)),)+))
                    });
                }
                if let ($(Tree::Redb($t),)+) = ($($t,)+) {
                    let db = transactional_tuple!(@first $($t),+).db();
                    return redb::transaction(db, |tx| {
                        f(&($(TransactionalTree::Redb($t.in_tx(tx)),)+))
                    });
                }
                mixed()
            }
        }
    };
    (@view $t:ident) => { TransactionalTree };
    (@next $txs:ident $t:ident) => {
        $txs.next().expect("one transactional tree per tree")
    };
    (@tree $l:lifetime $t:ident) => { &$l Tree };
    (@first $first:ident $(, $rest:ident)*) => { $first };
}

transactional_tuple!(a, b);
transactional_tuple!(a, b, c);
transactional_tuple!(a, b, c, d);
transactional_tuple!(a, b, c, d, e);
transactional_tuple!(a, b, c, d, e, g);
transactional_tuple!(a, b, c, d, e, g, h);
transactional_tuple!(a, b, c, d, e, g, h, i);

impl<E> Transactional<E> for [&Tree] {
    type View = Vec<TransactionalTree>;

    fn transaction<F, A>(&self, f: F) -> TransactionResult<A, E>
    where
        F: Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
    {
        let sled = all(self, |t| match t {
            Tree::Sled(t) => Some(t),
            _ => None,
        });
        if let Some(trees) = sled {
            return sled::transaction(&trees, |v| {
                f(&v.iter().cloned().map(TransactionalTree::Sled).collect())
            });
        }
        let pg = all(self, |t| match t {
            Tree::Pg(t) => Some(t),
            _ => None,
        });
        if let Some(trees) = pg {
            return pg::transaction(trees[0].db(), |state| {
                f(&trees
                    .iter()
                    .map(|t| TransactionalTree::Pg(t.in_tx(state)))
                    .collect())
            });
        }
        let redb = all(self, |t| match t {
            Tree::Redb(t) => Some(t),
            _ => None,
        });
        match redb {
            Some(trees) => redb::transaction(trees[0].db(), |tx| {
                f(&trees
                    .iter()
                    .map(|t| TransactionalTree::Redb(t.in_tx(tx)))
                    .collect())
            }),
            None => mixed(),
        }
    }
}

/// Every tree's engine-specific tree, if there are some and all are of the engine `pick` takes.
fn all<'a, T>(trees: &[&'a Tree], pick: impl Fn(&'a Tree) -> Option<&'a T>) -> Option<Vec<&'a T>> {
    let picked: Option<Vec<&T>> = trees.iter().map(|t| pick(t)).collect();
    picked.filter(|p| !p.is_empty())
}

/// A failed one-tree transaction (which never aborts) as a store error.
fn storage_error<E>(e: TransactionError<E>) -> Error {
    match e {
        TransactionError::Storage(e) => e,
        TransactionError::Abort(_) => Error::ReportableBug("an unabortable change aborted".into()),
    }
}

/// The first key after every key starting with `prefix` (None: no such key).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod power_loss;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A fresh PostgreSQL database for one test, when the suite runs with one
    /// (`RESELLERD_TEST_DATABASE_URL`, set by `scripts/test` for its PostgreSQL pass).
    pub(crate) fn postgres(name: &str) -> Option<Db> {
        let admin = std::env::var("RESELLERD_TEST_DATABASE_URL").ok()?;
        let db = format!("kv_{name}_{}", std::process::id());
        let sql = |q: &str| {
            let out = std::process::Command::new("psql")
                .arg(&admin)
                .args(["-qc", q])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sql(&format!("DROP DATABASE IF EXISTS {db}"));
        sql(&format!("CREATE DATABASE {db}"));
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(Db::Pg(pg::Db::open(&format!("{base}/{db}"), 4).unwrap()))
    }

    fn entries(i: impl Iterator<Item = Result<(IVec, IVec)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
        i.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    }

    /// The same random writes, transactions and reads on sled and on PostgreSQL give the same
    /// answers: order, ranges from either end, prefixes, batches, compare-and-swap.
    #[test]
    fn postgresql_answers_as_sled_does() {
        let Some(pg) = postgres("same") else {
            return; // no PostgreSQL in this run
        };
        answers_as_sled_does(pg);
    }

    #[test]
    fn redb_answers_as_sled_does() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap();
        answers_as_sled_does(Db::Redb(db));
    }

    /// redb: what was flushed is there after a reopen; a write from inside a transaction's
    /// closure to a tree outside it fails instead of waiting forever; a failed closure leaves
    /// nothing behind.
    #[test]
    fn redb_flushes_and_refuses_a_nested_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(redb::FILE);
        {
            let db = Db::Redb(redb::Db::open(&path, 8 << 20).unwrap());
            assert!(!db.was_recovered());
            let t = db.open_tree("t").unwrap();
            t.insert(b"a", &b"1"[..]).unwrap();
            let nested: TransactionResult<(), ()> = t.transaction(|tx| {
                tx.insert(&b"b"[..], &b"2"[..])?;
                assert!(t.insert(b"c", &b"3"[..]).is_err());
                Err(ConflictableTransactionError::Abort(()))
            });
            assert!(matches!(nested, Err(TransactionError::Abort(()))));
            assert_eq!(t.get(b"b").unwrap(), None);
            db.flush().unwrap();
        }
        let db = Db::Redb(redb::Db::open(&path, 8 << 20).unwrap());
        assert!(db.was_recovered());
        let t = db.open_tree("t").unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(t.len(), 1);
        let names = db.tree_names();
        assert!(names.iter().any(|n| n.as_ref() == b"t"), "{names:?}");
    }

    /// A redb snapshot reads one moment while commits go on; its ladder of newer read
    /// transactions is let go of once it is gone, so the file can be opened again afterwards
    /// (no read transaction is left behind holding it).
    #[test]
    fn redb_snapshots_read_one_moment_and_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(redb::FILE);
        let db = redb::Db::open(&path, 8 << 20).unwrap();
        let t = Db::Redb(db.clone()).open_tree("t").unwrap();
        t.insert(b"a", &b"0"[..]).unwrap();
        db.flush().unwrap();
        let snapshot = db.snapshot().unwrap();
        // Long enough for the ladder to take rungs.
        for round in 1..=40u8 {
            t.insert(b"a", &[round][..]).unwrap();
            t.insert([round], &b"x"[..]).unwrap();
            db.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let seen: Vec<_> = snapshot.iter(b"t").map(|kv| kv.unwrap()).collect();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1.as_ref(), b"0");
        drop(snapshot);
        drop(t);
        drop(db);
        let mut reopened = None;
        for _ in 0..500 {
            match redb::Db::open(&path, 8 << 20) {
                Ok(db) => {
                    reopened = Some(db);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        let db = Db::Redb(reopened.expect("the ladder let go of the file"));
        let t = db.open_tree("t").unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&[40u8][..]));
        assert_eq!(t.len(), 41);
    }

    /// Readers share the trees they opened until the next commit (`redb::Inner::reading`): a
    /// read after a write sees it, a dropped tree reads as empty, and a shared snapshot keeps no
    /// pages that later commits freed (rewrites after one read reuse their pages).
    #[test]
    fn redb_readers_share_trees_until_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap();
        let kv = Db::Redb(db.clone());
        let t = kv.open_tree("t").unwrap();
        t.insert(b"a", &b"1"[..]).unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        t.insert(b"a", &b"2"[..]).unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        t.insert(b"b", &b"3"[..]).unwrap();
        assert_eq!(t.iter().count(), 2);
        let other = kv.open_tree("other").unwrap();
        other.insert(b"x", &b"y"[..]).unwrap();
        assert_eq!(other.len(), 1);
        kv.drop_tree("other").unwrap();
        assert_eq!(other.get(b"x").unwrap(), None);
        assert_eq!(t.len(), 2);

        // One read, then rewrites with no read between them: each durable commit may reuse
        // the pages the one before freed, unless a reader's snapshot still holds them.
        let big = vec![7u8; 3000];
        t.insert(b"a", big.clone()).unwrap();
        db.flush().unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&big[..]));
        for round in 0..1000u32 {
            let mut v = big.clone();
            v[..4].copy_from_slice(&round.to_be_bytes());
            t.insert(b"a", v).unwrap();
            db.flush().unwrap();
        }
        let (_, allocated) = db.stats().unwrap();
        assert!(
            allocated < 1 << 20,
            "{allocated} bytes of pages after rewriting one record"
        );
    }

    /// A read that starts after a write returned sees it, while other readers open and share
    /// trees around the commits (a tree opened before a commit must not be shared after it).
    /// Without the count of commits that `redb::Inner::reading` checks before it keeps a tree,
    /// this fails within a hundred writes.
    #[test]
    fn redb_a_read_after_a_write_sees_it_while_others_read() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let db = Db::Redb(redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap());
        let t = db.open_tree("t").unwrap();
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let read = |t: &Tree| {
            t.get(b"n")
                .unwrap()
                .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
        };
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (t, written, stop) = (t.clone(), written.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        let before = written.load(Ordering::Acquire);
                        let seen = read(&t);
                        assert!(seen >= before, "read {seen} after {before} was written");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for n in 1..=3_000u64 {
            t.insert(b"n", &n.to_be_bytes()[..]).unwrap();
            written.store(n, Ordering::Release);
            assert_eq!(read(&t), n);
        }
        stop.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    }

    /// Keys written in order (time-ordered ids, sequence numbers: most of the store's keys)
    /// fill redb's leaves (upstream redb optimises inserts past a table's last key since 4.2;
    /// with a split in the middle they stayed half full).
    #[test]
    fn redb_fills_its_pages_when_keys_come_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Db::open(&dir.path().join(redb::FILE), 8 << 20).unwrap();
        let t = Db::Redb(db.clone()).open_tree("t").unwrap();
        for i in 0..6_000u64 {
            let key = [b"u".as_slice(), &i.to_be_bytes()].concat();
            t.insert(key, vec![7u8; 150]).unwrap();
            if i % 100 == 0 {
                db.flush().unwrap();
            }
        }
        // Two durable commits: the pages the last commits freed are free after them.
        db.flush().unwrap();
        t.insert(b"v", &b""[..]).unwrap();
        db.flush().unwrap();
        let (stored, allocated) = db.stats().unwrap();
        let fill = stored as f64 / allocated as f64;
        assert!(
            fill > 0.8,
            "pages {fill:.2} full ({stored} of {allocated} bytes)"
        );
    }

    fn answers_as_sled_does(other: Db) {
        let pg = other;
        let sled = Db::Sled(sled::temporary().unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let key = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
            let len = rng.gen_range(0..4);
            (0..len).map(|_| rng.gen_range(0..4u8) * 85).collect()
        };
        let (a, b) = (
            (sled.open_tree("a").unwrap(), sled.open_tree("b").unwrap()),
            (pg.open_tree("a").unwrap(), pg.open_tree("b").unwrap()),
        );
        for round in 0..300 {
            let (k, v) = (key(&mut rng), vec![round as u8]);
            let op = rng.gen_range(0..8);
            let mut answers = Vec::new();
            for (t, u) in [&a, &b] {
                let answer = match op {
                    0 | 1 => format!("{:?}", t.insert(&k, v.clone()).unwrap()),
                    2 => format!("{:?}", t.remove(&k).unwrap()),
                    3 => {
                        let mut batch = Batch::default();
                        batch.insert(k.clone(), v.clone());
                        batch.remove(key(&mut rand::rngs::StdRng::seed_from_u64(round)));
                        t.apply_batch(batch).unwrap();
                        String::new()
                    }
                    4 => {
                        let moved: TransactionResult<Option<IVec>, ()> =
                            (t, u).transaction(|(t, u)| {
                                let old = t.remove(k.clone())?;
                                if let Some(old) = &old {
                                    u.insert(k.clone(), old.clone())?;
                                }
                                Ok(old)
                            });
                        format!("{:?}", moved.unwrap())
                    }
                    5 => format!(
                        "{:?}",
                        t.compare_and_swap(&k, Some(&[0u8][..]), Some(v.clone()))
                            .unwrap()
                            .is_ok()
                    ),
                    6 => {
                        let end = key(&mut rand::rngs::StdRng::seed_from_u64(round));
                        let (k, end) = (k.clone().min(end.clone()), k.clone().max(end));
                        let fwd = entries(t.range(k.clone()..end.clone()));
                        let back: Vec<_> = entries(t.range(k.clone()..=end).rev());
                        format!("{fwd:?} {back:?}")
                    }
                    _ => {
                        let mut both = t.scan_prefix(&k);
                        // Alternate ends, as paging does.
                        let mut got = Vec::new();
                        while let Some(e) = if got.len() % 2 == 0 {
                            both.next()
                        } else {
                            both.next_back()
                        } {
                            got.push(e.unwrap().0.to_vec());
                        }
                        format!("{got:?} {:?}", t.last().unwrap())
                    }
                };
                answers.push(answer);
            }
            assert_eq!(answers[0], answers[1], "round {round}, op {op}, key {k:?}");
        }
        assert_eq!(entries(a.0.iter()), entries(b.0.iter()));
        assert_eq!(entries(a.1.iter()), entries(b.1.iter()));
        assert_eq!(a.0.len(), b.0.len());
    }
}
