//! Several nodes on one database: the leader's lease (the one node that runs the background
//! work), announcements between nodes (LISTEN/NOTIFY with a heartbeat), advisory locks, and what
//! `doctor` reads of a database.

use super::*;

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
pub(super) const LEADER_LOCK: i64 = MIGRATION_LOCK + 2;

/// The lock versions of resellerd before several nodes took exclusively to serve a database
/// alone. Each node of this version holds it shared: so an older server beside it is refused at
/// its start, and this one refuses to start beside a running older one (which neither tells
/// nor hears of changes).
pub(super) const LEGACY_SERVING_LOCK: i64 = MIGRATION_LOCK + 1;

/// Takes `LEGACY_SERVING_LOCK` shared, on a connection kept for the life of the process.
pub(super) fn join_cluster(pool: &Arc<Pool>) -> Result<Lease> {
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
pub(super) const CHANNEL: &str = "resellerd";

/// How often a node checks its leadership (and a follower tries to take it).
pub(super) const LEADER_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Tries to take the leader lock on a connection kept out of the pool while it leads (a session
/// lock: gone with the connection, so a crashed or cut-off leader never keeps it). Every session
/// asks the server to probe it with TCP keepalives every few seconds (`Pool::connect`), so a
/// leader whose machine died loses the lock within about 15 s, and a follower takes it on its
/// next check.
pub(super) fn try_lead(pool: &Arc<Pool>) -> Result<Option<Lease>> {
    try_lock(pool, LEADER_LOCK, false)
}

/// Tries the session advisory lock `key` (shared or exclusive) on a connection of `pool`;
/// returns that connection if the lock was granted (it then holds it until closed).
pub(super) fn try_lock(pool: &Arc<Pool>, key: i64, shared: bool) -> Result<Option<Lease>> {
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
pub(super) fn still_leads(lease: &mut Lease) -> bool {
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
pub(super) fn keep_leadership(db: std::sync::Weak<Inner>) {
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
pub(super) type OnAnnouncement = dyn Fn(Option<&[&str]>) -> bool + Send;

/// How often a listening node pings itself through the database, and how long it goes without
/// hearing anything (its own pings included) before it takes its connection for dead.
pub(super) const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);
pub(super) const DEAF_AFTER: std::time::Duration = std::time::Duration::from_secs(7);

/// Clears `in_sync` when dropped: however listening ends (a lost connection, a failed
/// resync, a panic), the node stops trusting its caches.
pub(super) struct Deaf(Arc<AtomicBool>);

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
pub(super) fn listen_forever(db: std::sync::Weak<Inner>, f: Box<OnAnnouncement>) {
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
pub(super) fn hear(
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
    pub(super) lease: Option<Lease>,
    /// (key, shared), in the order taken
    pub(super) keys: Vec<(i64, bool)>,
}

pub(super) fn lock_sql(shared: bool, take: bool) -> &'static str {
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
