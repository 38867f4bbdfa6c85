//! `resellerd backup`: a running server's backup fetched over its API (or a stopped data dir's
//! written directly) into a file that appears complete or not at all.

use super::*;

/// Why `resellerd backup` did not write a backup, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} holds no resellerd data", .0.display())]
    NoData(PathBuf),
    #[error(transparent)]
    Open(crate::store::OpenError),
    #[error("cannot {what} {}", .path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another backup is writing {} now: wait for it, or write elsewhere", .0.display())]
    Busy(PathBuf),
    #[error(
        "the backup may need up to {needed_mib} MiB (the size of {}) but {} has {free_mib} MiB \
         free; free space or write it elsewhere",
        .data_dir.display(),
        .at.display()
    )]
    NoRoom {
        needed_mib: u64,
        data_dir: PathBuf,
        at: PathBuf,
        free_mib: u64,
    },
    #[error(
        "the data dir is in use but {} is missing: is a resellerd server running on it?",
        .0.display()
    )]
    NoServer(PathBuf),
    #[error("{} has no http address", .0.display())]
    NoAddress(PathBuf),
    #[error("no operator token: pass --token or RESELLERD_OPERATOR_TOKEN")]
    NoToken(#[source] io::Error),
    #[error("cannot reach the server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the server answered {status}: {body}")]
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("download interrupted")]
    Interrupted(#[source] reqwest::Error),
    #[error("download incomplete: {got} of {expected} bytes")]
    Incomplete { got: u64, expected: u64 },
    #[error("cannot write the archive")]
    Archive(#[source] io::Error),
}

impl BackupError {
    fn file(what: &'static str, path: &Path, source: io::Error) -> BackupError {
        BackupError::File {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `resellerd backup`: writes a backup of `data_dir` to `out` (via a temp file renamed into place
/// once complete and synced). Opens the store itself when no server runs; otherwise asks the
/// running server (found through `<data-dir>/server.json`) with the operator token. Returns the
/// size written.
pub fn save(data_dir: &Path, out: &Path, token: Option<String>) -> Result<u64, BackupError> {
    if !crate::store::has_database(data_dir) {
        return Err(BackupError::NoData(data_dir.to_path_buf()));
    }
    check_room(data_dir, out)?;
    let tmp = partial_path(out);
    let file = claim_partial(&tmp)?;
    let written = match crate::startup::open_data_dir(data_dir) {
        Ok(store) => write(&store, data_dir, file, None)
            .and_then(finish)
            .map_err(BackupError::Archive),
        Err(crate::store::OpenError::Locked(_)) => fetch(data_dir, token, file),
        Err(e) => Err(BackupError::Open(e)),
    };
    let written = written.and_then(|n| {
        File::open(&tmp)
            .and_then(|f| crate::files::persist(&f, &tmp, out))
            .map_err(|e| BackupError::file("write", out, e))?;
        Ok(n)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Opens the partial file of a backup, locked: a second backup to the same file is refused
/// while the first runs, and what a killed one left (its lock went with it) is started over.
fn claim_partial(tmp: &Path) -> Result<BufWriter<File>, BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| BackupError::file("create", tmp, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| BackupError::Busy(tmp.to_path_buf()))?;
    file.set_len(0)
        .map_err(|e| BackupError::file("truncate", tmp, e))?;
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
fn check_room(data_dir: &Path, out: &Path) -> Result<(), BackupError> {
    let needed = crate::files::dir_size(data_dir);
    let parent = crate::files::parent_dir(out);
    let (free, _) = crate::disk::space(parent)
        .map_err(|e| BackupError::file("read free space of", parent, e))?;
    if needed > free {
        return Err(BackupError::NoRoom {
            needed_mib: needed >> 20,
            data_dir: data_dir.to_path_buf(),
            at: parent.to_path_buf(),
            free_mib: free >> 20,
        });
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
fn fetch(
    data_dir: &Path,
    token: Option<String>,
    mut file: BufWriter<File>,
) -> Result<u64, BackupError> {
    let about_path = data_dir.join("server.json");
    let about: serde_json::Value = std::fs::read(&about_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| BackupError::NoServer(about_path.clone()))?;
    let mut addr: std::net::SocketAddr = about["http"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| BackupError::NoAddress(about_path.clone()))?;
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
            .map_err(BackupError::NoToken)?,
    };
    let url = format!("http://{addr}/api/v1/admin/backup");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BackupError::Archive)?;
    rt.block_on(async move {
        let mut resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|source| BackupError::Unreachable {
                url: url.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(BackupError::Refused { status, body });
        }
        let expected = resp.content_length();
        let mut unsynced = 0;
        while let Some(chunk) = resp.chunk().await.map_err(BackupError::Interrupted)? {
            file.write_all(&chunk).map_err(BackupError::Archive)?;
            // Written out a few MiB at a time: on the server's own disk, a backup's worth of
            // dirty pages written back at once stalls the server's fsyncs behind it.
            unsynced += chunk.len();
            if unsynced >= SYNC_EVERY {
                file.flush()
                    .and_then(|_| file.get_ref().sync_data())
                    .map_err(BackupError::Archive)?;
                unsynced = 0;
            }
        }
        let n = finish(file).map_err(BackupError::Archive)?;
        match expected {
            Some(len) if len != n => Err(BackupError::Incomplete {
                got: n,
                expected: len,
            }),
            _ => Ok(n),
        }
    })
}
