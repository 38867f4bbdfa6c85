//! The typed store: trees (see `kv`) for entities and indexes behind `store.resellers()`,
//! `store.keys()`, `store.users()`, ... Handlers never see the engine's types.

pub mod audit;
pub mod billing;
pub mod blobs;
pub mod certs;
mod codec;
pub mod deploys;
pub mod domains;
pub mod events;
mod flush;
pub mod forms;
pub mod keys;
pub mod mail;
pub mod migrate;
pub mod pages;
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

/// Why the store could not be opened, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the data directory {0} is in use by another resellerd process (only one may serve it at a time; {0}/server.json names its pid and addresses): stop it first, or use another --data-dir")]
    Locked(String),
    #[error("cannot open the database in {0}: {1}")]
    Other(String, crate::kv::Error),
    #[error("the data directory {0} was written by a newer resellerd (data format {1}; this one reads up to {DATA_FORMAT}): upgrade resellerd or restore a backup")]
    TooNew(String, u32),
    #[error("cannot upgrade the data directory from data format {0}: {1}")]
    Upgrade(u32, StoreError),
    #[error("cannot open the blob store in {0}: {1}")]
    Blobs(String, std::io::Error),
    #[error("{0}")]
    Settings(String),
}

pub use crate::kv::{has_database, Engine};

/// The data dir's format, kept in the `meta` tree. Data dirs from before the marker existed are
/// format 1. Each record also carries its own schema version byte (see `codec`).
///
/// Format 2: a `users_by_reseller` entry holds the user and its token count (format 1 entries
/// are empty, and are still read and converted when next written), and the audit log is stored
/// in batches (format 1 entries are still listed).
///
/// Format 3: the `users_by_uid` index, built from the users when an older dir is opened.
///
/// Format 4: the `user_blobs` index (which content each user has), built from the deploys.
///
/// Format 5: tokens carry an expiry (`token_expiry` indexes it) and each user's token ids are
/// one `user_tokens` entry (replacing the `tokens_by_user` index, built from it); resellers
/// carry the token settings (older records read as the defaults).
///
/// Format 6: the audit log is one `audit_log` tree of numbered entries with a per-reseller
/// index and maintained counts (entries moved from the older trees, which are dropped).
///
/// Format 7: storage per user and site (`storage_refs` and totals in `counters`), counted
/// from the deploys.
///
/// Format 8: records are written in the compact encoding (see `codec`). Older records are read as
/// they are, so the upgrade only marks the dir: an older resellerd could not read the new records.
///
/// Opening an older dir upgrades it and marks it, so an older resellerd refuses it instead of
/// missing new users or index entries.
pub const DATA_FORMAT: u32 = 8;

/// Reads the data format marker: the dir's format (1 when unmarked, as a new dir is), or an
/// error if a newer resellerd wrote it.
fn read_format(meta: &crate::kv::Tree, dir: &Path) -> Result<u32, OpenError> {
    let other = |e| OpenError::Other(dir.display().to_string(), e);
    let format = match meta.get(b"format").map_err(other)? {
        Some(v) => v.as_ref().try_into().map_or(u32::MAX, u32::from_be_bytes),
        None => 1,
    };
    if format > DATA_FORMAT {
        return Err(OpenError::TooNew(dir.display().to_string(), format));
    }
    Ok(format)
}

/// An engine's failure on the data dir `dir` for the operator: another process holding the
/// database (`WouldBlock`, as every embedded engine reports it) is `Locked`.
fn engine_error(dir: &Path, e: crate::kv::Error) -> OpenError {
    match e {
        crate::kv::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
            OpenError::Locked(dir.display().to_string())
        }
        e => OpenError::Other(dir.display().to_string(), e),
    }
}

/// Opens the database of the data dir `dir` (whose lock the caller holds) on the engine it was
/// made with (`new` for a new one); returns it and its path.
fn open_kv(
    dir: &Path,
    cache_bytes: u64,
    new: Engine,
) -> Result<(crate::kv::Db, std::path::PathBuf), OpenError> {
    Engine::open(dir, cache_bytes, new).map_err(|e| engine_error(dir, e))
}

