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
    queue: Arc<Mutex<Vec<AuditEntry>>>,
    db: sled::Db,
    /// big-endian batch sequence -> encoded Vec of entries (everyone's)
    batches: sled::Tree,
    /// "reseller_id/" + big-endian batch sequence -> encoded Vec of that reseller's entries
    batches_by_reseller: sled::Tree,
    /// Entries written one per record before batching (read, never written).
    legacy: sled::Tree,
    legacy_by_reseller: sled::Tree,
}

impl AuditLog {
    pub(crate) fn open(db: &sled::Db) -> sled::Result<AuditLog> {
        Ok(AuditLog {
            queue: Default::default(),
            db: db.clone(),
            batches: db.open_tree("audit_batches")?,
            batches_by_reseller: db.open_tree("audit_batches_by_reseller")?,
            legacy: db.open_tree("audit")?,
            legacy_by_reseller: db.open_tree("audit_by_reseller")?,
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the queued entries into the database (not flushed: the caller flushes next).
    pub(crate) fn write_pending(&self) -> ApiResult<()> {
        // Held while writing, so a reader never finds an entry in neither place.
        let mut queue = self.queue();
        for chunk in queue.chunks(MAX_BATCH) {
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
        queue.clear();
        Ok(())
    }
}

impl Audit<'_> {
    /// Queues an entry; see `AuditLog` for when it is written.
    pub fn record(&self, mut entry: AuditEntry) {
        entry.id = new_id();
        self.0.audit_log.queue().push(entry);
    }

    /// The newest `limit` entries, of one reseller or of everyone.
    pub fn recent(&self, reseller_id: Option<&str>, limit: usize) -> ApiResult<Vec<AuditEntry>> {
        let log = &self.0.audit_log;
        let mine = |e: &AuditEntry| reseller_id.is_none_or(|r| e.reseller_id.as_deref() == Some(r));
        let queued: Vec<AuditEntry> = log.queue().iter().filter(|e| mine(e)).cloned().collect();
        // The flush thread may store queued entries while this reads; skip those seen already.
        let seen: HashSet<String> = queued.iter().map(|e| e.id.clone()).collect();
        let mut out: Vec<AuditEntry> = queued.into_iter().rev().take(limit).collect();
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
