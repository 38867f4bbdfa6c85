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
pub(crate) mod tests;
