//! The typed store: trees (see `kv`) for entities and indexes behind `store.resellers()`,
//! `store.keys()`, `store.users()`, ... Handlers never see the engine's types.

pub mod audit;
pub mod billing;
pub mod blobs;
pub mod builds;
pub mod certs;
mod cluster;
mod codec;
pub mod deploys;
pub mod domains;
pub mod encodings;
pub mod env;
pub mod events;
mod flush;
pub mod forms;
pub mod keys;
pub mod mail;
pub mod migrate;
mod open;
pub mod pages;
mod paging;
pub mod plans;
pub mod proxy;
pub mod records;
pub mod remote;
pub mod resellers;
pub mod signing;
pub mod sites;
pub mod storage;
pub mod suspensions;
pub mod traffic;
pub mod usage;
pub mod users;
mod watched;
pub mod webhooks;

pub use crate::kv::redb::FILE as REDB_FILE;
pub use crate::kv::Tree;
pub use codec::{decode, encode};
pub use flush::{FLUSHES, FLUSH_MICROS};
pub use sites::sweep_unreferenced_forever as files_sweeper;
pub use users::tokens::sweep_forever as tokens_sweeper;

use crate::error::{StoreError, StoreResult};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::MutexGuard;
use watched::{Generation, Watched};

pub use crate::kv::{has_database, Engine};
pub use open::{OpenError, DATA_FORMAT, DEFAULT_CACHE_MB};
pub use paging::*;

/// On PostgreSQL, how long a cached credential or host lookup may be used at most, whatever was
/// announced (see `Store::listen_to_other_nodes`).
const CACHE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the `meta` tree keeps the cluster's secret `name`.
fn secret_key(name: &str) -> Vec<u8> {
    format!("secret/{name}").into_bytes()
}

