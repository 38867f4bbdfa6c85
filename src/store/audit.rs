//! The audit log: one entry per mutating API call (who, what, when, from where), readable by
//! the operator (all) and by each reseller (its own). Entries never contain secrets or bodies.

use super::{decode, encode, Store};
use crate::error::{ApiError, ApiResult};
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub at: Timestamp,
    pub actor_kind: String,
    pub actor_id: String,
    pub reseller_id: Option<String>,
    pub method: String,
    /// The route pattern, e.g. `/api/v1/keys/{id}`.
    pub route: String,
    pub path: String,
    pub status: u16,
    pub ip: Option<String>,
}

pub struct Audit<'a>(&'a Store);

impl Store {
    pub fn audit(&self) -> Audit<'_> {
        Audit(self)
    }
}

/// Entries per stored batch, at most.
const MAX_BATCH: usize = 1000;

/// The audit log's storage. Recording an entry only queues it; the flush thread writes what is
/// queued as one batch record (plus one per reseller in it) just before each group commit, so
/// a mutating call costs no database write of its own for its audit entry. Entries are durable
/// with the flush after the call's own, or within `Flusher`'s idle interval.
#[derive(Clone)]
pub(crate) struct AuditLog {
    pending: Arc<Mutex<Pending>>,
    /// Held by `write_pending` throughout, so one writer at a time moves entries.
    writer: Arc<Mutex<()>>,
    db: sled::Db,
    /// big-endian batch sequence -> encoded Vec of entries (everyone's)
    batches: sled::Tree,
    /// "reseller_id/" + big-endian batch sequence -> encoded Vec of that reseller's entries
    batches_by_reseller: sled::Tree,
    /// Entries written one per record before batching (read, never written).
    legacy: sled::Tree,
    legacy_by_reseller: sled::Tree,
}

/// Entries not in the database yet: queued, and the batch being written (older). An entry is
/// always in one of the two or in the database, so readers miss none.
#[derive(Default)]
struct Pending {
    queued: Vec<AuditEntry>,
    writing: Arc<Vec<AuditEntry>>,
}

impl AuditLog {
    pub(crate) fn open(db: &sled::Db) -> sled::Result<AuditLog> {
        Ok(AuditLog {
            pending: Default::default(),
            writer: Default::default(),
            db: db.clone(),
            batches: db.open_tree("audit_batches")?,
            batches_by_reseller: db.open_tree("audit_batches_by_reseller")?,
            legacy: db.open_tree("audit")?,
            legacy_by_reseller: db.open_tree("audit_by_reseller")?,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the queued entries into the database (not flushed: the caller flushes next).
    /// Callers that record entries meanwhile wait only for the queue swap, not the write.
    pub(crate) fn write_pending(&self) -> ApiResult<()> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let batch = {
            let mut pending = self.pending();
            if pending.queued.is_empty() {
                return Ok(());
            }
            let batch = Arc::new(std::mem::take(&mut pending.queued));
            pending.writing = batch.clone();
            batch
        };
        let written = self.write(&batch);
        let mut pending = self.pending();
        pending.writing = Default::default();
        if written.is_err() {
            // Kept for the next attempt, ahead of what was queued since.
            let newer = std::mem::take(&mut pending.queued);
            pending.queued = batch.iter().cloned().chain(newer).collect();
        }
        written
    }

    fn write(&self, entries: &[AuditEntry]) -> ApiResult<()> {
        for chunk in entries.chunks(MAX_BATCH) {
            let seq = self.db.generate_id()?.to_be_bytes();
            let mut by_reseller: BTreeMap<&str, Vec<&AuditEntry>> = BTreeMap::new();
            for e in chunk {
                if let Some(r) = &e.reseller_id {
                    by_reseller.entry(r).or_default().push(e);
                }
            }
            (&self.batches, &self.batches_by_reseller).transaction(|(all, mine)| {
                all.insert(&seq[..], encode(&chunk))?;
                for (r, entries) in &by_reseller {
                    let mut key = format!("{r}/").into_bytes();
                    key.extend_from_slice(&seq);
                    mine.insert(key, encode(entries))?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<ApiError>>(())
            })?;
        }
        Ok(())
    }
}

impl Audit<'_> {
    /// Queues an entry; see `AuditLog` for when it is written.
    pub fn record(&self, mut entry: AuditEntry) {
        entry.id = new_id();
        self.0.audit_log.pending().queued.push(entry);
    }

    /// The newest `limit` entries, of one reseller or of everyone.
    pub fn recent(&self, reseller_id: Option<&str>, limit: usize) -> ApiResult<Vec<AuditEntry>> {
        let log = &self.0.audit_log;
        let mine = |e: &AuditEntry| reseller_id.is_none_or(|r| e.reseller_id.as_deref() == Some(r));
        let unwritten: Vec<AuditEntry> = {
            let pending = log.pending();
            let older = pending.writing.iter();
            older
                .chain(&pending.queued)
                .filter(|e| mine(e))
                .cloned()
                .collect()
        };
        // The flush thread may store those while this reads; skip the ones seen already.
        let seen: HashSet<String> = unwritten.iter().map(|e| e.id.clone()).collect();
        let mut out: Vec<AuditEntry> = unwritten.into_iter().rev().take(limit).collect();
        let scan = |tree: &sled::Tree| match reseller_id {
            Some(r) => tree.scan_prefix(format!("{r}/").as_bytes()),
            None => tree.iter(),
        };
        let batches = match reseller_id {
            Some(_) => &log.batches_by_reseller,
            None => &log.batches,
        };
        for kv in scan(batches).rev() {
            if out.len() >= limit {
                return Ok(out);
            }
            let batch: Vec<AuditEntry> = decode(&kv?.1)?;
            out.extend(
                batch
                    .into_iter()
                    .rev()
                    .filter(|e| !seen.contains(&e.id))
                    .take(limit - out.len()),
            );
        }
        let legacy = match reseller_id {
            Some(_) => &log.legacy_by_reseller,
            None => &log.legacy,
        };
        for kv in scan(legacy).rev() {
            if out.len() >= limit {
                break;
            }
            out.push(decode(&kv?.1)?);
        }
        Ok(out)
    }

    /// Forgets a deleted reseller's own view of the log (the operator's view keeps it).
    pub fn delete_reseller(&self, reseller_id: &str) -> ApiResult<()> {
        let log = &self.0.audit_log;
        log.write_pending()?;
        for tree in [&log.batches_by_reseller, &log.legacy_by_reseller] {
            for key in tree
                .scan_prefix(format!("{reseller_id}/").as_bytes())
                .keys()
            {
                tree.remove(key?)?;
            }
        }
        Ok(())
    }
}
