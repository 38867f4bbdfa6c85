//! The audit log: one entry per mutating API call (who, what, when, from where), readable by
//! the operator (all) and by each reseller (its own). Entries never contain secrets or bodies.

use super::{count_of, decode, encode, Store, Want, Window};
use crate::error::StoreResult;
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};
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

/// The audit log's storage, one tree:
///
/// - `e` + sequence (u64, big-endian) -> the encoded entry (everyone's view, oldest first);
/// - `r` + reseller id + `/` + sequence -> empty (each reseller's view, an index into `e`);
/// - `n` -> how many entries there are, `n` + reseller id -> how many a reseller's view has.
///
/// Recording an entry only queues it; the flush thread writes what is queued, numbered, as one
/// atomic sled batch just before each group commit, so a mutating call costs no database write
/// of its own for its entry and the counts always match the entries. The write layer records a
/// call's entry before its flush, so every acknowledged call's entry is in the tree: listings
/// read the tree alone (what is still queued belongs to calls not answered yet).
#[derive(Clone)]
pub(crate) struct AuditLog {
    queued: Arc<Mutex<Vec<AuditEntry>>>,
    /// The next sequence number, held by the one writer at a time.
    writer: Arc<Mutex<u64>>,
    tree: crate::kv::Tree,
}

/// Trees of data formats 1 to 5: one record per entry (format 1), then batches of entries.
const OLD_TREES: [&str; 4] = [
    "audit",
    "audit_by_reseller",
    "audit_batches",
    "audit_batches_by_reseller",
];

/// On PostgreSQL, the next sequence number (see `write_shared`).
const NEXT_KEY: &[u8] = b"s";

fn entry_key(seq: u64) -> Vec<u8> {
    [b"e".as_slice(), &seq.to_be_bytes()].concat()
}

fn view_prefix(reseller_id: Option<&str>) -> Vec<u8> {
    match reseller_id {
        Some(r) => format!("r{r}/").into_bytes(),
        None => b"e".to_vec(),
    }
}

fn count_key(reseller_id: Option<&str>) -> Vec<u8> {
    format!("n{}", reseller_id.unwrap_or_default()).into_bytes()
}

impl AuditLog {
    pub(crate) fn open(db: &crate::kv::Db) -> crate::kv::Result<AuditLog> {
        let tree = db.open_tree("audit_log")?;
        let next = match tree.scan_prefix(b"e").next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                k[1..].try_into().map_or(0, u64::from_be_bytes) + 1
            }
            None => 0,
        };
        Ok(AuditLog {
            queued: Default::default(),
            writer: Arc::new(Mutex::new(next)),
            tree,
        })
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, u64> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the queued entries into the database (not flushed: the caller flushes next).
    /// Callers that record entries meanwhile wait only for the queue swap, not the write.
    pub(crate) fn write_pending(&self) -> StoreResult<()> {
        let mut next = self.writer();
        let batch = std::mem::take(&mut *self.queued());
        if batch.is_empty() {
            return Ok(());
        }
        match self.write(&mut next, &batch, |_| true) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Kept for the next attempt, ahead of what was queued since.
                let mut queued = self.queued();
                let newer = std::mem::take(&mut *queued);
                *queued = batch.into_iter().chain(newer).collect();
                Err(e)
            }
        }
    }

    /// Appends `entries` from sequence `next` on, with the counts, as one atomic batch; an
    /// entry is in its reseller's view if `in_view` says so. The caller holds the writer lock,
    /// so the counts read here cannot move meanwhile.
    fn write<'a>(
        &self,
        next: &mut u64,
        entries: impl IntoIterator<Item = &'a AuditEntry>,
        in_view: impl Fn(&str) -> bool,
    ) -> StoreResult<()> {
        if let crate::kv::Tree::Pg(_) = self.tree {
            *next = self.write_shared(*next, entries, in_view)?;
            return Ok(());
        }
        let mut batch = crate::kv::Batch::default();
        let mut added: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut seq = *next;
        for e in entries {
            batch.insert(entry_key(seq), encode(e));
            *added.entry(count_key(None)).or_default() += 1;
            if let Some(r) = e.reseller_id.as_deref().filter(|r| in_view(r)) {
                let mut key = view_prefix(Some(r));
                key.extend_from_slice(&seq.to_be_bytes());
                batch.insert(key, &[]);
                *added.entry(count_key(Some(r))).or_default() += 1;
            }
            seq += 1;
        }
        for (key, n) in added {
            let now = count_of(self.tree.get(&key)?);
            batch.insert(key, &(now + n).to_be_bytes());
        }
        self.tree.apply_batch(batch)?;
        *next = seq;
        Ok(())
    }

    /// `write` on PostgreSQL, where other nodes append too: the next sequence number is a key
    /// of the tree (`s`; `next`, read at open, until the first write stores it), read and moved
    /// in the same serializable transaction as the entries and the counts, so two nodes never
    /// number two entries alike or lose a count. Returns the next sequence number.
    fn write_shared<'a>(
        &self,
        next: u64,
        entries: impl IntoIterator<Item = &'a AuditEntry>,
        in_view: impl Fn(&str) -> bool,
    ) -> StoreResult<u64> {
        let entries: Vec<&AuditEntry> = entries.into_iter().collect();
        let encoded: Vec<Vec<u8>> = entries.iter().copied().map(encode).collect();
        Ok(self.tree.transaction(|t| {
            let mut seq = t
                .get(NEXT_KEY)?
                .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
                .map_or(next, u64::from_be_bytes);
            let mut added: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (e, bytes) in entries.iter().zip(&encoded) {
                t.insert(entry_key(seq), bytes.as_slice())?;
                *added.entry(count_key(None)).or_default() += 1;
                if let Some(r) = e.reseller_id.as_deref().filter(|r| in_view(r)) {
                    let mut key = view_prefix(Some(r));
                    key.extend_from_slice(&seq.to_be_bytes());
                    t.insert(key, &[])?;
                    *added.entry(count_key(Some(r))).or_default() += 1;
                }
                seq += 1;
            }
            for (key, n) in &added {
                let now = count_of(t.get(key)?);
                t.insert(key.as_slice(), &(now + n).to_be_bytes())?;
            }
            t.insert(NEXT_KEY, &seq.to_be_bytes())?;
            Ok::<_, crate::kv::ConflictableTransactionError<crate::error::StoreError>>(seq)
        })?)
    }

    /// Data format 6: moves the entries of the older trees into `audit_log`, oldest first
    /// (format 1's one-per-record entries, then the batches), a reseller's view holding what
    /// its older view held. Idempotent: a cut-short run starts over, since the older trees are
    /// dropped only once everything is moved.
    pub(crate) fn upgrade(&self, db: &crate::kv::Db) -> StoreResult<usize> {
        let [legacy, legacy_mine, batches, batches_mine] = OLD_TREES.map(|n| db.open_tree(n));
        let (legacy, legacy_mine) = (legacy?, legacy_mine?);
        let (batches, batches_mine) = (batches?, batches_mine?);
        if [&legacy, &legacy_mine, &batches, &batches_mine]
            .iter()
            .all(|t| t.is_empty())
        {
            for name in OLD_TREES {
                db.drop_tree(name)?;
            }
            return Ok(0);
        }
        let mut next = self.writer();
        self.tree.clear()?;
        *next = 0;
        // Whether a reseller's view had an entry: a deleted reseller's view was removed, and
        // the upgrade keeps it so.
        let mut kept: HashSet<String> = HashSet::new();
        for view in [&legacy_mine, &batches_mine] {
            for key in view.iter().keys() {
                let key = key?;
                if let Some(slash) = key.iter().position(|b| *b == b'/') {
                    kept.insert(String::from_utf8_lossy(&key[..slash]).into_owned());
                }
            }
        }
        let mut moved = 0;
        let mut chunk: Vec<AuditEntry> = Vec::with_capacity(MOVE_CHUNK);
        let mut flush = |chunk: &mut Vec<AuditEntry>, next: &mut u64| -> StoreResult<()> {
            self.write(next, chunk.iter(), |r| kept.contains(r))?;
            moved += chunk.len();
            chunk.clear();
            Ok(())
        };
        for kv in legacy.iter().values() {
            chunk.push(decode(&kv?)?);
            if chunk.len() == MOVE_CHUNK {
                flush(&mut chunk, &mut next)?;
            }
        }
        for kv in batches.iter().values() {
            let entries: Vec<AuditEntry> = decode(&kv?)?;
            chunk.extend(entries);
            if chunk.len() >= MOVE_CHUNK {
                flush(&mut chunk, &mut next)?;
            }
        }
        flush(&mut chunk, &mut next)?;
        db.flush()?;
        for name in OLD_TREES {
            db.drop_tree(name)?;
        }
        Ok(moved)
    }
}

