//! One settings struct for `serve`: defaults <- TOML file (`--config`) <- `RESELLERD_*` env <- flags.
//! Every field is optional here; the accessors apply the defaults.

use clap::Args;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Args, Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with any of these settings (flags and env vars override it)
    #[arg(long, env = "RESELLERD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Directory for the database, blobs, certificates and the operator token [default: ./data]
    #[arg(long, env = "RESELLERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// HTTP listen address [default: 127.0.0.1:8080]
    #[arg(long, env = "RESELLERD_HTTP_ADDR")]
    pub http_addr: Option<String>,

    /// HTTPS listen address [default: 127.0.0.1:8443]
    #[arg(long, env = "RESELLERD_HTTPS_ADDR")]
    pub https_addr: Option<String>,

    /// PEM certificate chain for HTTPS (else a self-signed certificate is made and kept in the data dir)
    #[arg(long, env = "RESELLERD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(long, env = "RESELLERD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-For is trusted for the client IP
    #[arg(long, env = "RESELLERD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpNet>>,

    /// Largest accepted JSON or HTML request body, in bytes [default: 1048576]
    #[arg(long, env = "RESELLERD_MAX_BODY")]
    pub max_body: Option<usize>,

    /// Log format: text (lines for people), json (one JSON object a line) or auto (text on a
    /// terminal, JSON otherwise, as under systemd) [default: auto]
    #[arg(long, env = "RESELLERD_LOG_FORMAT")]
    pub log_format: Option<String>,

    /// Access lines, one per answered request: log (with the server's log), off, or a file PATH
    /// of their own, rotated daily (PATH.YYYY-MM-DD) [default: log]
    #[arg(long, env = "RESELLERD_ACCESS_LOG")]
    pub access_log: Option<String>,

    /// Access line format: json, or combined (Apache's virtual-host combined format, for log
    /// analyzers such as GoAccess; needs --access-log PATH) [default: json]
    #[arg(long, env = "RESELLERD_ACCESS_LOG_FORMAT")]
    pub access_log_format: Option<String>,

    /// HTTP worker threads [default: number of CPUs; with --database-url 8 per CPU, since each
    /// waits on PostgreSQL's answers]
    #[arg(long, env = "RESELLERD_WORKERS")]
    pub workers: Option<usize>,

    /// Preview domain for resellers that set none: site NAME is served at NAME.<this> [default: localhost]
    #[arg(long, env = "RESELLERD_DEFAULT_PREVIEW_DOMAIN")]
    pub default_preview_domain: Option<String>,

    /// Largest uploaded file or zip deploy body, in bytes [default: 104857600]
    #[arg(long, env = "RESELLERD_MAX_UPLOAD")]
    pub max_upload: Option<usize>,

    /// Most files in one deploy [default: 25000]
    #[arg(long, env = "RESELLERD_MAX_DEPLOY_FILES")]
    pub max_deploy_files: Option<usize>,

    /// Largest total uncompressed size of a zip deploy, in bytes [default: 536870912]
    #[arg(long, env = "RESELLERD_MAX_DEPLOY_BYTES")]
    pub max_deploy_bytes: Option<u64>,

    /// Seconds a client has to send a request's head before it gets 408 and is disconnected
    /// (slowloris protection) [default: 10]
    #[arg(long, env = "RESELLERD_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,

    /// Most connections open at once, across all workers; more wait to be accepted [default: 10000]
    #[arg(long, env = "RESELLERD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// API requests per second per client IP, bursts of twice that; 0 disables [default: 500]
    #[arg(long, env = "RESELLERD_RATE_LIMIT_IP")]
    pub rate_limit_ip: Option<f64>,

    /// API requests per second per credential, bursts of twice that; 0 disables [default: 250]
    #[arg(long, env = "RESELLERD_RATE_LIMIT_CREDENTIAL")]
    pub rate_limit_credential: Option<f64>,

    /// Failed authentications per minute per client IP before 429; 0 disables [default: 30]
    #[arg(long, env = "RESELLERD_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: Option<f64>,

    /// Host names the API, panel and /metrics answer on (comma-separated), besides loopback
    /// names and IP literals; no site can take them, and other hosts that are not a site's get
    /// the "No site here" page [default: unset: loopback names and IP literals only]
    #[arg(long, env = "RESELLERD_API_HOST", value_delimiter = ',')]
    pub api_host: Option<Vec<String>>,

    /// Seconds a client has to send a JSON, HTML or form body (a slower one gets 408) [default: 30]
    #[arg(long, env = "RESELLERD_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,

    /// Seconds a client has to send an uploaded file or zip deploy [default: 600]
    #[arg(long, env = "RESELLERD_UPLOAD_TIMEOUT")]
    pub upload_timeout: Option<u64>,

    /// Form submissions per minute from one client IP (IPv6 by /64); 0 disables [default: 20]
    #[arg(long, env = "RESELLERD_FORM_RATE_IP")]
    pub form_rate_ip: Option<f64>,

    /// Form submissions per minute to one site; 0 disables [default: 300]
    #[arg(long, env = "RESELLERD_FORM_RATE_SITE")]
    pub form_rate_site: Option<f64>,

    /// Most stored submissions per form; more are refused until some are deleted [default: 10000]
    #[arg(long, env = "RESELLERD_MAX_SUBMISSIONS_PER_FORM")]
    pub max_submissions_per_form: Option<u64>,

    /// Free bytes to keep on the data dir's filesystem: below it, writes get 507 [default: 2 % of
    /// the filesystem or 256 MiB, whichever is smaller]
    #[arg(long, env = "RESELLERD_DISK_RESERVE")]
    pub disk_reserve: Option<u64>,

    /// Let webhooks and proxy profiles reach loopback, private and link-local addresses (tests,
    /// LANs) [default: false]
    #[arg(long, env = "RESELLERD_ALLOW_PRIVATE_TARGETS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_targets: Option<bool>,

    /// Keep site files on an S3-compatible object store (one node's, until nodes share a database):
    /// s3://bucket?endpoint=http://host:port&region=… (credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY); the data dir's blobs become this node's cache [default: unset, the
    /// data dir holds them]
    #[arg(long, env = "RESELLERD_BLOB_STORE")]
    pub blob_store: Option<String>,

    /// PostgreSQL for the records instead of the embedded database in the data dir
    /// (postgres://user:password@host:port/database); the schema is created and migrated at
    /// start [default: unset, the embedded database]
    #[arg(long, env = "RESELLERD_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most connections to PostgreSQL this server opens [default: the workers + 8]
    #[arg(long, env = "RESELLERD_DATABASE_CONNECTIONS")]
    pub database_connections: Option<usize>,

    /// Seconds an unreferenced site file stays (in the data dir or the object store) before the
    /// periodic sweep deletes it (a request or another node may be recording a deploy that
    /// names it); the sweep runs as often, at most hourly [default: 3600]
    #[arg(long, env = "RESELLERD_BLOB_GC_GRACE")]
    pub blob_gc_grace: Option<u64>,

    /// Seconds a deploy may wait for its files (state new or prepared) before it expires,
    /// failing and freeing what it uploaded [default: 86400]
    #[arg(long, env = "RESELLERD_DEPLOY_EXPIRY")]
    pub deploy_expiry: Option<u64>,

    /// Where builds run and their caches are kept. When the server runs as root, builds run as
    /// users of their own, so this directory and its parents must be searchable by others
    /// (o+x) [default: <data dir>/builds, or as root /var/lib/resellerd-builds/<a digest of the
    /// data dir's path>]
    #[arg(long, env = "RESELLERD_BUILD_DIR")]
    pub build_dir: Option<PathBuf>,

    /// Builds from git that run at once; 0 turns builds off [default: 1]
    #[arg(long, env = "RESELLERD_BUILD_CONCURRENCY")]
    pub build_concurrency: Option<usize>,

    /// Seconds a build may run before every process of it is killed [default: 900]
    #[arg(long, env = "RESELLERD_BUILD_TIMEOUT")]
    pub build_timeout: Option<u64>,

    /// MiB of memory each process of a build may allocate [default: 2048]
    #[arg(long, env = "RESELLERD_BUILD_MEMORY_MB")]
    pub build_memory_mb: Option<u64>,

    /// Processes (and threads) a build may run at once [default: 512]
    #[arg(long, env = "RESELLERD_BUILD_PROCESSES")]
    pub build_processes: Option<u64>,

    /// MiB a build's checkout, output and temp files may take [default: 2048]
    #[arg(long, env = "RESELLERD_BUILD_DISK_MB")]
    pub build_disk_mb: Option<u64>,

    /// MiB of dependency caches kept per site between builds [default: 1024]
    #[arg(long, env = "RESELLERD_BUILD_CACHE_MB")]
    pub build_cache_mb: Option<u64>,

    /// MiB of dependency caches kept for all sites together; the least recently used go first
    /// [default: 10240]
    #[arg(long, env = "RESELLERD_BUILD_CACHE_TOTAL_MB")]
    pub build_cache_total_mb: Option<u64>,

    /// SMTP relay for notification mail: smtp://[user:pass@]host:port (STARTTLS when offered;
    /// ?tls=required insists) or smtps:// (implicit TLS) [default: unset, no mail is sent]
    #[arg(long, env = "RESELLERD_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The instance's sender address, used until a reseller's own is verified [default:
    /// noreply@<default preview domain>]
    #[arg(long, env = "RESELLERD_MAIL_FROM")]
    pub mail_from: Option<String>,

    /// Seconds a webhook receiver has to answer an attempt [default: 10]
    #[arg(long, env = "RESELLERD_WEBHOOK_TIMEOUT")]
    pub webhook_timeout: Option<u64>,

    /// Most pending (unverified) domains per reseller [default: 100]
    #[arg(long, env = "RESELLERD_MAX_PENDING_DOMAINS")]
    pub max_pending_domains: Option<usize>,

    /// DNS server (ip:port) for domain verification lookups [default: the system resolver]
    #[arg(long, env = "RESELLERD_DNS_SERVER")]
    pub dns_server: Option<std::net::SocketAddr>,

    /// Seconds between verification checks of a pending domain, doubling after each miss [default: 60]
    #[arg(long, env = "RESELLERD_VERIFY_INTERVAL")]
    pub verify_interval: Option<u64>,

    /// Seconds after which a domain still pending is marked failed [default: 259200, three days]
    #[arg(long, env = "RESELLERD_VERIFY_DEADLINE")]
    pub verify_deadline: Option<u64>,

    /// Seconds between stores of the edge's traffic counters [default: 10]
    #[arg(long, env = "RESELLERD_TRAFFIC_FLUSH_INTERVAL")]
    pub traffic_flush_interval: Option<u64>,

    /// MiB of memory for the database's page cache (the largest part of the server's memory)
    /// [default: 64]
    #[arg(long, env = "RESELLERD_CACHE_MB")]
    pub cache_mb: Option<u64>,

    /// The embedded engine a new data dir is made with: redb or sled (a data dir keeps the
    /// engine it was made with; a backup restores into redb) [default: redb]
    #[arg(long, env = "RESELLERD_STORE_ENGINE")]
    pub store_engine: Option<String>,

    /// Seconds between sweeps that remove expired access tokens [default: 60]
    #[arg(long, env = "RESELLERD_TOKEN_SWEEP_INTERVAL")]
    pub token_sweep_interval: Option<u64>,

    /// Expired access tokens removed per transaction by the sweeper [default: 500]
    #[arg(long, env = "RESELLERD_TOKEN_SWEEP_BATCH")]
    pub token_sweep_batch: Option<usize>,

    /// ACME directory URL for custom-domain certificates (e.g. Let's Encrypt's); unset disables ACME
    #[arg(long, env = "RESELLERD_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,

    /// Contact email for the ACME account
    #[arg(long, env = "RESELLERD_ACME_EMAIL")]
    pub acme_email: Option<String>,

    /// PEM root certificate to trust for the ACME directory (for a test CA)
    #[arg(long, env = "RESELLERD_ACME_CA_BUNDLE")]
    pub acme_ca_bundle: Option<PathBuf>,

    /// Renew certificates this many days before they expire [default: 30]
    #[arg(long, env = "RESELLERD_ACME_RENEW_BEFORE_DAYS")]
    pub acme_renew_before_days: Option<u64>,

    /// Seconds between checks for certificates due for renewal [default: 3600]
    #[arg(long, env = "RESELLERD_ACME_CHECK_INTERVAL")]
    pub acme_check_interval: Option<u64>,

    /// Webhook that registers domains (POST /domains/register); unset disables registration
    #[arg(
        long,
        env = "RESELLERD_REGISTRAR_WEBHOOK_URL",
        requires = "registrar_webhook_secret"
    )]
    pub registrar_webhook_url: Option<String>,

    /// Secret for the HMAC-SHA256 signature of registrar webhook requests
    #[arg(long, env = "RESELLERD_REGISTRAR_WEBHOOK_SECRET")]
    pub registrar_webhook_secret: Option<String>,
}

