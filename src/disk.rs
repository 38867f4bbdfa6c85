//! Free space on the data dir's filesystem: a reserve below which writes are refused (507) before
//! they touch the store, so the store itself never meets a full disk in normal operation, and the
//! watcher that notices space coming back, or a store that failed and must be reopened.

use crate::error::{ApiError, ApiResult};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The exit status when the store failed after an I/O error and space is back: the service
/// manager (systemd `Restart=on-failure`, Docker `--restart on-failure`) starts it again, which
/// reopens the store. 75 is `EX_TEMPFAIL`.
pub const EXIT_REOPEN: i32 = 75;

/// Free space beyond the reserve before a failed store is probed (and possibly reopened).
const REOPEN_ROOM: u64 = 4 << 20;

/// The default reserve: 2 % of the filesystem or 256 MiB, whichever is smaller.
pub fn default_reserve(total: u64) -> u64 {
    (total / 50).min(256 << 20)
}

/// (free bytes for unprivileged writers, total bytes) of the filesystem holding `path`.
pub fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

pub struct Disk {
    dir: PathBuf,
    reserve: u64,
    free: AtomicU64,
    total: AtomicU64,
    low: AtomicBool,
}

impl Disk {
    /// Watches the filesystem of `dir`; `reserve` None means `default_reserve`.
    pub fn new(dir: &Path, reserve: Option<u64>) -> Result<Disk, String> {
        let (free, total) =
            space(dir).map_err(|e| format!("cannot read free space of {}: {e}", dir.display()))?;
        let reserve = reserve.unwrap_or_else(|| default_reserve(total));
        Ok(Disk {
            dir: dir.to_path_buf(),
            reserve,
            free: AtomicU64::new(free),
            total: AtomicU64::new(total),
            low: AtomicBool::new(free < reserve),
        })
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// True while free space is below the reserve (as last sampled).
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// 507 while free space is below the reserve, and for a body of `incoming` bytes that would
    /// take it there.
    pub fn check_room(&self, incoming: u64) -> ApiResult<()> {
        if self.is_low() || self.free().saturating_sub(incoming) < self.reserve {
            return Err(ApiError::InsufficientStorage);
        }
        Ok(())
    }

    /// Samples free space now; logs (once per change) when it falls below the reserve or
    /// comes back.
    pub fn sample(&self) {
        let Ok((free, total)) = space(&self.dir) else {
            return;
        };
        self.free.store(free, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        let low = free < self.reserve;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::error!(
                    free_bytes = free,
                    reserve_bytes = self.reserve,
                    data_dir = %self.dir.display(),
                    "free space on the data dir's filesystem is below the reserve: API writes, uploads and form \
                     submissions are refused with 507 (deletes still work); sites keep being served. \
                     Free space (delete sites, grow the disk) and writes resume by themselves"
                );
            } else {
                tracing::warn!(
                    free_bytes = free,
                    reserve_bytes = self.reserve,
                    "free space is back above the reserve: writes resume"
                );
            }
        }
    }
}

/// Samples free space every second. When the store has failed (an I/O error, e.g. the disk
/// filled before the reserve could refuse a write) and there is room again, it probes the store;
/// if the store cannot write, the process exits with `EXIT_REOPEN` so it is restarted with the
/// store reopened (neither sled nor redb recovers from a failed write in process). Nothing
/// acknowledged is lost: every 2xx was flushed before it was sent.
pub async fn watch_forever(disk: Arc<Disk>, store: crate::store::Store) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let probe = disk.clone();
        let _ = tokio::task::spawn_blocking(move || probe.sample()).await;
        // A failed store is probed only once there is some room beyond the reserve: a probe
        // that fails makes a restart, and a restart on a disk still full fails again.
        if !store.is_failed() || disk.is_low() || disk.free() < disk.reserve() + REOPEN_ROOM {
            continue;
        }
        match store.probe_write().await {
            Ok(()) => tracing::warn!("the store writes again: writes resume"),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    status = EXIT_REOPEN,
                    "the store failed after an I/O error and cannot recover in process; there is room again, \
                     so resellerd exits to be restarted with the store reopened"
                );
                std::process::exit(EXIT_REOPEN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reserve_is_two_percent_capped_at_256_mib() {
        assert_eq!(default_reserve(1 << 30), (1 << 30) / 50);
        assert_eq!(default_reserve(1 << 40), 256 << 20);
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path(), Some(1)).unwrap();
        assert!(disk.free() > 0 && disk.total() >= disk.free());
        assert!(disk.check_room(0).is_ok());
        assert!(disk.check_room(u64::MAX).is_err());
        let full = Disk::new(dir.path(), Some(u64::MAX)).unwrap();
        assert!(full.is_low());
    }
}
