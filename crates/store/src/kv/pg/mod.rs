//! PostgreSQL as the store's engine (`--database-url`). Every tree is a range of one table,
//! `kv (t, k, v)` with the primary key (tree id, key): bytea compares bytewise, so a tree's keys
//! are in the same order as in sled and a range scan or a keyset page is an index range.
//!
//! Transactions are SERIALIZABLE (every connection defaults to it, single statements too) and
//! run again on a serialization failure, as sled's run again on a conflict; so a check and the
//! write it guards (a name's uniqueness, the 6-key limit, a quota) hold across processes and
//! nodes, not only inside one. A transaction's writes are buffered and sent at its commit in two
//! statements. A commit is durable (synchronous_commit), so there is nothing to flush.
//!
//! Calls are synchronous, like sled's: each waits on its connection, whose I/O runs on a small
//! runtime of its own, so the store can be called from any thread (actix workers included).
//! The schema is versioned (`resellerd_schema`) and migrated at open under an advisory lock, so
//! nodes starting together migrate once.

mod cluster;
mod pool;
mod schema;
mod tree;

use cluster::*;
pub use cluster::{inspect, AdvisoryLock, Inspection};
use pool::*;
use schema::*;
pub use tree::{transaction, Iter, Tree, TxState, TxTree};

use super::{
    Batch, ConflictableTransactionError, ConflictableTransactionResult, Error, IVec, Result,
    TransactionError, TransactionResult, UnabortableTransactionError, UnabortableTransactionResult,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

/// Why a database on PostgreSQL has no dump: its own tools back it up.
pub const NO_DUMP: &str = "the store is in PostgreSQL: back it up with pg_dump, and the blob \
     store with its own tools (resellerd backup copies an embedded data dir)";

/// How long a call waits for a free connection before it fails (503) instead of hanging.
const CONNECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The most connections cluster locks are held on at once (per process).
const LOCK_CONNECTIONS: usize = 16;

/// How long a call waits for a cluster lock before it fails (503) instead of hanging.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How many times a statement or transaction runs again after a serialization failure.
const MAX_RETRIES: u32 = 200;

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// The runtime that drives every connection's I/O (never dropped: a runtime cannot be dropped
/// from inside another).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the PostgreSQL runtime: {e}"))
    })
}

/// Waits for a query. A client's futures only talk to its connection task over channels, so
/// they can be waited on from any thread.
fn wait<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_executor::block_on(f)
}

