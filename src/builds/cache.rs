//! Dependency caches, one directory per site under `<build dir>/cache/<site id>`: npm's cache
//! (`npm/`, mounted as the build's npm cache) and the `node_modules` of the last successful build
//! with the digest of the lockfile it was installed from (`node_modules.key`). A build whose
//! lockfile has the same digest starts with that `node_modules`. A site's caches are bounded
//! (`--build-cache-mb`: over it they are dropped after the build), all sites' together too
//! (`--build-cache-total-mb`: the least recently used go first), and go with the site.

use super::sandbox::dir_size;
use super::Limits;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const LOCKFILES: &[&str] = &[
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
];
const KEY: &str = "node_modules.key";

pub fn site_dir(build_dir: &Path, site_id: &str) -> PathBuf {
    build_dir.join("cache").join(site_id)
}

/// Deletes a site's caches (its builds' `clear_cache`, the site's deletion).
pub fn clear(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// The digest of the lockfile in `base`, if it has one.
fn lock_digest(base: &Path) -> Option<String> {
    for name in LOCKFILES {
        if let Ok(bytes) = std::fs::read(base.join(name)) {
            return Some(format!("{name}:{}", hex::encode(Sha256::digest(&bytes))));
        }
    }
    None
}

/// Moves the cached `node_modules` into `base` when its lockfile matches; true if it did.
pub fn restore(dir: &Path, base: &Path) -> bool {
    let Some(digest) = lock_digest(base) else {
        return false;
    };
    let cached = dir.join("node_modules");
    let same = std::fs::read_to_string(dir.join(KEY)).is_ok_and(|k| k == digest);
    if !same || !cached.is_dir() || base.join("node_modules").exists() {
        return false;
    }
    // Marked used, for the total limit's order.
    let _ = std::fs::write(dir.join(KEY), &digest);
    std::fs::rename(&cached, base.join("node_modules")).is_ok()
}

/// Keeps `base/node_modules` for the next build (after a build that deployed), then holds the
/// site's caches to their limit. Returns what the log should say.
pub fn save(dir: &Path, base: &Path, limits: &Limits) -> Option<String> {
    let mut said = None;
    if let (Some(digest), true) = (lock_digest(base), base.join("node_modules").is_dir()) {
        let _ = std::fs::remove_dir_all(dir.join("node_modules"));
        if std::fs::rename(base.join("node_modules"), dir.join("node_modules")).is_ok() {
            let _ = std::fs::write(dir.join(KEY), digest);
            said = Some("Saved node_modules to the site's build cache".to_string());
        }
    }
    let used = dir_size(dir, limits.cache_per_site + 1);
    if used > limits.cache_per_site {
        clear(dir);
        said = Some(format!(
            "The site's build cache passed {} MiB and was cleared",
            limits.cache_per_site >> 20
        ));
    }
    said
}

/// Drops the least recently used sites' caches until all of them fit in `total` bytes.
pub fn trim_all(build_dir: &Path, total: u64) {
    let root = build_dir.join("cache");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    let mut sites: Vec<(std::time::SystemTime, PathBuf, u64)> = entries
        .flatten()
        .map(|e| {
            let path = e.path();
            let used = std::fs::metadata(path.join(KEY))
                .or_else(|_| e.metadata())
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            let size = dir_size(&path, u64::MAX);
            (used, path, size)
        })
        .collect();
    let mut sum: u64 = sites.iter().map(|s| s.2).sum();
    sites.sort_by_key(|s| s.0);
    for (_, path, size) in sites {
        if sum <= total {
            break;
        }
        clear(&path);
        sum -= size;
    }
}

/// Bytes all sites' build caches take, for `doctor`.
pub fn total_size(build_dir: &Path) -> u64 {
    dir_size(&build_dir.join("cache"), u64::MAX)
}
