//! `resellerd backup`: a running server's backup fetched over its API (or a stopped data dir's
//! written directly) into a file that appears complete or not at all.

use super::*;

/// `resellerd backup`: writes a backup of `data_dir` to `out` (via a temp file renamed into place
/// once complete and synced). Opens the store itself when no server runs; otherwise asks the
/// running server (found through `<data-dir>/server.json`) with the operator token. Returns the
/// size written.
pub fn save(data_dir: &Path, out: &Path, token: Option<String>) -> Result<u64, String> {
    if !crate::store::has_database(data_dir) {
        return Err(format!("{} holds no resellerd data", data_dir.display()));
    }
    check_room(data_dir, out)?;
    let tmp = partial_path(out);
    let file = claim_partial(&tmp)?;
    let written = match crate::startup::open_data_dir(data_dir) {
        Ok(store) => write(&store, data_dir, file, None)
            .and_then(finish)
            .map_err(|e| e.to_string()),
        Err(crate::store::OpenError::Locked(_)) => fetch(data_dir, token, file),
        Err(e) => Err(e.to_string()),
    };
    let written = written.and_then(|n| {
        File::open(&tmp)
            .and_then(|f| crate::files::persist(&f, &tmp, out))
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        Ok(n)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Opens the partial file of a backup, locked: a second backup to the same file is refused
/// while the first runs, and what a killed one left (its lock went with it) is started over.
fn claim_partial(tmp: &Path) -> Result<BufWriter<File>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            format!(
                "another backup is writing {} now: wait for it, or write elsewhere",
                tmp.display()
            )
        },
    )?;
    file.set_len(0)
        .map_err(|e| format!("cannot truncate {}: {e}", tmp.display()))?;
    Ok(BufWriter::new(file))
}

/// Where a backup to `out` is written until it is complete (then renamed to `out`).
pub fn partial_path(out: &Path) -> PathBuf {
    out.with_file_name(format!(
        ".{}.partial",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("backup")
    ))
}

/// Refuses to start a backup that would not fit where it goes: the database and blob files are
/// an upper bound of its size (a backup holds their live data).
fn check_room(data_dir: &Path, out: &Path) -> Result<(), String> {
    let needed = crate::files::dir_size(data_dir);
    let parent = crate::files::parent_dir(out);
    let (free, _) = crate::disk::space(parent)
        .map_err(|e| format!("cannot read free space of {}: {e}", parent.display()))?;
    if needed > free {
        return Err(format!(
            "the backup may need up to {} MiB (the size of {}) but {} has {} MiB free; free space or write it elsewhere",
            needed >> 20,
            data_dir.display(),
            parent.display(),
            free >> 20
        ));
    }
    Ok(())
}

/// Flushes and syncs a finished backup file; returns its size.
fn finish(mut f: BufWriter<File>) -> io::Result<u64> {
    f.flush()?;
    let f = f.get_ref();
    f.sync_all()?;
    Ok(f.metadata()?.len())
}

/// How many bytes `fetch` writes between two syncs of the backup file.
const SYNC_EVERY: usize = 8 << 20;

/// Downloads a snapshot from the server running on `data_dir`.
fn fetch(data_dir: &Path, token: Option<String>, mut file: BufWriter<File>) -> Result<u64, String> {
    let about_path = data_dir.join("server.json");
    let about: serde_json::Value = std::fs::read(&about_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            format!(
                "the data dir is in use but {} is missing: is a resellerd server running on it?",
                about_path.display()
            )
        })?;
    let mut addr: std::net::SocketAddr = about["http"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{} has no http address", about_path.display()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let token = match token {
        Some(t) => t,
        None => std::fs::read_to_string(crate::auth::operator::token_path(data_dir))
            .map(|t| t.trim().to_string())
            .map_err(|e| {
                format!("no operator token: pass --token or RESELLERD_OPERATOR_TOKEN ({e})")
            })?,
    };
    let url = format!("http://{addr}/api/v1/admin/backup");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the server at {url}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("the server answered {status}: {body}"));
        }
        let expected = resp.content_length();
        let mut unsynced = 0;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("download interrupted: {e}"))?
        {
            file.write_all(&chunk).map_err(|e| e.to_string())?;
            // Written out a few MiB at a time: on the server's own disk, a backup's worth of
            // dirty pages written back at once stalls the server's fsyncs behind it.
            unsynced += chunk.len();
            if unsynced >= SYNC_EVERY {
                file.flush()
                    .and_then(|_| file.get_ref().sync_data())
                    .map_err(|e| e.to_string())?;
                unsynced = 0;
            }
        }
        let n = finish(file).map_err(|e| e.to_string())?;
        match expected {
            Some(len) if len != n => Err(format!("download incomplete: {n} of {len} bytes")),
            _ => Ok(n),
        }
    })
}