/// A PostgreSQL failure as the store's error (with the server's code and message).
fn to_error(e: tokio_postgres::Error) -> Error {
    let text = match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => {
            let mut text = format!("PostgreSQL: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    };
    Error::Io(crate::kv::types::EngineFailure::io(text, e))
}

/// True for the failures that mean "run it again": a serialization failure or a deadlock.
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// A moment before running a conflicted transaction again, growing with the attempts.
fn back_off(attempt: u32) {
    use rand::Rng;
    let cap = 1u64 << attempt.min(6);
    let micros = rand::thread_rng().gen_range(0..=cap * 200);
    std::thread::sleep(std::time::Duration::from_micros(micros));
}

struct Inner {
    pool: Arc<Pool>,
    /// The connections cluster locks are held on (see `Db::lock`).
    locks: Arc<Pool>,
    /// The connection holding `LEGACY_SERVING_LOCK` shared (see `join_cluster`).
    member: Lease,
    /// The connection that holds the cluster's leader lock, while this node leads (see
    /// `keep_leadership`).
    leader: Mutex<Option<Lease>>,
    leading: AtomicBool,
    /// This process's name in announcements, so it skips its own.
    node: String,
    /// True while this node hears the others' announcements (see `listen_forever`).
    in_sync: Arc<AtomicBool>,
    /// tree name -> id, as `kv_trees` has them
    trees: Mutex<HashMap<Vec<u8>, i32>>,
    /// True if the schema was there before this open.
    existed: bool,
}

/// A PostgreSQL database holding the store's trees.
#[derive(Clone)]
pub struct Db(Arc<Inner>);

impl Drop for Inner {
    fn drop(&mut self) {
        // The leader's and the member's connections are closed, not pooled: their sessions
        // hold locks.
        if let Some(mut lease) = self.leader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            lease.forget();
        }
        self.member.forget();
    }
}

impl Db {
    /// Connects to `url` (a `postgres://` URL or a libpq key=value string) with at most
    /// `max_connections`, and brings the schema up to date.
    pub fn open(url: &str, max_connections: usize) -> Result<Db> {
        let mut config: tokio_postgres::Config = url.parse().map_err(to_error)?;
        // A peer that vanished (a dead machine, a cut without a reset) is noticed in seconds,
        // not the operating system's two hours: by this side's keepalives and send timeout,
        // and by the server's (set per session in `Pool::connect`).
        config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(5))
            .keepalives_interval(std::time::Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(std::time::Duration::from_secs(15));
        Db::open_config(config, max_connections)
    }

    fn open_config(config: tokio_postgres::Config, max_connections: usize) -> Result<Db> {
        let pool = Pool::new(config, max_connections.max(2), 0)?;
        let existed = migrate(&pool)?;
        let member = join_cluster(&pool)?;
        let locks = Pool::new(
            pool.config.clone(),
            LOCK_CONNECTIONS,
            LOCK_WAIT.as_millis() as u64,
        )?;
        // A lone node leads from its first request, not after the first check.
        let leader = try_lead(&pool)?;
        let inner = Arc::new(Inner {
            leading: AtomicBool::new(leader.is_some()),
            leader: Mutex::new(leader),
            node: format!("{:016x}", rand::random::<u64>()),
            in_sync: Arc::new(AtomicBool::new(false)),
            pool,
            locks,
            member,
            trees: Mutex::new(HashMap::new()),
            existed,
        });
        keep_leadership(Arc::downgrade(&inner));
        Ok(Db(inner))
    }

    /// True while this node holds the cluster's leader lock.
    pub fn is_leader(&self) -> bool {
        self.0.leading.load(Ordering::Acquire)
    }

    /// True while this node hears every other node's announcements (so its caches may be used).
    pub fn in_sync(&self) -> bool {
        self.0.in_sync.load(Ordering::Acquire)
    }

    /// Starts listening for the other nodes' announcements (see `listen_forever`).
    pub fn listen(&self, f: impl Fn(Option<&[&str]>) -> bool + Send + 'static) {
        listen_forever(Arc::downgrade(&self.0), Box::new(f));
    }

    /// Tells the other nodes that `topics` changed. Sent after the change committed; a node
    /// that misses it (its listening connection was down) treats everything as changed.
    pub fn announce(&self, topics: &[&str]) {
        let payload = format!("{} {}", self.0.node, topics.join(","));
        for attempt in 0..3 {
            let sent = self.0.pool.run(|c| {
                c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                    .map(drop)
            });
            match sent {
                Ok(()) => return,
                Err(e) if attempt == 2 => {
                    tracing::error!(error = %e, topics = %payload, "cannot tell the other nodes about a change: their caches may hold it until they reconnect")
                }
                Err(_) => back_off(attempt + 4),
            }
        }
    }

    /// Takes the cluster-wide locks `keys` (key, shared), in order, waiting for each. They are
    /// held on one connection of a pool of their own: a caller holding locks waits only for a
    /// connection to work with, never for another lock connection, so lock holders cannot take
    /// every connection and wait on each other.
    pub fn lock(&self, keys: &[(i64, bool)]) -> Result<AdvisoryLock> {
        let mut held = AdvisoryLock {
            lease: Some(self.0.locks.get()?),
            keys: Vec::with_capacity(keys.len()),
        };
        for &(key, shared) in keys {
            let lease = held
                .lease
                .as_mut()
                .unwrap_or_else(|| unreachable!("held until dropped"));
            lease
                .conn()
                .execute(lock_sql(shared, true), &[&key])
                .map_err(to_error)?;
            held.keys.push((key, shared));
        }
        Ok(held)
    }

    pub fn existed(&self) -> bool {
        self.0.existed
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i32> {
        self.0.pool.run(|c| {
            let rows = c.query(
                "SELECT coalesce(max(version), 0) FROM resellerd_schema",
                &[],
            )?;
            Ok(rows.first().map_or(0, |r| r.get(0)))
        })
    }

    pub fn open_tree(&self, name: &[u8]) -> Result<Tree> {
        let cached = self
            .0
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied();
        let id = match cached {
            Some(id) => id,
            None => {
                let id: i32 = self
                    .0
                    .pool
                    .run(|c| {
                        c.execute(
                            "INSERT INTO kv_trees (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                            &[&name],
                        )?;
                        let rows = c.query("SELECT id FROM kv_trees WHERE name = $1", &[&name])?;
                        Ok(rows.first().map(|r| r.get(0)))
                    })?
                    .ok_or_else(|| Error::ReportableBug("a tree vanished as it was made".into()))?;
                self.0
                    .trees
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_vec(), id);
                id
            }
        };
        Ok(Tree {
            db: self.clone(),
            id,
            name: IVec::from(name),
        })
    }

    pub fn drop_tree(&self, name: &[u8]) -> Result<bool> {
        self.0
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.0.pool.run(|c| {
            let rows = c.query("SELECT id FROM kv_trees WHERE name = $1", &[&name])?;
            let Some(id) = rows.first().map(|r| r.get::<_, i32>(0)) else {
                return Ok(false);
            };
            wait(c.client.batch_execute("BEGIN"))?;
            let done = (|| {
                c.execute("DELETE FROM kv WHERE t = $1", &[&id])?;
                c.execute("DELETE FROM kv_trees WHERE id = $1", &[&id])?;
                wait(c.client.batch_execute("COMMIT"))
            })();
            if done.is_err() {
                let _ = wait(c.client.batch_execute("ROLLBACK"));
            }
            done.map(|_| true)
        })
    }

    pub fn tree_names(&self) -> Result<Vec<IVec>> {
        self.0.pool.run(|c| {
            let rows = c.query("SELECT name FROM kv_trees ORDER BY name", &[])?;
            Ok(rows
                .iter()
                .map(|r| IVec::from(r.get::<_, Vec<u8>>(0)))
                .collect())
        })
    }

    /// The tree sled calls its default one (`Db::get` and `Db::insert` use it).
    pub fn default_tree(&self) -> Result<Tree> {
        self.open_tree(b"__sled__default")
    }

    /// Bytes the entries take, indexes included.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.0.pool.run(|c| {
            let rows = c.query("SELECT pg_total_relation_size('kv')", &[])?;
            Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
        })
    }
}

#[cfg(test)]
impl Db {
    /// Another process's view of the same database (a second node).
    pub(crate) fn reopen_for_tests(&self) -> Db {
        Db::open_config(self.0.pool.config.clone(), 2).unwrap()
    }

    /// Ends this database's listening connections from the server's side.
    pub(crate) fn cut_listening_for_tests(&self) {
        self.0
            .pool
            .run(|c| {
                c.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                    &[],
                )
                .map(drop)
            })
            .unwrap();
    }
}
