//! `resellerd restore`: an archive unpacked into a new or empty data dir, checked as it goes;
//! a restore that fails or is killed leaves the directory as it found it.

use super::*;

/// What a restore brought back.
pub struct Restored {
    pub trees: usize,
    pub records: u64,
    pub files: u64,
}

/// The longest key and value a restore accepts (the store's records are far smaller), and the
/// bytes of records it batches before writing them.
const MAX_KEY: usize = 1 << 20;
const MAX_VALUE: usize = 64 << 20;
const BATCH_BYTES: usize = 64 << 20;
/// Free space a restore leaves on the filesystem beyond what it writes.
const RESTORE_MARGIN: u64 = 64 << 20;

/// Restores a backup into `data_dir`, which must be missing or empty. Nothing in the archive is
/// trusted: only regular files and directories are taken, keys and values are capped, the
/// archive must fit in the free space (`archive_len`, when known) and every file as it comes,
/// and a restore that fails leaves the directory as it found it.
pub fn restore(
    input: impl Read,
    data_dir: &Path,
    archive_len: Option<u64>,
) -> io::Result<Restored> {
    let marker = data_dir.join(RESTORING);
    // A restore that was killed left its marker: the dir was empty when it began, so what is
    // in it now is that restore's, to clear before running again.
    if marker.exists() {
        clear_dir(data_dir)?;
    }
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is not empty: restore only into a new or empty directory",
                data_dir.display()
            ),
        ));
    }
    let existed = data_dir.exists();
    crate::create_private_dir(data_dir)?;
    // In place (a mount point or a symlinked state dir stays what it is), marked until done: a
    // server refuses a marked dir, and the database file gets its name last.
    let result = crate::files::write_private(&marker, b"a restore is writing this directory\n")
        .and_then(|_| restore_into(input, data_dir, archive_len))
        .and_then(|restored| {
            std::fs::remove_file(&marker)?;
            File::open(data_dir)?.sync_all()?;
            Ok(restored)
        });
    if result.is_err() {
        // Nothing of a failed restore stays: the directory as it was (empty, or gone).
        let cleaned = match existed {
            true => clear_dir(data_dir),
            false => std::fs::remove_dir_all(data_dir),
        };
        if let Err(e) = cleaned {
            tracing::warn!(error = %e, dir = %data_dir.display(), "cannot clean up after a failed restore");
        }
    }
    result
}

/// The marker of a restore under way (or killed) in a data dir.
pub const RESTORING: &str = ".restore-incomplete";

/// Removes everything in `dir`, keeping the directory.
fn clear_dir(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        match e.file_type()?.is_dir() {
            true => std::fs::remove_dir_all(e.path())?,
            false => std::fs::remove_file(e.path())?,
        }
    }
    Ok(())
}

/// Refuses to write `bytes` more into `dir` when that would leave less than the margin free.
fn check_free(dir: &Path, bytes: u64) -> io::Result<()> {
    let (free, _) = crate::disk::space(dir)?;
    if free < bytes.saturating_add(RESTORE_MARGIN) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{} has {} MiB free; the backup needs about {} MiB more: free some space or restore elsewhere",
                dir.display(),
                free >> 20,
                (bytes + RESTORE_MARGIN) >> 20
            ),
        ));
    }
    Ok(())
}