impl Settings {
    /// Fills what the flags and env left unset from the config file, if one is named.
    pub fn resolve(self) -> Result<Settings, String> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = Settings::from_file(&path)?;
        Ok(overlay(self, file))
    }

    pub fn from_file(path: &Path) -> Result<Settings, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data"))
    }

    pub fn http_addr(&self) -> Result<SocketAddr, String> {
        parse_addr(
            self.http_addr.as_deref().unwrap_or("127.0.0.1:8080"),
            "http-addr",
        )
    }

    pub fn https_addr(&self) -> Result<SocketAddr, String> {
        parse_addr(
            self.https_addr.as_deref().unwrap_or("127.0.0.1:8443"),
            "https-addr",
        )
    }

    pub fn trusted_proxies(&self) -> Vec<IpNet> {
        self.trusted_proxies.clone().unwrap_or_default()
    }

    pub fn acme_check_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.acme_check_interval.unwrap_or(3600).max(1))
    }

    pub fn verify_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.verify_interval.unwrap_or(60))
    }

    /// The instance's sender address: `--mail-from`, else `noreply@<default preview domain>`.
    pub fn mail_from(&self) -> String {
        self.mail_from
            .clone()
            .unwrap_or_else(|| format!("noreply@{}", self.default_preview_domain()))
    }

    pub fn traffic_flush_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.traffic_flush_interval.unwrap_or(10).max(1))
    }

    pub fn max_body(&self) -> usize {
        self.max_body.unwrap_or(1 << 20)
    }

    pub fn default_preview_domain(&self) -> String {
        self.default_preview_domain
            .as_deref()
            .unwrap_or("localhost")
            .trim()
            .trim_end_matches('.')
            .to_lowercase()
    }

    pub fn max_upload(&self) -> usize {
        self.max_upload.unwrap_or(100 << 20)
    }

    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.request_timeout.unwrap_or(10).max(1))
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or(10_000).max(1)
    }

    /// A warning when the server listens beyond loopback without `--api-host`: CRMs and the
    /// panel can then reach the API only by IP address. `None` when all is well.
    pub fn public_without_api_host(&self) -> Option<String> {
        if self.instance_names().has_api_hosts() {
            return None;
        }
        let public = [self.http_addr(), self.https_addr()]
            .into_iter()
            .flatten()
            .find(|a| !a.ip().is_loopback())?;
        Some(format!(
            "listening on {public} without --api-host: the API and panel answer only on IP \
             addresses and localhost; set --api-host to the names CRMs and staff use (no tenant \
             can then take them or any name in their parent domain)"
        ))
    }

    /// The instance's own names (`--api-host`, loopback) and the operator's zones.
    pub fn instance_names(&self) -> crate::hosts::InstanceNames {
        crate::hosts::InstanceNames::new(
            self.api_host.as_deref().unwrap_or_default(),
            &self.default_preview_domain(),
        )
    }

    /// The engine a new data dir is made with.
    pub fn store_engine(&self) -> Result<crate::store::Engine, String> {
        match self.store_engine.as_deref() {
            None | Some("redb") => Ok(crate::store::Engine::Redb),
            Some("sled") => Ok(crate::store::Engine::Sled),
            Some(other) => Err(format!(
                "--store-engine: {other:?} is not an engine (redb or sled)"
            )),
        }
    }

    /// The database page cache in bytes (at least 8 MiB).
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb
            .unwrap_or(crate::store::DEFAULT_CACHE_MB)
            .max(8)
            << 20
    }

    pub fn token_sweep_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.token_sweep_interval.unwrap_or(60).max(1))
    }

    pub fn token_sweep_batch(&self) -> usize {
        self.token_sweep_batch.unwrap_or(500).clamp(1, 10_000)
    }

    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.body_timeout.unwrap_or(30).max(1))
    }

    pub fn upload_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.upload_timeout.unwrap_or(600).max(1))
    }

    pub fn form_rate_ip(&self) -> f64 {
        self.form_rate_ip.unwrap_or(20.0)
    }

    pub fn form_rate_site(&self) -> f64 {
        self.form_rate_site.unwrap_or(300.0)
    }

    pub fn max_submissions_per_form(&self) -> u64 {
        self.max_submissions_per_form.unwrap_or(10_000)
    }

    /// How long an unreferenced site file is kept (`--blob-gc-grace`).
    pub fn blob_gc_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.blob_gc_grace.unwrap_or(3600))
    }

    /// How long a deploy may wait for its files (`--deploy-expiry`).
    pub fn deploy_expiry(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.deploy_expiry.unwrap_or(86_400).max(1))
    }

    /// Where builds run and their caches live (`--build-dir`).
    pub fn build_dir(&self) -> PathBuf {
        if let Some(dir) = &self.build_dir {
            return dir.clone();
        }
        let data = self.data_dir();
        if !rustix::process::getuid().is_root() {
            return data.join("builds");
        }
        use sha2::Digest;
        let real = data.canonicalize().unwrap_or(data);
        let digest = sha2::Sha256::digest(real.as_os_str().as_encoded_bytes());
        PathBuf::from("/var/lib/resellerd-builds").join(&hex::encode(digest)[..12])
    }

    /// Builds that run at once (`--build-concurrency`); 0: builds are off.
    pub fn build_concurrency(&self) -> usize {
        self.build_concurrency.unwrap_or(1).min(64)
    }

    /// The limits every build runs under (`--build-*`).
    pub fn build_limits(&self) -> crate::builds::Limits {
        const MIB: u64 = 1 << 20;
        crate::builds::Limits {
            timeout: std::time::Duration::from_secs(self.build_timeout.unwrap_or(900).max(1)),
            memory: self.build_memory_mb.unwrap_or(2048).max(64) * MIB,
            processes: self.build_processes.unwrap_or(512).max(16),
            disk: self.build_disk_mb.unwrap_or(2048).max(16) * MIB,
            cache_per_site: self.build_cache_mb.unwrap_or(1024) * MIB,
            cache_total: self.build_cache_total_mb.unwrap_or(10240) * MIB,
        }
    }

    /// The PostgreSQL URL, if the records live there (not in the data dir's embedded database).
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref().filter(|u| !u.is_empty())
    }

    pub fn database_connections(&self) -> usize {
        self.database_connections
            .unwrap_or(self.workers() + 8)
            .clamp(2, 1000)
    }

    /// HTTP worker threads: as set, else one per CPU, or eight per CPU on PostgreSQL (a worker
    /// blocks while a query is on the wire; more of them keep the CPUs busy meanwhile).
    pub fn workers(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.workers.unwrap_or(match self.database_url() {
            Some(_) => cpus * 8,
            None => cpus,
        })
    }

    pub fn allow_private_targets(&self) -> bool {
        self.allow_private_targets.unwrap_or(false)
    }

    pub fn webhook_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.webhook_timeout.unwrap_or(10).clamp(1, 300))
    }

    pub fn max_pending_domains(&self) -> usize {
        self.max_pending_domains.unwrap_or(100)
    }

    pub fn max_deploy_files(&self) -> usize {
        self.max_deploy_files.unwrap_or(25_000)
    }

    pub fn max_deploy_bytes(&self) -> u64 {
        self.max_deploy_bytes.unwrap_or(512 << 20)
    }
}