/// Entries moved (or forgotten) per batch by the upgrade and by `delete_reseller`.
const MOVE_CHUNK: usize = 10_000;

/// An entry with its position in the log (what a cursor names). Serializes as the entry.
pub struct Listed {
    pub position: Vec<u8>,
    pub entry: AuditEntry,
}

impl Serialize for Listed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entry.serialize(s)
    }
}

impl Audit<'_> {
    /// Queues an entry; see `AuditLog` for when it is written.
    pub fn record(&self, mut entry: AuditEntry) {
        entry.id = new_id();
        self.0.audit_log.queued().push(entry);
    }

    /// One page of the log of one reseller or of everyone, newest first, by offset or by
    /// seeking (O(per_page) at any depth), and how many entries the view holds.
    pub fn window(
        &self,
        reseller_id: Option<&str>,
        want: &Want,
    ) -> StoreResult<(Window<Listed>, usize)> {
        let tree = &self.0.audit_log.tree;
        let total = count_of(tree.get(count_key(reseller_id))?).max(0) as usize;
        let window = super::page_desc(tree, &view_prefix(reseller_id), want)?;
        let mut items = Vec::with_capacity(window.items.len());
        for (position, raw) in &window.items {
            let raw = match reseller_id {
                None => raw.clone(),
                // The view's key names the entry; a missing one cannot be (one batch wrote
                // both) but is skipped rather than failing the page.
                Some(_) => match tree.get([b"e".as_slice(), position].concat())? {
                    Some(raw) => raw,
                    None => continue,
                },
            };
            items.push(Listed {
                position: position.clone(),
                entry: decode(&raw)?,
            });
        }
        Ok((window.holding(items), total))
    }

    /// Forgets a deleted reseller's own view of the log (the operator's view keeps it).
    pub fn delete_reseller(&self, reseller_id: &str) -> StoreResult<()> {
        let log = &self.0.audit_log;
        log.write_pending()?;
        // In chunks, the writer lock held for one chunk at a time, so the flush thread (and
        // with it every write's group commit) never waits for a whole big view to go.
        loop {
            let _writer = log.writer();
            let mut batch = crate::kv::Batch::default();
            let mut n = 0;
            for key in log.tree.scan_prefix(view_prefix(Some(reseller_id))).keys() {
                batch.remove(key?);
                n += 1;
                if n == MOVE_CHUNK {
                    break;
                }
            }
            if n < MOVE_CHUNK {
                batch.remove(count_key(Some(reseller_id)));
                log.tree.apply_batch(batch)?;
                return Ok(());
            }
            log.tree.apply_batch(batch)?;
        }
    }
}
