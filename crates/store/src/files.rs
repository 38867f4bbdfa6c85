//! Files written so that a crash never leaves half of one: private (mode 0600/0700), written to a
//! temp file, synced, renamed into place, and the directory synced. The operator token, the edge
//! secret, the TLS key, blobs and backups all go through here. Also: a directory's size.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Creates a directory (and its parents) readable by its owner only; an existing one is left as
/// it is. The data dir holds customer data and secrets.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates (or truncates) `path` with `mode`.
pub fn create_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
}

/// Makes `file`, written at `tmp`, durable as `dest`: synced, renamed, its directory synced.
pub fn persist(file: &File, tmp: &Path, dest: &Path) -> std::io::Result<()> {
    file.sync_all()?;
    std::fs::rename(tmp, dest)?;
    File::open(parent_dir(dest))?.sync_all()
}

/// The directory `path` is in: `.` for a bare file name (whose `parent()` is empty).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes` atomically, readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let result = create_with_mode(&tmp, 0o600).and_then(|mut f| {
        f.write_all(bytes)?;
        persist(&f, &tmp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The bytes the file `path` takes on disk (0 if it cannot be read): less than its length where
/// it has holes, as a redb file grown by doubling its length has.
pub fn on_disk(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Bytes of every file under `dir` (0 for what cannot be read).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
    }
}