/// Every field set in `hi` wins; the rest come from `lo`. Going through JSON keeps this free of a
/// field list that would have to grow with every setting.
fn overlay(hi: Settings, lo: Settings) -> Settings {
    let (Ok(serde_json::Value::Object(mut hi_map)), Ok(serde_json::Value::Object(lo_map))) =
        (serde_json::to_value(&hi), serde_json::to_value(&lo))
    else {
        return hi;
    };
    for (k, v) in lo_map {
        if hi_map.get(&k).is_none_or(serde_json::Value::is_null) {
            hi_map.insert(k, v);
        }
    }
    serde_json::from_value(serde_json::Value::Object(hi_map)).unwrap_or(hi)
}

/// A listen address: `IP:PORT`, `[IPv6]:PORT`, or `:PORT` for every interface (as Caddy and Go
/// take it).
fn parse_addr(s: &str, what: &str) -> Result<SocketAddr, String> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    };
    full.parse().map_err(|_| {
        format!("--{what}: {s:?} is not an address like 127.0.0.1:8080, [::1]:8080 or :8080 (every interface)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_listens_on_every_interface() {
        assert_eq!(
            parse_addr(":8080", "http-addr").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_addr("[::1]:80", "http-addr").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        let e = parse_addr("localhost", "http-addr").unwrap_err();
        assert!(e.contains(":8080 (every interface)"), "{e}");
    }

    #[test]
    fn the_store_engine_is_redb_unless_sled_is_asked_for() {
        use crate::store::Engine;
        let with = |e: Option<&str>| Settings {
            store_engine: e.map(String::from),
            ..Default::default()
        };
        assert_eq!(with(None).store_engine(), Ok(Engine::Redb));
        assert_eq!(with(Some("redb")).store_engine(), Ok(Engine::Redb));
        assert_eq!(with(Some("sled")).store_engine(), Ok(Engine::Sled));
        let err = with(Some("rocksdb")).store_engine().unwrap_err();
        assert!(err.contains("redb or sled"), "{err}");
        // A data dir keeps the engine it was made with, whatever is asked for a new one.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Engine::of(dir.path(), Engine::Sled), Engine::Sled);
        std::fs::write(dir.path().join(crate::store::REDB_FILE), b"").unwrap();
        assert_eq!(Engine::of(dir.path(), Engine::Sled), Engine::Redb);
        std::fs::create_dir(dir.path().join("db")).unwrap();
        assert_eq!(Engine::of(dir.path(), Engine::Redb), Engine::Sled);
    }

    #[test]
    fn flags_and_env_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resellerd.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/file\"\nhttp_addr = \"0.0.0.0:80\"\n",
        )
        .unwrap();
        let flags = Settings {
            config: Some(path.clone()),
            data_dir: Some("/srv/flag".into()),
            ..Default::default()
        };
        let s = flags.resolve().unwrap();
        assert_eq!(s.data_dir(), PathBuf::from("/srv/flag"));
        assert_eq!(s.http_addr().unwrap().port(), 80);
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let err = Settings {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("no_such_setting"), "{err}");
    }
}