/// The 8-byte big-endian time then the id: the sender's queue order.
pub(crate) fn due_key(at: crate::model::Timestamp, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&(at.0.max(0) as u64).to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// Keys of the advisory locks that stand for the store's in-process locks on PostgreSQL.
mod lock_key {
    const BASE: i64 = 0x7265_7365_6c6c_6600;
    pub const QUOTA: i64 = BASE + 1;
    pub const DOMAIN_CREATES: i64 = BASE + 2;
    pub const GC: i64 = BASE + 3;
    pub const MAP_STRIPES: i64 = BASE + 0x100;
}

/// A lock held in this process and, on PostgreSQL, on every node (see `Store::held`).
pub struct Held<G> {
    _cluster: Option<crate::kv::pg::AdvisoryLock>,
    _local: G,
}

/// What `Store::on_announcement` registered: a topic and what to run.
type Hooks =
    std::sync::Arc<std::sync::Mutex<Vec<(String, std::sync::Arc<dyn Fn() -> bool + Send + Sync>)>>>;

#[derive(Clone)]
pub struct Store {
    db: crate::kv::Db,
    flusher: flush::Flusher,
    issuer: users::issuer::Issuer,
    audit_log: audit::AuditLog,
    pub(crate) t: Trees,
    pub blobs: blobs::Blobs,
    /// Held for reading while a deploy decides which blobs it can reuse and records them, and
    /// for writing by blob GC, so GC never deletes a blob a new deploy just counted on.
    gc_lock: std::sync::Arc<std::sync::RwLock<()>>,
    /// Bumped by every write to a tree that decides which site a host serves or how (sites,
    /// deploys, domains, resellers: their `Watched` trees), so the edge can cache host lookups
    /// and drop them at once.
    hosts_generation: Generation,
    /// Bumped by every write to a tree a credential resolves through (keys, resellers, users,
    /// tokens), so the credential cache (`auth::cache`) can do the same.
    credentials_generation: Generation,
    /// Held for reading by every mutating API request while it runs and for writing by a backup
    /// while it dumps the trees, so a backup never sees half of a request's writes.
    write_gate: std::sync::Arc<tokio::sync::RwLock<()>>,
    /// Which event types each reseller's webhook endpoints listen to (see `webhooks`).
    subscriptions: webhooks::Subscriptions,
    /// Serialises domain registrations, whose pending-domain limit is a count, not a key.
    domain_creates: std::sync::Arc<std::sync::Mutex<()>>,
    /// Serialises the creates a plan limits by a count (sites), between counting and writing.
    quota_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// Whether the operator has set limits for any reseller (see `Plans::reseller_limits`).
    any_limits: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The data dir's lock, held while the store is open: one server per data dir, whichever
    /// database holds its records (its blobs, secrets and TLS material are its own).
    _dir_lock: std::sync::Arc<std::fs::File>,
    /// Serialise the changes to one deploy's file map (a PUT of the map, an upload), striped
    /// by deploy id: the storage counts read the old map and write the new one.
    map_locks: std::sync::Arc<[std::sync::Mutex<()>; 64]>,
    /// What runs when another node announces a topic (see `on_announcement`).
    hooks: Hooks,
}

/// Every tree, opened once. Index trees map a lookup key to an entity id.
#[derive(Clone)]
pub(crate) struct Trees {
    /// the data format, and the cluster's secrets (`secret_key`)
    pub meta: crate::kv::Tree,
    pub resellers: Watched,
    /// preview domain -> reseller id
    pub reseller_by_preview: Watched,
    pub keys: Watched,
    /// SHA-256 of the secret -> key id
    pub key_by_hash: Watched,
    /// reseller id -> encoded Vec of its key ids (the 6-key limit is checked against it)
    pub reseller_keys: crate::kv::Tree,
    pub users: Watched,
    /// "reseller_id/email" -> user id
    pub user_by_email: crate::kv::Tree,
    /// "reseller_id/user_id" -> a copy of the user record (empty in entries written before)
    pub users_by_reseller: Watched,
    /// "reseller_id/uid\0user_id" -> ()
    pub users_by_uid: crate::kv::Tree,
    pub tokens: Watched,
    /// SHA-256 of the secret -> token id
    pub token_by_hash: Watched,
    /// user id -> encoded Vec of its token ids, oldest first (the per-user cap pops the front)
    pub user_tokens: crate::kv::Tree,
    /// 8-byte big-endian expires_at + token id -> () (the sweeper's queue)
    pub token_expiry: crate::kv::Tree,
    /// "reseller_id/kind" -> HTML
    pub pages: crate::kv::Tree,
    pub domains: Watched,
    /// domain name -> domain id (unique on the whole instance)
    pub domain_by_name: Watched,
    /// SHA-256 of the WordPress key -> domain id
    pub domain_by_wp: crate::kv::Tree,
    /// "reseller_id/domain_id" -> ()
    pub domains_by_reseller: crate::kv::Tree,
    /// domain id -> traffic totals and daily series
    pub traffic: crate::kv::Tree,
    /// "users/reseller_id" -> i64 count, kept in the same transactions as the records
    pub counters: crate::kv::Tree,
    /// "reseller_id/id" -> payment method
    pub payment_methods: crate::kv::Tree,
    /// "reseller_id/id" -> charge
    pub charges: crate::kv::Tree,
    /// "reseller_id/idempotency key" -> charge id (written before data format 9; read by nothing)
    pub charge_by_idempotency_key: crate::kv::Tree,
    /// "reseller_id/action/idempotency key" -> the paid action's request digest and answer
    pub idempotency: crate::kv::Tree,
    /// "reseller_id/user_id" -> the month (`YYYY-MM`) a user's sites are blocked for bandwidth
    pub bandwidth_blocks: crate::kv::Tree,
    /// domain id -> why its last check did not verify it
    pub domain_checks: crate::kv::Tree,
    /// reseller id -> prices
    pub prices: crate::kv::Tree,
    /// domain -> ACME certificate record
    pub certificates: crate::kv::Tree,
    /// ACME directory URL -> account credentials
    pub acme_accounts: crate::kv::Tree,
    /// HTTP-01 token -> (domain, key authorization), while an order waits for the CA
    pub acme_challenges: crate::kv::Tree,
    pub sites: Watched,
    /// site name -> site id (names are unique on the whole instance)
    pub site_by_name: Watched,
    /// "reseller_id/user_id/site_id" -> ()
    pub sites_by_owner: crate::kv::Tree,
    pub deploys: Watched,
    /// "site_id/deploy_id" -> ()
    pub deploys_by_site: crate::kv::Tree,
    /// "deploy_id/path" -> SHA-1 hex
    pub deploy_files: crate::kv::Tree,
    /// "deploy_id/sha1" -> () for each required digest not uploaded yet
    pub deploy_pending: crate::kv::Tree,
    /// original SHA-1 -> its precompressed variants' digests (see `encodings`)
    pub encodings: crate::kv::Tree,
    /// deploy id -> () while its files wait to be compressed
    pub encode_queue: crate::kv::Tree,
    /// "reseller_id/id" -> deploy key (see `builds`)
    pub deploy_keys: crate::kv::Tree,
    /// site id -> its linked repository
    pub site_repos: crate::kv::Tree,
    /// "site_id/id" -> build hook
    pub build_hooks: crate::kv::Tree,
    /// build hook id -> site id
    pub build_hook_sites: crate::kv::Tree,
    /// build id -> build
    pub builds: crate::kv::Tree,
    /// "site_id/build_id" -> ()
    pub builds_by_site: crate::kv::Tree,
    /// 8-byte created_at + build id -> () while a build waits
    pub build_queue: crate::kv::Tree,
    /// "build_id/" + 4-byte line number -> log line
    pub build_log: crate::kv::Tree,
    /// "reseller_id/user_id/site_id or */KEY" -> environment variable (see `env`)
    pub env_vars: crate::kv::Tree,
    /// deploy_id -> encoded Vec of the digests the client was asked for
    pub deploy_required: crate::kv::Tree,
    /// "user_id/sha1" -> () for content the user uploaded or deployed (content addressing
    /// never crosses users)
    pub user_blobs: crate::kv::Tree,
    pub forms: crate::kv::Tree,
    /// "site_id/form name" -> form id
    pub form_by_name: crate::kv::Tree,
    /// "site_id/form_id" -> ()
    pub forms_by_site: crate::kv::Tree,
    pub submissions: crate::kv::Tree,
    /// "form_id/submission_id" -> ()
    pub submissions_by_form: crate::kv::Tree,
    /// reseller id -> encoded Vec of its signing keys (at most 6)
    pub signing_keys: crate::kv::Tree,
    /// "reseller_id/webhook_id" -> endpoint
    pub webhooks: crate::kv::Tree,
    /// event id -> event not yet fanned out to deliveries (written with the change it tells of)
    pub events: crate::kv::Tree,
    /// delivery id -> delivery
    pub deliveries: crate::kv::Tree,
    /// "webhook_id/delivery_id" -> ()
    pub deliveries_by_webhook: crate::kv::Tree,
    /// 8-byte big-endian due time + delivery id -> () (the sender's queue)
    pub delivery_due: crate::kv::Tree,
    /// "reseller/YYYY-MM/user/site/YYYY-MM-DD" -> that day's requests and bytes (usage)
    pub site_usage: crate::kv::Tree,
    /// "reseller_id/plan_id" -> plan
    pub plans: crate::kv::Tree,
    /// "default/reseller_id" and "user/reseller_id/user_id" -> plan id; "limits/reseller_id" ->
    /// the operator's limits on the reseller
    pub plan_settings: crate::kv::Tree,
    /// "reseller_id/user_id" -> why and since when the user is suspended
    pub suspensions: Watched,
    /// reseller id -> its notification sender and its DNS verification
    pub mail_senders: crate::kv::Tree,
    /// "reseller_id/kind" -> template HTML
    pub mail_templates: crate::kv::Tree,
    /// mail id -> mail (the outbox)
    pub mails: crate::kv::Tree,
    /// 8-byte big-endian due time + mail id -> () (the mail sender's queue)
    pub mail_due: crate::kv::Tree,
    /// "u/user_id/sha" and "s/site_id/sha" -> how many of the owner's deploys name the digest
    /// and its bytes (totals in `counters`; see `storage`)
    pub storage_refs: crate::kv::Tree,
    /// "reseller_id/id" -> proxy profile
    pub proxy_profiles: crate::kv::Tree,
}

impl Store {
    /// The gate mutating requests pass through (see `write_gate`).
    pub fn write_gate(&self) -> std::sync::Arc<tokio::sync::RwLock<()>> {
        self.write_gate.clone()
    }

    /// Every tree as it is at one moment, read while writes go on (see `kv::Db::dump`): the
    /// audit entries still queued are written first. `hold` returns a guard under which no write
    /// is half done (the write gate); `scratch` is a directory for what the engine must spill.
    pub fn dump<G>(&self, scratch: &Path, hold: impl Fn() -> G) -> StoreResult<crate::kv::Dump> {
        self.audit_log.write_pending()?;
        self.db.dump(scratch, hold).map_err(|e| match e {
            crate::kv::Error::Unsupported(why) => StoreError::InvalidRequest(why),
            e => e.into(),
        })
    }

    /// Refused (`InvalidRequest`, saying what to use instead) if this store cannot be dumped.
    pub fn check_dump(&self) -> StoreResult<()> {
        match self.db.is_shared() {
            true => Err(StoreError::InvalidRequest(crate::kv::pg::NO_DUMP.into())),
            false => Ok(()),
        }
    }

    /// Which engine holds the records: `redb`, `sled` or `postgresql`.
    pub fn engine(&self) -> &'static str {
        self.db.engine()
    }

    /// True if other processes share this store (PostgreSQL): secrets every node uses are kept
    /// in it, and caches hear the other nodes' changes.
    pub fn is_shared(&self) -> bool {
        self.db.is_shared()
    }

    /// On redb: (bytes of keys and values, bytes of allocated pages).
    pub fn redb_stats(&self) -> Option<crate::kv::Result<(u64, u64)>> {
        match &self.db {
            crate::kv::Db::Redb(db) => Some(db.stats()),
            _ => None,
        }
    }

    /// True if the database answers reads; used by `/readyz`.
    pub fn is_ready(&self) -> bool {
        self.db.get(b"readyz").is_ok()
    }

    /// True since a flush failed (a full disk, an I/O error), until one succeeds again.
    pub fn is_failed(&self) -> bool {
        self.flusher.refusal().is_some()
    }

    /// What a write gets while the store is failed (507 for a full disk, else 503).
    pub fn refusal(&self) -> Option<StoreError> {
        self.flusher.refusal()
    }

    /// Writes and flushes a marker, to learn whether a failed store can write again.
    pub async fn probe_write(&self) -> StoreResult<()> {
        self.db
            .insert(b"probe", &crate::model::Timestamp::now().0.to_be_bytes())?;
        self.flush().await
    }
}

