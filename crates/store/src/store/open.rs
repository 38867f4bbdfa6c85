//! Opening a data dir's store: its lock, its engine, its format (and the upgrades from older
//! ones), compaction and checkpoints of a stopped one.

use super::*;

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
pub const DATA_FORMAT: u32 = 9;

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
pub(super) fn open_kv(
    dir: &Path,
    cache_bytes: u64,
    new: Engine,
) -> Result<(crate::kv::Db, std::path::PathBuf), OpenError> {
    Engine::open(dir, cache_bytes, new).map_err(|e| engine_error(dir, e))
}

/// Takes the lock of the data dir `dir` (an advisory lock on `.lock` in it, gone with the
/// process), or `Locked` if another process holds it.
pub(super) fn lock_data_dir(dir: &Path) -> Result<std::fs::File, OpenError> {
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
            encodings: tree("encodings")?,
            encode_queue: tree("encode_queue")?,
            deploy_keys: tree("deploy_keys")?,
            site_repos: tree("site_repos")?,
            build_hooks: tree("build_hooks")?,
            build_hook_sites: tree("build_hook_sites")?,
            builds: tree("builds")?,
            builds_by_site: tree("builds_by_site")?,
            build_queue: tree("build_queue")?,
            build_log: tree("build_log")?,
            env_vars: tree("env_vars")?,
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
        let deploys_to_compress = if format < 9 {
            self.encodings().enqueue_published()?
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
                deploys_to_compress,
                "upgraded the data dir"
            );
        }
        Ok(())
    }
}