fn restore_into(
    input: impl Read,
    data_dir: &Path,
    archive_len: Option<u64>,
) -> io::Result<Restored> {
    if let Some(len) = archive_len {
        check_free(data_dir, len)?;
    }
    let db_path = data_dir.join(format!(".{}.restoring", crate::store::REDB_FILE));
    let db = crate::kv::Engine::create_file(&db_path, crate::store::DEFAULT_CACHE_MB << 20)
        .map_err(io::Error::other)?;
    let mut archive = tar::Archive::new(BufReader::new(input));
    let mut done = Restored {
        trees: 0,
        records: 0,
        files: 0,
    };
    let mut saw_manifest = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let path_str = path.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(invalid(format!(
                "entry {path_str} in backup is not a regular file ({kind:?}): not a resellerd backup"
            )));
        }
        if path_str == MANIFEST {
            let mut text = Vec::new();
            entry.by_ref().take(1 << 20).read_to_end(&mut text)?;
            let m: Manifest = serde_json::from_slice(&text)
                .map_err(|e| invalid(format!("bad backup manifest: {e}")))?;
            if m.format > FORMAT {
                return Err(invalid(format!(
                    "backup format {} is newer than this resellerd understands ({FORMAT}); \
                     restore with resellerd {} or later",
                    m.format, m.resellerd
                )));
            }
            saw_manifest = true;
            continue;
        }
        if !saw_manifest {
            return Err(invalid("not a resellerd backup (no manifest first)"));
        }
        let size = entry.header().size()?;
        if archive_len.is_none_or(|len| size > len) {
            check_free(data_dir, size)?;
        }
        let rel = safe_relative(&path)?;
        let mut parts = rel.iter();
        let top = parts.next().and_then(|p| p.to_str()).unwrap_or_default();
        let rest: PathBuf = parts.collect();
        match top {
            "db" => {
                let name = rest.to_string_lossy().into_owned();
                let tree = db.open_tree(name.as_bytes()).map_err(io::Error::other)?;
                done.records += load_tree(&mut entry.by_ref().take(size), &tree)?;
                done.trees += 1;
            }
            "blobs" | "files" => {
                let dest = if top == "blobs" {
                    data_dir.join("blobs").join(&rest)
                } else {
                    data_dir.join(&rest)
                };
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mode = entry.header().mode().unwrap_or(0o600) & 0o700;
                let mut f = create_with_mode(&dest, mode)?;
                let copied = io::copy(&mut entry.by_ref().take(size), &mut f)?;
                if copied != size {
                    return Err(invalid(format!("entry {path_str} in backup is truncated")));
                }
                f.flush()?;
                f.get_ref().sync_all()?;
                done.files += 1;
            }
            other => return Err(invalid(format!("unexpected entry {other:?} in backup"))),
        }
    }
    if !saw_manifest {
        return Err(invalid("not a resellerd backup (empty)"));
    }
    db.flush().map_err(io::Error::other)?;
    drop(db);
    // The database gets its name last: a data dir is one only once everything is in it.
    let db_file = data_dir.join(crate::store::REDB_FILE);
    std::fs::rename(&db_path, &db_file)?;
    File::open(data_dir)?.sync_all()?;
    Ok(done)
}

fn create_with_mode(path: &Path, mode: u32) -> io::Result<BufWriter<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.max(0o600))
        .open(path)?;
    Ok(BufWriter::new(f))
}

/// Reads length-prefixed key/value pairs into `tree`; returns how many.
fn load_tree(input: &mut impl Read, tree: &crate::kv::Tree) -> io::Result<u64> {
    let mut count = 0;
    let (mut batch, mut bytes) = (crate::kv::Batch::default(), 0);
    while let Some(key) = read_part(input, true, MAX_KEY)? {
        let value =
            read_part(input, false, MAX_VALUE)?.ok_or_else(|| invalid("truncated record"))?;
        bytes += key.len() + value.len();
        batch.insert(key, value);
        count += 1;
        if count % 10_000 == 0 || bytes >= BATCH_BYTES {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(io::Error::other)?;
            bytes = 0;
        }
    }
    tree.apply_batch(batch).map_err(io::Error::other)?;
    Ok(count)
}

/// One length-prefixed part of at most `max` bytes; `None` at a clean end of input when
/// `at_start`.
fn read_part(input: &mut impl Read, at_start: bool, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = input.read(&mut len[got..])?;
        if n == 0 {
            return if got == 0 && at_start {
                Ok(None)
            } else {
                Err(invalid("truncated record"))
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!(
            "a record in the backup declares {len} bytes, more than any record holds ({max}): not a resellerd backup"
        )));
    }
    let mut buf = Vec::new();
    input.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(invalid("truncated record"));
    }
    Ok(Some(buf))
}

/// A path inside the archive, refused if it could escape the target directory.
fn safe_relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(invalid(format!("unsafe path {} in backup", path.display()))),
        }
    }
    if out.components().count() < 2 {
        return Err(invalid(format!(
            "unexpected entry {} in backup",
            path.display()
        )));
    }
    Ok(out)
}
