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

/// The schema, one migration per version, applied in order.
/// Why a database on PostgreSQL has no dump: its own tools back it up.
pub const NO_DUMP: &str = "the store is in PostgreSQL: back it up with pg_dump, and the blob \
     store with its own tools (resellerd backup copies an embedded data dir)";

const MIGRATIONS: &[&str] = &[
    // 1: named trees and their entries.
    "CREATE TABLE kv_trees (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name bytea NOT NULL UNIQUE);
     CREATE TABLE kv (t integer NOT NULL, k bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (t, k));",
];

/// The advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x7265_7365_6c6c_6572;

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

/// The TLS connector the URL's `sslmode` asks for: none for `disable` and `prefer` (the
/// default: plain, as on a socket or a private network), verified TLS for `require`.
fn tls_for(
    config: &tokio_postgres::Config,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>> {
    if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
        return Ok(None);
    }
    let bad = |what: String| Error::Io(std::io::Error::other(format!("PostgreSQL TLS: {what}")));
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os("PGSSLROOTCERT") {
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.to_string_lossy())))?;
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("{}: {e}", path.to_string_lossy())))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("{}: {e}", path.to_string_lossy())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
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
    Error::Io(std::io::Error::other(text))
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

/// One connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &str) -> PgResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = wait(self.client.prepare(sql))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<Vec<Row>> {
        let s = self.statement(sql)?;
        wait(self.client.query(&s, params))
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<u64> {
        let s = self.statement(sql)?;
        wait(self.client.execute(&s, params))
    }
}

/// Connects, and leaves the connection's I/O to a task of the runtime, which passes each
/// notification's payload on to `notices`, if given; returns the client.
async fn open_connection<T>(
    config: &tokio_postgres::Config,
    tls: T,
    notices: Option<std::sync::mpsc::Sender<String>>,
) -> PgResult<Client>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if let Some(tx) = &notices {
                        if tx.send(n.payload().to_string()).is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "a PostgreSQL connection ended");
                    return;
                }
                None => return,
            }
        }
    });
    Ok(client)
}

/// Connections, opened on demand up to `max`, each used by one call at a time.
struct Pool {
    config: tokio_postgres::Config,
    /// TLS for `sslmode=require`: the server's certificate verified against the public roots,
    /// or the CA in the file `PGSSLROOTCERT` names (libpq's variable).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// (idle connections, how many are open)
    idle: Mutex<(Vec<Conn>, usize)>,
    freed: Condvar,
    max: usize,
    /// How long a statement may wait for a lock (0: as long as it takes); the lock pool's
    /// connections wait at most `LOCK_WAIT` for a cluster lock.
    lock_timeout_ms: u64,
}

/// A connection taken from the pool; back in it when dropped, unless it broke.
struct Lease {
    pool: Arc<Pool>,
    conn: Option<Conn>,
}

impl Lease {
    /// Closes the connection instead of pooling it (its session may hold a lock).
    fn forget(&mut self) {
        if self.conn.take().is_some() {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
            self.pool.freed.notify_one();
        }
    }

    fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if conn.client.is_closed() {
            idle.1 -= 1;
        } else {
            idle.0.push(conn);
        }
        drop(idle);
        self.pool.freed.notify_one();
    }
}

impl Pool {
    /// A pool of at most `max` connections to `config`'s server, each waiting at most
    /// `lock_timeout_ms` for a lock (0: as long as it takes).
    fn new(config: tokio_postgres::Config, max: usize, lock_timeout_ms: u64) -> Result<Arc<Pool>> {
        Ok(Arc::new(Pool {
            tls: tls_for(&config)?,
            config,
            idle: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
            max,
            lock_timeout_ms,
        }))
    }

