//! One settings struct for `serve`: defaults <- TOML file (`--config`) <- `RESELLERD_*` env <- flags.
//! Every field is optional here; the accessors apply the defaults.

use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Args, Deserialize, Clone, Debug, Default)]
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

    /// Log format: auto (pretty on a terminal, JSON otherwise), pretty or json [default: auto]
    #[arg(long, env = "RESELLERD_LOG_FORMAT")]
    pub log_format: Option<String>,

    /// HTTP worker threads [default: number of CPUs]
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
}

macro_rules! merge_fields {
    ($hi:expr, $lo:expr, $($f:ident),*) => {
        Settings { $($f: $hi.$f.or($lo.$f),)* }
    };
}

impl Settings {
    /// Fills what the flags and env left unset from the config file, if one is named.
    pub fn resolve(self) -> Result<Settings, String> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = Settings::from_file(&path)?;
        Ok(merge_fields!(
            self,
            file,
            config,
            data_dir,
            http_addr,
            https_addr,
            tls_cert,
            tls_key,
            trusted_proxies,
            max_body,
            log_format,
            workers,
            default_preview_domain,
            max_upload,
            max_deploy_files,
            max_deploy_bytes
        ))
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

    pub fn max_deploy_files(&self) -> usize {
        self.max_deploy_files.unwrap_or(25_000)
    }

    pub fn max_deploy_bytes(&self) -> u64 {
        self.max_deploy_bytes.unwrap_or(512 << 20)
    }
}

fn parse_addr(s: &str, what: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("--{what}: {s:?} is not an address like 127.0.0.1:8080 or [::1]:8080"))
}
