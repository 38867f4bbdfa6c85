//! Group commit: a mutating request awaits `Flusher::flush` before it answers. One thread runs
//! `Db::flush` (an fsync) for every waiter that queued while the previous flush ran, so concurrent
//! writers share one flush instead of paying one each.

use crate::error::{StoreError, StoreResult};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a flush waits for company when the previous one was recent.
const LINGER: Duration = Duration::from_micros(500);
/// How often an idle flush thread writes queued records and makes unflushed writes durable
/// (sled also does so within its own flush interval; redb only when asked).
const IDLE: Duration = Duration::from_millis(100);
/// What counts as "recent".
const LINGER_WHEN_BUSY: Duration = Duration::from_millis(2);
/// A flush that takes this long is logged: every write acknowledged by it waited as long.
const SLOW_FLUSH: Duration = Duration::from_millis(100);
use tokio::sync::oneshot;

/// Why a flush failed, in a form every waiter can get a copy of.
#[derive(Clone)]
enum Failure {
    NoSpace,
    Io(String),
}

type Waiter = oneshot::Sender<Result<(), Failure>>;

/// Flushes (group commits) so far and the time they took, for `/metrics`.
pub static FLUSHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FLUSH_MICROS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const OK: u8 = 0;
const NO_SPACE: u8 = 1;
const IO: u8 = 2;

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Waiter>,
    /// Why the last flush failed (`OK`, `NO_SPACE` or `IO`): neither embedded engine recovers
    /// from a failed write in process. Back to `OK` when a flush succeeds again.
    failed: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

fn failure(e: crate::kv::Error) -> Failure {
    match StoreError::from(e) {
        StoreError::InsufficientStorage => Failure::NoSpace,
        other => Failure::Io(other.to_string()),
    }
}

/// Keeps the outcome of a flush in `failed`, and logs when flushes start failing.
fn record(failed: &std::sync::atomic::AtomicU8, result: &Result<(), Failure>) {
    let now = match result {
        Ok(()) => OK,
        Err(Failure::NoSpace) => NO_SPACE,
        Err(Failure::Io(_)) => IO,
    };
    let was = failed.swap(now, Ordering::Relaxed);
    if let (Err(f), OK) = (result, was) {
        let why = match f {
            Failure::NoSpace => "the disk is full".to_string(),
            Failure::Io(e) => e.clone(),
        };
        tracing::error!(error = %why, "the store cannot write: writes answer 507/503 until it can");
    }
}

impl Flusher {
    /// `before_flush` runs on the flush thread before every flush, and when the thread has been
    /// idle for `IDLE`; it writes what was queued for the database (the audit log).
    pub fn start(db: crate::kv::Db, mut before_flush: Box<dyn FnMut() + Send>) -> Self {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(OK));
        let failed_flag = failed.clone();
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                let mut last_flush = Instant::now() - LINGER_WHEN_BUSY;
                loop {
                    let first = match rx.recv_timeout(IDLE) {
                        Ok(waiter) => waiter,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            before_flush();
                            // Writes no request waits for (traffic counters, background work)
                            // are made durable too, as sled does every half second.
                            let result = db.settle().map_err(failure);
                            record(&failed_flag, &result);
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            before_flush();
                            let _ = db.settle();
                            break;
                        }
                    };
                    // Under load (the previous flush was moments ago), wait a little so more
                    // writers join this flush; an idle server flushes at once.
                    if last_flush.elapsed() < LINGER_WHEN_BUSY {
                        std::thread::sleep(LINGER);
                    }
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    let began = Instant::now();
                    before_flush();
                    let result = db.flush().map(|_| ()).map_err(failure);
                    record(&failed_flag, &result);
                    FLUSHES.fetch_add(1, Ordering::Relaxed);
                    let took = began.elapsed();
                    FLUSH_MICROS.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                    if took >= SLOW_FLUSH {
                        tracing::warn!(
                            ms = took.as_millis() as u64,
                            writers = waiters.len(),
                            "a slow flush: every write in it waited this long"
                        );
                    }
                    last_flush = Instant::now();
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the flush thread: {e}"));
        Flusher { tx, failed }
    }

    /// Since a flush failed and until one succeeds: the answer for a write meanwhile.
    pub fn refusal(&self) -> Option<StoreError> {
        match self.failed.load(Ordering::Relaxed) {
            OK => None,
            NO_SPACE => Some(StoreError::InsufficientStorage),
            _ => Some(StoreError::StorageUnavailable(
                "a write failed; see the server log".into(),
            )),
        }
    }

    /// Resolves once everything written before the call is on disk.
    pub async fn flush(&self) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| StoreError::internal("flush thread stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Failure::NoSpace)) => Err(StoreError::InsufficientStorage),
            Ok(Err(Failure::Io(e))) => Err(StoreError::StorageUnavailable(format!("flush: {e}"))),
            Err(_) => Err(StoreError::internal("flush thread stopped")),
        }
    }
}
