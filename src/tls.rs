//! HTTPS certificates: an SNI resolver that picks a certificate by server name, falling back to
//! the default one (from `--tls-cert/--tls-key`, else self-signed and kept in the data dir).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

/// The one place that chooses the crypto provider, for the server and any client alike.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
pub struct CertResolver {
    default: Arc<CertifiedKey>,
    by_name: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Moved by every `insert` and `remove` (see `replace_all_if`).
    version: std::sync::atomic::AtomicU64,
}

impl CertResolver {
    /// Serves `key` for `name` from now on (no restart needed).
    pub fn insert(&self, name: &str, key: Arc<CertifiedKey>) {
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        by_name.insert(name.to_ascii_lowercase(), key);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn remove(&self, name: &str) {
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        by_name.remove(&name.to_ascii_lowercase());
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The count of changes so far (read before reading the stored set).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Serves exactly `keys` by name from now on (the stored set, read again), unless this node
    /// inserted or removed one since `seen`: then the read may be older than that change, and
    /// false says to read again.
    pub fn replace_all_if(&self, seen: u64, keys: HashMap<String, Arc<CertifiedKey>>) -> bool {
        let keys = keys
            .into_iter()
            .map(|(name, key)| (name.to_ascii_lowercase(), key))
            .collect();
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        if self.version.load(Ordering::Acquire) != seen {
            return false;
        }
        *by_name = keys;
        true
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if let Some(k) = map.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = map.get(&format!("*.{parent}")) {
                    return Some(k.clone());
                }
            }
        }
        Some(self.default.clone())
    }
}

/// Parses a PEM chain and key into a signing key for rustls.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    use rustls::pki_types::pem::{Error as PemError, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found in the PEM".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        PemError::NoItemsFound => "no private key found in the PEM".to_string(),
        e => format!("bad key PEM: {e}"),
    })?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    Ok(CertifiedKey::new(certs, signer))
}

/// The default certificate: the configured files, else a self-signed one made on first start.
pub fn default_key(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<CertifiedKey, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    if let (Some(c), Some(k)) = (cert, key) {
        return certified_key(&read(c)?, &read(k)?);
    }
    let dir = data_dir.join("tls");
    let (cert_path, key_path) = (dir.join("self-signed.crt"), dir.join("self-signed.key"));
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
        crate::files::write_private(&key_path, made.key_pair.serialize_pem().as_bytes())
            .map_err(|e| format!("cannot write key: {e}"))?;
        crate::files::write_private(&cert_path, made.cert.pem().as_bytes())
            .map_err(|e| format!("cannot write certificate: {e}"))?;
    }
    certified_key(&read(&cert_path)?, &read(&key_path)?)
}

/// A rustls server config whose certificates come from `resolver`.
pub fn server_config(
    default: CertifiedKey,
) -> Result<(rustls::ServerConfig, Arc<CertResolver>), String> {
    let resolver = Arc::new(CertResolver {
        default: Arc::new(default),
        by_name: RwLock::new(HashMap::new()),
        version: Default::default(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, resolver))
}
