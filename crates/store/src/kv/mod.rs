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

mod transaction;
mod tree;

pub use transaction::*;
pub use tree::*;

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