pub(crate) fn get<T: DeserializeOwned>(
    tree: &crate::kv::Tree,
    key: &str,
) -> StoreResult<Option<T>> {
    tree.get(key.as_bytes())?.map(|v| decode(&v)).transpose()
}

/// Stores `value` under `key`, or removes the key for `None`.
pub(crate) fn put_or_remove(
    tree: &crate::kv::Tree,
    key: &str,
    value: Option<&str>,
) -> StoreResult<()> {
    match value {
        Some(v) => tree.insert(key.as_bytes(), v.as_bytes())?,
        None => tree.remove(key.as_bytes())?,
    };
    Ok(())
}

/// The ids stored under `prefix/` in an index tree, in key (= creation) order.
pub(crate) fn ids_under(tree: &crate::kv::Tree, prefix: &str) -> StoreResult<Vec<String>> {
    let prefix = format!("{prefix}/");
    tree.scan_prefix(prefix.as_bytes())
        .keys()
        .map(|k| {
            let k = k?;
            Ok(String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
        })
        .collect()
}

/// Every record of a tree whose ids are listed in `ids`, skipping ids whose record is gone.
pub(crate) fn load_all<T: DeserializeOwned>(
    tree: &crate::kv::Tree,
    ids: &[String],
) -> StoreResult<Vec<T>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = get(tree, id)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// A big-endian i64 counter of the `counters` tree (0 when absent).
pub(crate) fn count_of(raw: Option<crate::kv::IVec>) -> i64 {
    raw.and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, i64::from_be_bytes)
}

/// Adds `delta` to a big-endian i64 counter inside a transaction.
pub(crate) fn bump(
    tree: &crate::kv::TransactionalTree,
    key: &str,
    delta: i64,
) -> crate::kv::ConflictableTransactionResult<(), StoreError> {
    let now = count_of(tree.get(key.as_bytes())?);
    tree.insert(key.as_bytes(), &(now + delta).to_be_bytes())?;
    Ok(())
}

/// Shorthand for aborting a sled transaction with an error.
pub(crate) fn abort<T, E>(e: E) -> crate::kv::ConflictableTransactionResult<T, E> {
    Err(crate::kv::ConflictableTransactionError::Abort(e))
}