    fn get(self: &Arc<Self>) -> Result<Lease> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while let Some(conn) = idle.0.pop() {
                // One the server closed while it sat idle (a restart, a terminated backend, a
                // proxy's idle timeout) is dropped, not handed out to fail.
                if conn.client.is_closed() {
                    idle.1 -= 1;
                    continue;
                }
                return Ok(Lease {
                    pool: self.clone(),
                    conn: Some(conn),
                });
            }
            if idle.1 < self.max {
                idle.1 += 1;
                drop(idle);
                return match self.connect() {
                    Ok(conn) => Ok(Lease {
                        pool: self.clone(),
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.idle.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, waited) = self
                .freed
                .wait_timeout(idle, CONNECTION_WAIT)
                .unwrap_or_else(|e| e.into_inner());
            idle = next;
            if waited.timed_out() && idle.0.is_empty() && idle.1 >= self.max {
                return Err(Error::Io(std::io::Error::other(format!(
                    "PostgreSQL: all {} connections stayed busy for {} s (raise --database-connections)",
                    self.max,
                    CONNECTION_WAIT.as_secs()
                ))));
            }
        }
    }

    /// Opens a connection on the runtime (see `open_connection`) and waits for it.
    fn open(&self, notices: Option<std::sync::mpsc::Sender<String>>) -> Result<Client> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        runtime().spawn(async move {
            let connected = match tls {
                Some(tls) => open_connection(&config, tls, notices).await,
                None => open_connection(&config, NoTls, notices).await,
            };
            let _ = tx.send(connected);
        });
        rx.recv()
            .map_err(|_| Error::Io(std::io::Error::other("the PostgreSQL runtime stopped")))?
            .map_err(to_error)
    }