/// Takes the lock of the data dir `dir` (an advisory lock on `.lock` in it, gone with the
/// process), or `Locked` if another process holds it.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, OpenError> {
    use rustix::fs::{flock, FlockOperation};
    let failed = |e: std::io::Error| OpenError::Other(dir.display().to_string(), e.into());
    std::fs::create_dir_all(dir).map_err(failed)?;
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(failed)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(OpenError::Locked(dir.display().to_string())),
        Err(e) => Err(failed(e.into())),
    }
}

impl Store {
    /// Rewrites the database of the stopped data dir `dir` into a new one holding only its live
    /// records, and puts it in place of the old one (see `kv::Engine::compact`); returns the
    /// database's size in bytes before and after.
    pub fn compact(dir: &Path, cache_bytes: u64) -> Result<(u64, u64), OpenError> {
        let _lock = lock_data_dir(dir)?;
        Engine::compact(dir, cache_bytes).map_err(|e| engine_error(dir, e))
    }
}

/// The default page cache: small enough for a 1 GB VM (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_MB: u64 = 64;

impl Store {
    /// Opens the store with the default page cache.
    pub fn open(dir: &Path) -> Result<Store, OpenError> {
        Store::open_with(dir, DEFAULT_CACHE_MB << 20)
    }

    /// Opens the database and closes it again, which brings its recovery snapshot up to date:
    /// sled (0.34) writes that snapshot only when it opens, and otherwise replays, on every
    /// start, the whole log written since the last open (seconds at a million users). `serve`
    /// runs this as it stops, like PostgreSQL's shutdown checkpoint, so a restart is fast; after
    /// a crash the next start replays the log, as it must.
    /// redb needs none: its open reads two pages at any size.
    pub fn checkpoint(dir: &Path, cache_bytes: u64) -> Result<(), OpenError> {
        Engine::checkpoint(dir, cache_bytes).map_err(|e| engine_error(dir, e))
    }

    /// Opens the store with a page cache of `cache_bytes` (a new data dir gets redb).
    pub fn open_with(dir: &Path, cache_bytes: u64) -> Result<Store, OpenError> {
        Store::open_embedded(dir, cache_bytes, Engine::Redb)
    }

    /// Opens the store in the data dir `dir` with a page cache of `cache_bytes`, on the engine
    /// the dir was made with (`new` for a new one).
    pub fn open_embedded(dir: &Path, cache_bytes: u64, new: Engine) -> Result<Store, OpenError> {
        let lock = lock_data_dir(dir)?;
        let (db, path) = open_kv(dir, cache_bytes, new)?;
        Store::open_on(db, dir, &path, lock)
    }

    /// Opens the store on PostgreSQL (`url`, at most `max_connections`); blobs and the other
    /// files stay in the data dir `dir`.
    pub fn open_postgres(
        dir: &Path,
        url: &str,
        max_connections: usize,
    ) -> Result<Store, OpenError> {
        let lock = lock_data_dir(dir)?;
        let db = crate::kv::pg::Db::open(url, max_connections)
            .map_err(|e| OpenError::Other("PostgreSQL".into(), e))?;
        let path = Path::new("PostgreSQL");
        Store::open_on(crate::kv::Db::Pg(db), dir, path, lock)
    }

