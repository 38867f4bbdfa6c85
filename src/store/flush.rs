//! Group commit: a mutating request awaits `Flusher::flush` before it answers. One thread runs
//! `Db::flush` (an fsync) for every waiter that queued while the previous flush ran, so concurrent
//! writers share one flush instead of paying one each.

use crate::error::{ApiError, ApiResult};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a flush waits for company when the previous one was recent.
const LINGER: Duration = Duration::from_micros(500);
/// How often an idle flush thread writes queued records (sled makes them durable within
/// its own flush interval).
const IDLE: Duration = Duration::from_millis(100);
/// What counts as "recent".
const LINGER_WHEN_BUSY: Duration = Duration::from_millis(2);
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Waiter>,
}

impl Flusher {
    /// `before_flush` runs on the flush thread before every flush, and when the thread has been
    /// idle for `IDLE`; it writes what was queued for the database (the audit log).
    pub fn start(db: sled::Db, before_flush: Box<dyn Fn() + Send>) -> Self {
        let (tx, rx) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                let mut last_flush = Instant::now() - LINGER_WHEN_BUSY;
                loop {
                    let first = match rx.recv_timeout(IDLE) {
                        Ok(waiter) => waiter,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            before_flush();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
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
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    crate::metrics::record_flush(began.elapsed());
                    last_flush = Instant::now();
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the flush thread: {e}"));
        Flusher { tx }
    }

    /// Resolves once everything written before the call is on disk.
    pub async fn flush(&self) -> ApiResult<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| ApiError::internal("flush thread stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::internal(format!("flush failed: {e}"))),
            Err(_) => Err(ApiError::internal("flush thread stopped")),
        }
    }
}