    fn connect(&self) -> Result<Conn> {
        let client = self.open(None)?;
        wait(client.batch_execute(&format!(
            "SET default_transaction_isolation TO serializable; SET synchronous_commit TO on; \
             SET tcp_keepalives_idle TO 5; SET tcp_keepalives_interval TO 2; \
             SET tcp_keepalives_count TO 3; SET tcp_user_timeout TO 15000; \
             SET lock_timeout TO {}",
            self.lock_timeout_ms
        )))
        .map_err(to_error)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Opens a connection of its own that listens on `CHANNEL`; returns it (dropping it stops
    /// the listening) and the payloads it hears, which end when the connection does.
    fn listen(&self) -> Result<(Client, std::sync::mpsc::Receiver<String>)> {
        let (tx, notices) = std::sync::mpsc::channel();
        let client = self.open(Some(tx))?;
        wait(client.batch_execute(&format!("LISTEN {CHANNEL}"))).map_err(to_error)?;
        Ok((client, notices))
    }

    /// Runs `f` on a connection, again after a serialization failure.
    fn run<T>(self: &Arc<Self>, mut f: impl FnMut(&mut Conn) -> PgResult<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            let mut lease = self.get()?;
            match f(lease.conn()) {
                Ok(v) => return Ok(v),
                Err(e) if is_conflict(&e) && attempt < MAX_RETRIES => {
                    drop(lease);
                    back_off(attempt);
                    attempt += 1;
                }
                Err(e) => return Err(to_error(e)),
            }
        }
    }
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

/// What `doctor` reports of a database: without changing anything.
pub struct Inspection {
    /// The schema version the database is at (0: none yet), and this build's.
    pub version: i32,
    pub known: i32,
    /// How many nodes listen for the others' changes (each serving node does).
    pub nodes: i64,
    /// True if some node holds the leader lock.
    pub led: bool,
}

/// Connects to `url` and reads the schema version, the nodes serving it and whether one leads,
/// without changing anything.
pub fn inspect(url: &str) -> Result<Inspection> {
    let config: tokio_postgres::Config = url.parse().map_err(to_error)?;
    let pool = Pool::new(config, 1, 0)?;
    let (version, nodes, led) = pool.run(|c| {
        let rows = c.query(
            &format!(
                "SELECT (SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND query = 'LISTEN {CHANNEL}'), \
                 EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1)"
            ),
            &[&(LEADER_LOCK >> 32), &(LEADER_LOCK & 0xffff_ffff)],
        )?;
        let (nodes, led) = rows
            .first()
            .map_or((0, false), |r| (r.get::<_, i64>(0), r.get::<_, bool>(1)));
        let rows = c.query("SELECT to_regclass('resellerd_schema') IS NOT NULL", &[])?;
        if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok((0, nodes, led));
        }
        let rows = c.query(
            "SELECT coalesce(max(version), 0) FROM resellerd_schema",
            &[],
        )?;
        Ok((rows.first().map_or(0, |r| r.get(0)), nodes, led))
    })?;
    Ok(Inspection {
        version,
        known: MIGRATIONS.len() as i32,
        nodes,
        led,
    })
}

/// The advisory lock the cluster's leader holds: the one node that runs the background work
/// (outboxes, verification, renewals, sweeps, blob GC).
const LEADER_LOCK: i64 = MIGRATION_LOCK + 2;

/// The lock versions of resellerd before several nodes took exclusively to serve a database
/// alone. Each node of this version holds it shared: so an older server beside it is refused at
/// its start, and this one refuses to start beside a running older one (which neither tells
/// nor hears of changes).
const LEGACY_SERVING_LOCK: i64 = MIGRATION_LOCK + 1;

/// Takes `LEGACY_SERVING_LOCK` shared, on a connection kept for the life of the process.
fn join_cluster(pool: &Arc<Pool>) -> Result<Lease> {
    if let Some(lease) = try_lock(pool, LEGACY_SERVING_LOCK, true)? {
        return Ok(lease);
    }
    Err(Error::Unsupported(
        "an older resellerd, which cannot share a database with other nodes, serves this \
         PostgreSQL database: stop it (or upgrade it) first"
            .into(),
    ))
}

/// The channel nodes tell each other on (`announce`, `listen`).
const CHANNEL: &str = "resellerd";

/// How often a node checks its leadership (and a follower tries to take it).
const LEADER_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Tries to take the leader lock on a connection kept out of the pool while it leads (a session
/// lock: gone with the connection, so a crashed or cut-off leader never keeps it). Every session
/// asks the server to probe it with TCP keepalives every few seconds (`Pool::connect`), so a
/// leader whose machine died loses the lock within about 15 s, and a follower takes it on its
/// next check.
fn try_lead(pool: &Arc<Pool>) -> Result<Option<Lease>> {
    try_lock(pool, LEADER_LOCK, false)
}

/// Tries the session advisory lock `key` (shared or exclusive) on a connection of `pool`;
/// returns that connection if the lock was granted (it then holds it until closed).
fn try_lock(pool: &Arc<Pool>, key: i64, shared: bool) -> Result<Option<Lease>> {
    let sql = if shared {
        "SELECT pg_try_advisory_lock_shared($1)"
    } else {
        "SELECT pg_try_advisory_lock($1)"
    };
    let mut lease = pool.get()?;
    let rows = lease.conn().query(sql, &[&key]).map_err(to_error)?;
    Ok(rows
        .first()
        .is_some_and(|r| r.get::<_, bool>(0))
        .then_some(lease))
}

/// True if the leader's connection still answers within a few seconds (so a leader cut off
/// from the database stops leading before the server gives its lock to another node).
fn still_leads(lease: &mut Lease) -> bool {
    let client = &lease.conn().client;
    if client.is_closed() {
        return false;
    }
    let probe = async {
        tokio::time::timeout(
            std::time::Duration::from_secs(4),
            client.simple_query("SELECT 1"),
        )
        .await
    };
    matches!(runtime().block_on(probe), Ok(Ok(_)))
}

/// Every `LEADER_CHECK`, while the database is open: a leader checks that it still holds the
/// lock; a follower tries to take it. So when the leader is killed, another node leads within
/// a few seconds of the database noticing.
fn keep_leadership(db: std::sync::Weak<Inner>) {
    let spawned = std::thread::Builder::new()
        .name("pg-leader".into())
        .spawn(move || loop {
            let Some(inner) = db.upgrade() else {
                return;
            };
            let mut held = inner.leader.lock().unwrap_or_else(|e| e.into_inner());
            let leads = held.as_mut().map(still_leads);
            match leads {
                Some(true) => {}
                Some(false) => {
                    // Dropped, not pooled: the connection may still hold the lock.
                    if let Some(mut lease) = held.take() {
                        lease.forget();
                    }
                    inner.leading.store(false, Ordering::Release);
                    tracing::warn!("lost the connection that held the cluster's leadership; background work stops here until it is taken again");
                }
                None => match try_lead(&inner.pool) {
                    Ok(Some(lease)) => {
                        *held = Some(lease);
                        inner.leading.store(true, Ordering::Release);
                        tracing::info!("this node leads the cluster: it runs the background work");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot try the leader lock"),
                },
            }
            drop(held);
            drop(inner);
            std::thread::sleep(LEADER_CHECK);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the leadership check");
    }
}

/// What a node runs for the topics it hears at once (`None`: it may have missed some, so
/// everything may have changed); false if it could not bring everything up to date.
type OnAnnouncement = dyn Fn(Option<&[&str]>) -> bool + Send;

/// How often a listening node pings itself through the database, and how long it goes without
/// hearing anything (its own pings included) before it takes its connection for dead.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);
const DEAF_AFTER: std::time::Duration = std::time::Duration::from_secs(7);

/// Clears `in_sync` when dropped: however listening ends (a lost connection, a failed
/// resync, a panic), the node stops trusting its caches.
struct Deaf(Arc<AtomicBool>);

impl Drop for Deaf {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Listens on `CHANNEL` for as long as the database is open, on a connection of its own, and
/// calls `f` with the distinct topics other nodes announced since it last looked; with `None`
/// once listening starts and after every reconnection (announcements may have been missed).
/// `in_sync` is true only while the node listens and `f` has caught up: a connection that
/// ended, went quiet (its own heartbeat did not come back), or an `f` that failed sends it
/// back to reconnecting.
fn listen_forever(db: std::sync::Weak<Inner>, f: Box<OnAnnouncement>) {
    let spawned = std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || loop {
            let Some(inner) = db.upgrade() else {
                return;
            };
            let (node, pool) = (inner.node.clone(), inner.pool.clone());
            let in_sync = inner.in_sync.clone();
            drop(inner);
            match pool.listen() {
                Ok((client, notices)) => {
                    let _deaf = Deaf(in_sync.clone());
                    // Everything is treated as changed before the caches are trusted again: an
                    // entry read before the listening began is then behind.
                    if f(None) {
                        in_sync.store(true, Ordering::Release);
                        hear(&pool, &node, &notices, &*f);
                    }
                    drop(client);
                    tracing::warn!("not hearing other nodes' changes; caches are bypassed until this node hears them again");
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying"),
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start listening for other nodes' changes");
    }
}

/// Hands what `notices` brings to `f`, in batches of distinct topics, while the connection is
/// alive and `f` keeps up; pings itself every `HEARTBEAT` to know the connection still hears.
fn hear(
    pool: &Arc<Pool>,
    node: &str,
    notices: &std::sync::mpsc::Receiver<String>,
    f: &OnAnnouncement,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let ping = format!("{node} ");
    let (mut heard, mut pinged) = (std::time::Instant::now(), None::<std::time::Instant>);
    loop {
        if pinged.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
            let sent = pool.run(|c| {
                c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &ping])
                    .map(drop)
            });
            if let Err(e) = sent {
                tracing::debug!(error = %e, "cannot ping the listening connection");
            }
            pinged = Some(std::time::Instant::now());
        }
        let first = match notices.recv_timeout(HEARTBEAT) {
            Ok(payload) => payload,
            Err(RecvTimeoutError::Timeout) => {
                if heard.elapsed() > DEAF_AFTER {
                    tracing::warn!("the listening connection went quiet");
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        heard = std::time::Instant::now();
        let mut topics = std::collections::BTreeSet::new();
        for payload in std::iter::once(first).chain(notices.try_iter()) {
            if let Some((from, named)) = payload.split_once(' ') {
                if from != node {
                    topics.extend(named.split(',').filter(|t| !t.is_empty()).map(String::from));
                }
            }
        }
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        if !topics.is_empty() && !f(Some(&topics)) {
            return;
        }
    }
}

/// Cluster-wide locks: session advisory locks, taken in order on one connection of the lock
/// pool and held until dropped.
pub struct AdvisoryLock {
    lease: Option<Lease>,
    /// (key, shared), in the order taken
    keys: Vec<(i64, bool)>,
}

fn lock_sql(shared: bool, take: bool) -> &'static str {
    match (shared, take) {
        (false, true) => "SELECT pg_advisory_lock($1)",
        (true, true) => "SELECT pg_advisory_lock_shared($1)",
        (false, false) => "SELECT pg_advisory_unlock($1)",
        (true, false) => "SELECT pg_advisory_unlock_shared($1)",
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        for (key, shared) in self.keys.iter().rev() {
            if lease
                .conn()
                .execute(lock_sql(*shared, false), &[key])
                .is_err()
            {
                // Its session may still hold a lock: close it rather than pool it.
                lease.forget();
                return;
            }
        }
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

/// Applies the migrations the database lacks, under the advisory lock; returns whether the
/// schema existed before.
fn migrate(pool: &Arc<Pool>) -> Result<bool> {
    let mut lease = pool.get()?;
    let c = lease.conn();
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(to_error)?;
    let result = (|| -> Result<bool> {
        wait(c.client.batch_execute(
            "CREATE TABLE IF NOT EXISTS resellerd_schema (version integer NOT NULL)",
        ))
        .map_err(to_error)?;
        let rows = c
            .query(
                "SELECT coalesce(max(version), 0) FROM resellerd_schema",
                &[],
            )
            .map_err(to_error)?;
        let version = rows.first().map_or(0, |r| r.get::<_, i32>(0)) as usize;
        if version > MIGRATIONS.len() {
            return Err(Error::Unsupported(format!(
                "the database is at schema version {version}, newer than this resellerd's {}: upgrade resellerd",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let sql = format!(
                "BEGIN; {migration}; INSERT INTO resellerd_schema (version) VALUES ({}); COMMIT;",
                i + 1
            );
            if let Err(e) = wait(c.client.batch_execute(&sql)) {
                let _ = wait(c.client.batch_execute("ROLLBACK"));
                return Err(to_error(e));
            }
            tracing::info!(version = i + 1, "migrated the PostgreSQL schema");
        }
        Ok(version > 0)
    })();
    let unlocked = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let existed = result?;
    unlocked.map_err(to_error)?;
    Ok(existed)
}

const GET: &str = "SELECT v FROM kv WHERE t = $1 AND k = $2";
const DELETE: &str = "DELETE FROM kv WHERE t = $1 AND k = $2 RETURNING v";
const UPSERT_MANY: &str =
    "INSERT INTO kv (t, k, v) SELECT * FROM unnest($1::integer[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (t, k) DO UPDATE SET v = EXCLUDED.v";
const DELETE_MANY: &str =
    "DELETE FROM kv WHERE (t, k) IN (SELECT * FROM unnest($1::integer[], $2::bytea[]))";

/// One tree of a PostgreSQL database.
#[derive(Clone)]
pub struct Tree {
    db: Db,
    id: i32,
    name: IVec,
}

impl Tree {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn name(&self) -> IVec {
        self.name.clone()
    }

    /// This tree inside the transaction `state`.
    pub fn in_tx(&self, state: &Rc<TxState>) -> TxTree {
        TxTree {
            state: state.clone(),
            tree: self.id,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.db.0.pool.run(|c| {
            let rows = c.query(GET, &[&self.id, &key])?;
            Ok(rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0))))
        })
    }

    pub fn insert(&self, key: &[u8], value: IVec) -> Result<Option<IVec>> {
        // The old value and the write in one statement: the CTE reads before the upsert.
        const SQL: &str = "WITH old AS (SELECT v FROM kv WHERE t = $1 AND k = $2), \
             up AS (INSERT INTO kv (t, k, v) VALUES ($1, $2, $3) ON CONFLICT (t, k) DO UPDATE SET v = EXCLUDED.v) \
             SELECT v FROM old";
        self.db.0.pool.run(|c| {
            let rows = c.query(SQL, &[&self.id, &key, &value.as_ref()])?;
            Ok(rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0))))
        })
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<IVec>> {
        self.db.0.pool.run(|c| {
            let rows = c.query(DELETE, &[&self.id, &key])?;
            Ok(rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0))))
        })
    }

    /// How many entries (a count: O(n)).
    pub fn count(&self) -> Result<usize> {
        self.db.0.pool.run(|c| {
            let rows = c.query("SELECT count(*) FROM kv WHERE t = $1", &[&self.id])?;
            Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as usize)
        })
    }

    pub fn clear(&self) -> Result<()> {
        self.db
            .0
            .pool
            .run(|c| c.execute("DELETE FROM kv WHERE t = $1", &[&self.id]))
            .map(drop)
    }

    pub fn apply_batch(&self, batch: &Batch) -> Result<()> {
        let writes: Vec<((i32, IVec), Option<IVec>)> = batch
            .settled()
            .into_iter()
            .map(|(k, v)| ((self.id, k), v))
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        self.db.0.pool.run(|c| {
            wait(c.client.batch_execute("BEGIN"))?;
            let done = write_all(c, writes.iter().map(|(k, v)| (k, v)))
                .and_then(|_| wait(c.client.batch_execute("COMMIT")));
            if done.is_err() {
                let _ = wait(c.client.batch_execute("ROLLBACK"));
            }
            done
        })
    }

    /// The entries between `lo` and `hi`, fetched in growing chunks from either end.
    pub fn range(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Iter {
        Iter {
            tree: self.clone(),
            lo,
            hi,
            front: VecDeque::new(),
            back: VecDeque::new(),
            done: false,
            chunk: 16,
        }
    }
}

/// Sends a transaction's writes (final value per (tree, key); None removes): one upsert and one
/// delete statement, pipelined.
fn write_all<'a>(
    c: &mut Conn,
    writes: impl Iterator<Item = (&'a (i32, IVec), &'a Option<IVec>)>,
) -> PgResult<()> {
    let (mut up_t, mut up_k, mut up_v) = (Vec::new(), Vec::new(), Vec::new());
    let (mut del_t, mut del_k) = (Vec::new(), Vec::new());
    for ((t, k), v) in writes {
        match v {
            Some(v) => {
                up_t.push(*t);
                up_k.push(k.as_ref());
                up_v.push(v.as_ref());
            }
            None => {
                del_t.push(*t);
                del_k.push(k.as_ref());
            }
        }
    }
    let upsert = c.statement(UPSERT_MANY)?;
    let delete = c.statement(DELETE_MANY)?;
    let client = &c.client;
    let (a, b) = wait(async {
        let a = async {
            if up_t.is_empty() {
                Ok(0)
            } else {
                client.execute(&upsert, &[&up_t, &up_k, &up_v]).await
            }
        };
        let b = async {
            if del_t.is_empty() {
                Ok(0)
            } else {
                client.execute(&delete, &[&del_t, &del_k]).await
            }
        };
        futures_util::future::join(a, b).await
    });
    a?;
    b?;
    Ok(())
}

/// A transaction under way on one connection: its writes wait here until the commit.
pub struct TxState {
    conn: RefCell<Lease>,
    writes: RefCell<BTreeMap<(i32, IVec), Option<IVec>>>,
    reads: RefCell<HashMap<(i32, IVec), Option<IVec>>>,
    /// Committed or rolled back; until then, dropping the state rolls back (a closure that
    /// panicked must not hand an open transaction back to the pool).
    ended: std::cell::Cell<bool>,
}

impl Drop for TxState {
    fn drop(&mut self) {
        if !self.ended.get() {
            self.rollback();
        }
    }
}

impl TxState {
    fn read(&self, tree: i32, key: &[u8]) -> PgResult<Option<IVec>> {
        let k = (tree, IVec::from(key));
        if let Some(v) = self.writes.borrow().get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.reads.borrow().get(&k) {
            return Ok(v.clone());
        }
        let rows = self.conn.borrow_mut().conn().query(GET, &[&tree, &key])?;
        let v = rows.first().map(|r| IVec::from(r.get::<_, &[u8]>(0)));
        self.reads.borrow_mut().insert(k, v.clone());
        Ok(v)
    }

    fn commit(&self) -> PgResult<()> {
        let writes = self.writes.borrow();
        let mut lease = self.conn.borrow_mut();
        let c = lease.conn();
        write_all(c, writes.iter())?;
        wait(c.client.batch_execute("COMMIT"))?;
        self.ended.set(true);
        Ok(())
    }

    fn rollback(&self) {
        let mut lease = self.conn.borrow_mut();
        let _ = wait(lease.conn().client.batch_execute("ROLLBACK"));
        self.ended.set(true);
    }
}

/// Runs `f` as one serializable transaction, again on a serialization failure or a conflict.
pub fn transaction<A, E>(
    db: &Db,
    f: impl Fn(&Rc<TxState>) -> ConflictableTransactionResult<A, E>,
) -> TransactionResult<A, E> {
    let mut attempt = 0;
    loop {
        let lease = db.0.pool.get().map_err(TransactionError::Storage)?;
        let state = Rc::new(TxState {
            conn: RefCell::new(lease),
            writes: RefCell::default(),
            reads: RefCell::default(),
            ended: std::cell::Cell::new(false),
        });
        let begun = wait(
            state
                .conn
                .borrow_mut()
                .conn()
                .client
                .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE"),
        );
        begun.map_err(|e| TransactionError::Storage(to_error(e)))?;
        let retry = match f(&state) {
            Ok(a) => match state.commit() {
                Ok(()) => return Ok(a),
                Err(e) if is_conflict(&e) => {
                    state.rollback();
                    true
                }
                Err(e) => {
                    state.rollback();
                    return Err(TransactionError::Storage(to_error(e)));
                }
            },
            Err(ConflictableTransactionError::Abort(e)) => {
                state.rollback();
                return Err(TransactionError::Abort(e));
            }
            Err(ConflictableTransactionError::Conflict) => {
                state.rollback();
                true
            }
            Err(ConflictableTransactionError::Storage(e)) => {
                state.rollback();
                return Err(TransactionError::Storage(e));
            }
        };
        drop(state);
        if retry {
            if attempt >= MAX_RETRIES {
                return Err(TransactionError::Storage(Error::Io(std::io::Error::other(
                    "PostgreSQL: a transaction kept conflicting with others",
                ))));
            }
            back_off(attempt);
            attempt += 1;
        }
    }
}

/// A tree inside a transaction.
#[derive(Clone)]
pub struct TxTree {
    state: Rc<TxState>,
    tree: i32,
}

impl TxTree {
    pub fn get(&self, key: &[u8]) -> UnabortableTransactionResult<Option<IVec>> {
        self.state.read(self.tree, key).map_err(unabortable)
    }

    /// Sets (Some) or removes (None) `key`; returns the value it had.
    pub fn insert(
        &self,
        key: IVec,
        value: Option<IVec>,
    ) -> UnabortableTransactionResult<Option<IVec>> {
        let old = self.state.read(self.tree, &key).map_err(unabortable)?;
        self.write(key, value);
        Ok(old)
    }

    /// Sets (Some) or removes (None) `key` without reading it: no round trip until the commit.
    pub fn write(&self, key: IVec, value: Option<IVec>) {
        self.state
            .writes
            .borrow_mut()
            .insert((self.tree, key), value);
    }
}

fn unabortable(e: tokio_postgres::Error) -> UnabortableTransactionError {
    if is_conflict(&e) {
        UnabortableTransactionError::Conflict
    } else {
        UnabortableTransactionError::Storage(to_error(e))
    }
}

/// Entries of a tree between two bounds, read a chunk at a time from whichever end is asked.
pub struct Iter {
    tree: Tree,
    /// What is left unread: the front reads move `lo` up, the back reads move `hi` down.
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    /// Read from the front, ascending.
    front: VecDeque<(IVec, IVec)>,
    /// Read from the back, descending.
    back: VecDeque<(IVec, IVec)>,
    /// Nothing is left unread between `lo` and `hi` (or a read failed).
    done: bool,
    chunk: i64,
}

impl Iter {
    /// Reads the next chunk from the front (or the back, if `desc`) into its buffer.
    fn fill(&mut self, desc: bool) -> Result<()> {
        let mut sql = String::from("SELECT k, v FROM kv WHERE t = $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.tree.id];
        let lo = match &self.lo {
            Bound::Included(k) => Some((">=", k)),
            Bound::Excluded(k) => Some((">", k)),
            Bound::Unbounded => None,
        };
        let hi = match &self.hi {
            Bound::Included(k) => Some(("<=", k)),
            Bound::Excluded(k) => Some(("<", k)),
            Bound::Unbounded => None,
        };
        for (op, k) in [lo, hi].into_iter().flatten() {
            params.push(k);
            sql.push_str(&format!(" AND k {op} ${}", params.len()));
        }
        params.push(&self.chunk);
        sql.push_str(&format!(
            " ORDER BY k {} LIMIT ${}",
            if desc { "DESC" } else { "ASC" },
            params.len()
        ));
        let rows = self.tree.db.0.pool.run(|c| c.query(&sql, &params))?;
        let got: Vec<(IVec, IVec)> = rows
            .iter()
            .map(|r| {
                (
                    IVec::from(r.get::<_, &[u8]>(0)),
                    IVec::from(r.get::<_, &[u8]>(1)),
                )
            })
            .collect();
        if (got.len() as i64) < self.chunk {
            self.done = true;
        }
        self.chunk = (self.chunk * 4).min(1024);
        if let Some((k, _)) = got.last() {
            if desc {
                self.hi = Bound::Excluded(k.to_vec());
            } else {
                self.lo = Bound::Excluded(k.to_vec());
            }
        }
        if desc {
            self.back.extend(got);
        } else {
            self.front.extend(got);
        }
        Ok(())
    }
}

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.front.is_empty() && !self.done {
            if let Err(e) = self.fill(false) {
                self.done = true;
                self.back.clear();
                return Some(Err(e));
            }
        }
        self.front
            .pop_front()
            .or_else(|| self.back.pop_back())
            .map(Ok)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.back.is_empty() && !self.done {
            if let Err(e) = self.fill(true) {
                self.done = true;
                self.front.clear();
                return Some(Err(e));
            }
        }
        self.back
            .pop_front()
            .or_else(|| self.front.pop_back())
            .map(Ok)
    }
}