    /// Opens the store on the database `db` (described by `path` in errors), with its blobs in
    /// the data dir `dir`.
    fn open_on(
        db: crate::kv::Db,
        dir: &Path,
        path: &Path,
        lock: std::fs::File,
    ) -> Result<Store, OpenError> {
        let meta = db
            .open_tree("meta")
            .map_err(|e| OpenError::Other(path.display().to_string(), e))?;
        let format = read_format(&meta, dir)?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| OpenError::Other(path.display().to_string(), e))
        };
        let (hosts, credentials) = (
            Generation::new("hosts", &db),
            Generation::new("credentials", &db),
        );
        let watched = |name: &str, generations: &[&Generation]| {
            tree(name).map(|tree| Watched::new(tree, generations))
        };
        let t = Trees {
            meta: meta.clone(),
            resellers: watched("resellers", &[&hosts, &credentials])?,
            reseller_by_preview: watched("reseller_by_preview", &[&hosts])?,
            keys: watched("keys", &[&credentials])?,
            key_by_hash: watched("key_by_hash", &[&credentials])?,
            reseller_keys: tree("reseller_keys")?,
            users: watched("users", &[&credentials])?,
            user_by_email: tree("user_by_email")?,
            users_by_reseller: watched("users_by_reseller", &[&credentials])?,
            users_by_uid: tree("users_by_uid")?,
            tokens: watched("tokens", &[&credentials])?,
            token_by_hash: watched("token_by_hash", &[&credentials])?,
            user_tokens: tree("user_tokens")?,
            token_expiry: tree("token_expiry")?,
            pages: tree("pages")?,
            domains: watched("domains", &[&hosts])?,
            domain_by_name: watched("domain_by_name", &[&hosts])?,
            domain_by_wp: tree("domain_by_wp")?,
            domains_by_reseller: tree("domains_by_reseller")?,
            traffic: tree("traffic")?,
            counters: tree("counters")?,
            payment_methods: tree("payment_methods")?,
            charges: tree("charges")?,
            charge_by_idempotency_key: tree("charge_by_idempotency_key")?,
            idempotency: tree("idempotency")?,
            bandwidth_blocks: tree("bandwidth_blocks")?,
            domain_checks: tree("domain_checks")?,
            prices: tree("prices")?,
            certificates: tree("certificates")?,
            acme_accounts: tree("acme_accounts")?,
            acme_challenges: tree("acme_challenges")?,
            sites: watched("sites", &[&hosts])?,
            site_by_name: watched("site_by_name", &[&hosts])?,
            sites_by_owner: tree("sites_by_owner")?,
            deploys: watched("deploys", &[&hosts])?,
            deploys_by_site: tree("deploys_by_site")?,
            deploy_files: tree("deploy_files")?,
            deploy_pending: tree("deploy_pending")?,
            deploy_required: tree("deploy_required")?,
            user_blobs: tree("user_blobs")?,
            forms: tree("forms")?,
            form_by_name: tree("form_by_name")?,
            forms_by_site: tree("forms_by_site")?,
            submissions: tree("submissions")?,
            submissions_by_form: tree("submissions_by_form")?,
            signing_keys: tree("signing_keys")?,
            webhooks: tree("webhooks")?,
            events: tree("events")?,
            deliveries: tree("deliveries")?,
            deliveries_by_webhook: tree("deliveries_by_webhook")?,
            delivery_due: tree("delivery_due")?,
            suspensions: watched("suspensions", &[&hosts, &credentials])?,
            plans: tree("plans")?,
            site_usage: tree("site_usage")?,
            plan_settings: tree("plan_settings")?,
            mail_senders: tree("mail_senders")?,
            mail_templates: tree("mail_templates")?,
            mails: tree("mails")?,
            mail_due: tree("mail_due")?,
            storage_refs: tree("storage_refs")?,
            proxy_profiles: tree("proxy_profiles")?,
        };
        let blobs =
            blobs::Blobs::open(dir).map_err(|e| OpenError::Blobs(dir.display().to_string(), e))?;
        let audit_log = audit::AuditLog::open(&db)
            .map_err(|e| OpenError::Other(path.display().to_string(), e))?;
        let pending = audit_log.clone();
        let mut failing = false;
        let flusher = flush::Flusher::start(
            db.clone(),
            Box::new(move || {
                // Logged when it starts failing, not every time it tries again.
                let result = pending.write_pending();
                if let (Err(e), false) = (&result, failing) {
                    tracing::warn!(error = %e, "cannot write the audit log; its entries stay queued");
                }
                failing = result.is_err();
            }),
        );
        let subscriptions = webhooks::Subscriptions::load(&t.webhooks)
            .map_err(|e| OpenError::Upgrade(format, e))?;
        let any_limits = plans::Plans::any_limits_stored(&t.plan_settings)
            .map_err(|e| OpenError::Upgrade(format, e))?;
        let issuer = users::issuer::Issuer::start(&t, &subscriptions);
        let store = Store {
            db,
            flusher,
            issuer,
            audit_log,
            t,
            blobs,
            gc_lock: Default::default(),
            hosts_generation: hosts,
            credentials_generation: credentials,
            write_gate: Default::default(),
            subscriptions,
            domain_creates: Default::default(),
            quota_lock: Default::default(),
            map_locks: std::sync::Arc::new(std::array::from_fn(|_| Default::default())),
            hooks: Default::default(),
            _dir_lock: std::sync::Arc::new(lock),
            any_limits: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(any_limits)),
        };
        store.listen_to_other_nodes();
        if format < DATA_FORMAT {
            store
                .upgrade(&meta, format, store.db.was_recovered())
                .map_err(|e| OpenError::Upgrade(format, e))?;
        }
        Ok(store)
    }

    /// Brings an older data dir up to `DATA_FORMAT`, then marks it. The marker is written after
    /// the work it stands for, and a cut-short upgrade runs again on the next start.
    /// A new data dir (`existing` false) only gets the marker.
    fn upgrade(&self, meta: &crate::kv::Tree, format: u32, existing: bool) -> StoreResult<()> {
        // Each step is idempotent and runs only for the formats before it.
        let indexed = if format < 3 {
            self.users().build_uid_index()?
        } else {
            0
        };
        let digests = if format < 4 {
            self.deploys().build_user_blobs()?
        } else {
            0
        };
        let tokens = self.users().build_token_lists()?;
        let audit_entries = if format < 6 {
            self.audit_log.upgrade(&self.db)?
        } else {
            0
        };
        let deploys_counted = if format < 7 {
            self.storage().rebuild()?
        } else {
            0
        };
        meta.insert(b"format", &DATA_FORMAT.to_be_bytes())?;
        self.db.flush()?;
        if existing {
            tracing::info!(
                format = DATA_FORMAT,
                users_with_uid = indexed,
                user_digests = digests,
                tokens,
                audit_entries,
                deploys_counted,
                "upgraded the data dir"
            );
        }
        Ok(())
    }

    /// The lock of one deploy's file map (see `map_locks`).
    pub(crate) fn map_lock(&self, deploy_id: &str) -> StoreResult<Held<MutexGuard<'_, ()>>> {
        let (local, key) = self.map_stripe(deploy_id);
        self.held(local, &[(key, false)])
    }

    /// The lock of one deploy's file map, and blob GC kept off (see `blobs_in_use`), together
    /// (one lock connection for both on PostgreSQL).
    pub(crate) fn map_lock_and_blobs(
        &self,
        deploy_id: &str,
    ) -> StoreResult<Held<(MutexGuard<'_, ()>, std::sync::RwLockReadGuard<'_, ()>)>> {
        let (map, key) = self.map_stripe(deploy_id);
        let gc = self.gc_lock.read().unwrap_or_else(|e| e.into_inner());
        self.held((map, gc), &[(key, false), (lock_key::GC, true)])
    }

    /// The local lock of `deploy_id`'s stripe and the key of its cluster lock.
    fn map_stripe(&self, deploy_id: &str) -> (MutexGuard<'_, ()>, i64) {
        // FNV-1a, not the std hasher: every node must pick the same stripe.
        let stripe = deploy_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) % 64;
        let local = self.map_locks[stripe as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (local, lock_key::MAP_STRIPES + stripe as i64)
    }

    /// Serialises the creates a plan limits by a count (see `quota_lock`).
    pub(crate) fn quota_guard(&self) -> StoreResult<Held<MutexGuard<'_, ()>>> {
        let local = self.quota_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.held(local, &[(lock_key::QUOTA, false)])
    }

    /// Serialises domain registrations (see `domain_creates`).
    pub(crate) fn domain_creates_guard(&self) -> StoreResult<Held<MutexGuard<'_, ()>>> {
        let local = self
            .domain_creates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.held(local, &[(lock_key::DOMAIN_CREATES, false)])
    }

    /// `local`, and on PostgreSQL the cluster-wide locks `keys` (key, shared) as well: the
    /// in-process lock keeps this node's threads in line, the advisory locks the other nodes.
    /// A caller holds one `Held` at a time (take locks needed together in one call).
    fn held<G>(&self, local: G, keys: &[(i64, bool)]) -> StoreResult<Held<G>> {
        let cluster = self.db.cluster_lock(keys)?;
        Ok(Held {
            _cluster: cluster,
            _local: local,
        })
    }

    /// Waits until every write made so far is durable. Call before answering a mutating request.
    pub async fn flush(&self) -> StoreResult<()> {
        self.flusher.flush().await
    }

    /// Synchronous flush, for shutdown.
    pub fn flush_blocking(&self) -> StoreResult<()> {
        self.audit_log.write_pending()?;
        self.db.flush().map(|_| ()).map_err(StoreError::from)
    }

    /// The current generation of host-relevant data (see `hosts_generation`).
    pub fn hosts_generation(&self) -> u64 {
        self.hosts_generation.get()
    }

    /// The current generation of credential-relevant data (see `credentials_generation`).
    pub fn credentials_generation(&self) -> u64 {
        self.credentials_generation.get()
    }

    /// Blocks blob GC while the guard lives (see `gc_lock`), on every node.
    pub fn blobs_in_use(&self) -> StoreResult<Held<std::sync::RwLockReadGuard<'_, ()>>> {
        let local = self.gc_lock.read().unwrap_or_else(|e| e.into_inner());
        self.held(local, &[(lock_key::GC, true)])
    }

    /// The value every node uses for the secret `name` (the edge's signing secret, the operator
    /// token's hash): embedded, `local` (the data dir's own file); on PostgreSQL, the one in the
    /// database, which the first node to start stored from its own `local`.
    pub fn cluster_secret(&self, name: &str, local: &[u8]) -> StoreResult<Vec<u8>> {
        if !self.is_shared() {
            return Ok(local.to_vec());
        }
        Ok(
            match self
                .t
                .meta
                .compare_and_swap(secret_key(name), None::<&[u8]>, Some(local))?
            {
                Ok(()) => local.to_vec(),
                Err(e) => e.current.map(|v| v.to_vec()).unwrap_or_default(),
            },
        )
    }

    /// The secret `name` as the database holds it now (`None` embedded or if none was stored).
    pub fn stored_cluster_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        if !self.is_shared() {
            return Ok(None);
        }
        Ok(self.t.meta.get(secret_key(name))?.map(|v| v.to_vec()))
    }

    /// Replaces the secret `name` every node uses (nothing embedded).
    pub fn set_cluster_secret(&self, name: &str, value: &[u8]) -> StoreResult<()> {
        if self.is_shared() {
            self.t.meta.insert(secret_key(name), value)?;
        }
        Ok(())
    }

    /// Replaces the secret `name` every node on the PostgreSQL database `url` uses, while
    /// they run (`resellerd operator-token --database-url`).
    pub fn set_cluster_secret_at(url: &str, name: &str, value: &[u8]) -> StoreResult<()> {
        let meta = crate::kv::pg::Db::open(url, 2)?.open_tree(b"meta")?;
        meta.insert(&secret_key(name), value.into())?;
        Ok(())
    }

    /// True if this process runs the background work (outboxes, verification, renewals,
    /// sweeps, blob GC): always when embedded; on PostgreSQL, the node holding the leader lease.
    pub fn is_leader(&self) -> bool {
        self.db.is_leader()
    }

    /// Waits for the next tick of `tick` at which this node leads: the beat of a sweep that
    /// runs once in a cluster.
    pub(crate) async fn next_leading_tick(&self, tick: &mut tokio::time::Interval) {
        loop {
            tick.tick().await;
            if self.is_leader() {
                return;
            }
        }
    }

    /// A tick every `interval` that waits, rather than bursts, after a slow round.
    pub(crate) fn sweep_interval(interval: std::time::Duration) -> tokio::time::Interval {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    /// Tells the other nodes on this database that `topic` changed; each runs what it
    /// registered for it with `on_announcement`. Nothing when embedded.
    pub fn announce(&self, topic: &str) {
        self.db.announce(&[topic]);
    }

    /// Runs `f` whenever another node announces `topic`, and whenever this node may have
    /// missed announcements (it lost its listening connection); `f` says whether it caught up.
    pub fn on_announcement(&self, topic: &str, f: impl Fn() -> bool + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((topic.to_string(), std::sync::Arc::new(f)));
    }

    /// On PostgreSQL, hears the other nodes' announcements for as long as the store is open:
    /// bumps the generations they name first (cheap, and what keeps credentials and hosts
    /// right), then reads the webhook subscriptions or the limits again and runs the hooks
    /// registered for the rest, once per batch. Says whether everything caught up (if not, the
    /// node stops trusting its caches and starts over).
    fn listen_to_other_nodes(&self) {
        let (hosts, credentials) = (
            self.hosts_generation.clone(),
            self.credentials_generation.clone(),
        );
        let (subscriptions, endpoints) = (self.subscriptions.clone(), self.t.webhooks.clone());
        let (any_limits, settings) = (self.any_limits.clone(), self.t.plan_settings.clone());
        let hooks = self.hooks.clone();
        if self.is_shared() {
            // The backstop for an announcement that never left (its node killed between the
            // commit and the notice): no cached credential or host outlives `CACHE_EXPIRY`.
            let generations = [hosts.clone(), credentials.clone()];
            let spawned = std::thread::Builder::new()
                .name("cache-expiry".into())
                .spawn(move || loop {
                    std::thread::sleep(CACHE_EXPIRY);
                    generations.iter().for_each(Generation::bump);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the cache expiry");
            }
        }
        self.db.listen(move |topics| {
            let is = |name: &str| topics.is_none_or(|t| t.contains(&name));
            for generation in [&hosts, &credentials] {
                if is(generation.name) {
                    generation.bump();
                }
            }
            let mut caught_up = true;
            let reloaded = match topics {
                None => subscriptions.reload(&endpoints),
                Some(topics) => topics
                    .iter()
                    .filter_map(|t| t.strip_prefix(webhooks::SUBSCRIPTIONS_TOPIC))
                    .try_for_each(|reseller_id| subscriptions.reload_one(&endpoints, reseller_id)),
            };
            if let Err(e) = reloaded {
                tracing::warn!(error = %e, "cannot read the webhook subscriptions again");
                caught_up = false;
            }
            if is(plans::LIMITS_TOPIC) {
                // On a failed read, assume limits: a read per issue instead of a missed limit.
                let any = plans::Plans::any_limits_stored(&settings).unwrap_or(true);
                any_limits.store(any, std::sync::atomic::Ordering::Release);
            }
            let registered: Vec<_> = hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (name, f) in registered {
                if is(&name) {
                    caught_up &= f();
                }
            }
            caught_up
        });
    }

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

/// Where a page of a keyset-paged list starts (keys are index keys after the tenant's prefix,
/// i.e. entity ids, which are time-ordered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seek {
    First,
    /// The page after this key.
    After(Vec<u8>),
    /// The page before this key.
    Before(Vec<u8>),
    Last,
}

/// What a list handler fetches: by offset (Netlify's `page=`) or from a cursor.
#[derive(Clone, Debug)]
pub enum Want {
    /// Skip `offset` items: O(offset).
    Offset { offset: usize, limit: usize },
    /// Seek to a position: O(limit).
    Keyset { seek: Seek, limit: usize },
}

impl Want {
    pub fn limit(&self) -> usize {
        match self {
            Want::Offset { limit, .. } | Want::Keyset { limit, .. } => *limit,
        }
    }
}

/// One page of a list, in key order, and whether anything lies before or after it.
#[derive(Debug)]
pub struct Window<T> {
    pub items: Vec<T>,
    pub before: bool,
    pub after: bool,
}

impl<T> Window<T> {
    /// This window's place in the list, holding `items` (what its entries were read into).
    pub fn holding<U>(&self, items: Vec<U>) -> Window<U> {
        Window {
            items,
            before: self.before,
            after: self.after,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Window<U> {
        Window {
            items: self.items.into_iter().map(f).collect(),
            before: self.before,
            after: self.after,
        }
    }

    /// The window of an in-memory list already in key order (ascending, or descending if
    /// `desc`): small lists kept whole.
    pub fn of_sorted(
        items: Vec<T>,
        key: impl Fn(&T) -> &[u8],
        desc: bool,
        seek: &Seek,
        limit: usize,
    ) -> Self {
        let n = items.len();
        // True while an item comes before position `k` (or is at it, with `at`).
        let ahead = |i: &T, k: &[u8], at: bool| {
            let o = key(i).cmp(k);
            let o = if desc { o.reverse() } else { o };
            o.is_lt() || (at && o.is_eq())
        };
        let (start, end) = match seek {
            Seek::First => (0, limit.min(n)),
            Seek::Last => (n.saturating_sub(limit), n),
            Seek::After(k) => {
                let start = items.partition_point(|i| ahead(i, k, true));
                (start, (start + limit).min(n))
            }
            Seek::Before(k) => {
                let end = items.partition_point(|i| ahead(i, k, false));
                (end.saturating_sub(limit), end)
            }
        };
        let items: Vec<T> = items.into_iter().skip(start).take(end - start).collect();
        Window {
            items,
            before: start > 0,
            after: end < n,
        }
    }
}

/// One page of the entries of `tree` under `prefix`, as (key after the prefix, value), by
/// offset or by seeking (see `window`).
pub(crate) fn page(
    tree: &crate::kv::Tree,
    prefix: &[u8],
    want: &Want,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    match want {
        Want::Keyset { seek, limit } => window(tree, prefix, seek, *limit),
        Want::Offset { offset, limit } => {
            by_offset(tree.scan_prefix(prefix), prefix, *offset, *limit)
        }
    }
}

/// The `limit` entries of `entries` (under `prefix`, in the order given) after the first
/// `offset`, as (key after the prefix, value).
fn by_offset(
    entries: impl Iterator<Item = crate::kv::Result<(crate::kv::IVec, crate::kv::IVec)>>,
    prefix: &[u8],
    offset: usize,
    limit: usize,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    let items = entries
        .skip(offset)
        .take(limit)
        .map(|r| r.map(|(k, v)| (k[prefix.len()..].to_vec(), v)))
        .collect::<crate::kv::Result<Vec<_>>>()?;
    Ok(Window {
        items,
        before: offset > 0,
        after: false,
    })
}

/// `page`, greatest key (newest, for time-ordered keys) first: a cursor's `After` is toward
/// smaller keys.
pub(crate) fn page_desc(
    tree: &crate::kv::Tree,
    prefix: &[u8],
    want: &Want,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    match want {
        Want::Keyset { seek, limit } => {
            let ascending = match seek {
                Seek::First => Seek::Last,
                Seek::Last => Seek::First,
                Seek::After(k) => Seek::Before(k.clone()),
                Seek::Before(k) => Seek::After(k.clone()),
            };
            let w = window(tree, prefix, &ascending, *limit)?;
            let mut items = w.items;
            items.reverse();
            Ok(Window {
                items,
                before: w.after,
                after: w.before,
            })
        }
        Want::Offset { offset, limit } => {
            by_offset(tree.scan_prefix(prefix).rev(), prefix, *offset, *limit)
        }
    }
}

/// One page of the entries of `tree` under `prefix`, as (key after the prefix, value): at most
/// `limit`, found by seeking, so a page costs O(limit + log n) at any depth.
pub(crate) fn window(
    tree: &crate::kv::Tree,
    prefix: &[u8],
    seek: &Seek,
    limit: usize,
) -> StoreResult<Window<(Vec<u8>, crate::kv::IVec)>> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let end = match crate::kv::prefix_end(prefix) {
        Some(e) => Excluded(e),
        None => Unbounded,
    };
    let start = Included(prefix.to_vec());
    let at = |k: &[u8]| [prefix, k].concat();
    let strip = |(k, v): (crate::kv::IVec, crate::kv::IVec)| (k[prefix.len()..].to_vec(), v);
    let take =
        |iter: &mut dyn Iterator<Item = crate::kv::Result<(crate::kv::IVec, crate::kv::IVec)>>| {
            iter.take(limit + 1)
                .map(|r| r.map(strip))
                .collect::<crate::kv::Result<Vec<_>>>()
        };
    let (mut items, before, after, backwards) = match seek {
        Seek::First => {
            let items = take(&mut tree.range((start, end)))?;
            let after = items.len() > limit;
            (items, false, after, false)
        }
        Seek::Last => {
            let items = take(&mut tree.range((start, end)).rev())?;
            let before = items.len() > limit;
            (items, before, false, true)
        }
        Seek::After(k) => {
            let from = at(k);
            let items = take(&mut tree.range((Excluded(from.clone()), end)))?;
            let after = items.len() > limit;
            let before = tree.range((start, Included(from))).next_back().is_some();
            (items, before, after, false)
        }
        Seek::Before(k) => {
            let to = at(k);
            let items = take(&mut tree.range((start, Excluded(to.clone()))).rev())?;
            let before = items.len() > limit;
            let after = tree.range((Included(to), end)).next().is_some();
            (items, before, after, true)
        }
    };
    items.truncate(limit);
    if backwards {
        items.reverse();
    }
    Ok(Window {
        items,
        before,
        after,
    })
}
