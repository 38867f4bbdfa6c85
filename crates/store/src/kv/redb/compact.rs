//! A redb file made, and rewritten into a compact copy while the server is stopped.

use super::*;

/// Opens the database file `path`, creating it (in file format 3) if it is missing, with a page
/// cache of `cache_bytes`.
pub(crate) fn create(path: &Path, cache_bytes: u64) -> Result<redb::Database> {
    redb::Database::builder()
        .set_cache_size(cache_bytes as usize)
        .create(path)
        .map_err(to_error)
}

/// The file `compact` builds beside the database (a dot name: backups skip it).
const COMPACTING: &str = ".store.redb.compacting";

/// Records copied per write transaction while compacting.
const COPY_BATCH: usize = 10_000;

/// Rewrites the stopped database file `path` by copying its records, tree by tree in key
/// order, into a new file that then replaces it; returns its size before and after. redb's
/// own compaction moves pages to the front of the file but gives the file back only in halves
/// of its last region, so a file grown by a burst (a backup's snapshot under load, expired
/// tokens) kept its size; a copy written in key order holds the records in leaves three
/// quarters full, whatever order they came in. The new file replaces the old one by a rename
/// only once it is complete and durable, so a crash leaves the old database in place (and a
/// leftover copy, removed by the next open or compaction). The sizes are the bytes on disk:
/// redb grows a file by doubling its length, and the part never written takes no space.
pub fn compact(path: &Path, cache_bytes: u64) -> Result<(u64, u64)> {
    let before = crate::files::on_disk(path);
    let copy = remove_compaction_leftover(path)?;
    {
        let old = redb::Database::builder()
            .set_cache_size(cache_bytes as usize)
            .open(path)
            .map_err(to_error)?;
        let new = create(&copy, cache_bytes)?;
        let read = old.begin_read().map_err(to_error)?;
        for handle in read.list_tables().map_err(to_error)? {
            let name = handle.name().to_string();
            let from = read.open_table(table(&name)).map_err(to_error)?;
            let mut records = from.range(..).map_err(to_error)?.peekable();
            loop {
                let mut tx = new.begin_write().map_err(to_error)?;
                tx.set_durability(Durability::None).map_err(to_error)?;
                {
                    let mut to = tx.open_table(table(&name)).map_err(to_error)?;
                    for kv in records.by_ref().take(COPY_BATCH) {
                        let (k, v) = kv.map_err(to_error)?;
                        to.insert(k.value(), v.value()).map_err(to_error)?;
                    }
                }
                tx.commit().map_err(to_error)?;
                if records.peek().is_none() {
                    break;
                }
            }
        }
        // Durable, with the allocator state saved: the first open after needs no repair.
        let mut tx = new.begin_write().map_err(to_error)?;
        tx.set_quick_repair(true);
        tx.commit().map_err(to_error)?;
    }
    std::fs::rename(&copy, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok((before, crate::files::on_disk(path)))
}

/// Removes what a compaction of the database `path` cut short left behind; returns the path
/// of that copy.
pub fn remove_compaction_leftover(path: &Path) -> Result<std::path::PathBuf> {
    let copy = path.with_file_name(COMPACTING);
    match std::fs::remove_file(&copy) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(copy),
    }
}
