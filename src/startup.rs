//! Where the app's parts are made from its settings: the store, the verifier, the registrar, the
//! rate limits, the ACME and blob store configurations. `config` is the settings as data (and
//! their defaults); this is the one place that turns them into working parts, for `serve`
//! (`state::AppState::open`) and the commands that open a data dir's store (`backup`,
//! `doctor`: `open_data_dir`).

use crate::config::Settings;
use std::path::Path;

/// Opens the embedded store of the data dir `dir` as the commands that work on a stopped
/// server's data dir do (`backup`, `doctor`): its own engine, the default page cache.
/// `OpenError::Locked` says a server holds it.
pub fn open_data_dir(dir: &Path) -> Result<crate::store::Store, crate::store::OpenError> {
    crate::store::Store::open(dir)
}

impl Settings {
    pub fn acme(&self) -> crate::acme::AcmeConfig {
        crate::acme::AcmeConfig {
            directory: self.acme_directory.clone(),
            email: self.acme_email.clone(),
            ca_bundle: self.acme_ca_bundle.clone(),
            renew_before: std::time::Duration::from_secs(
                self.acme_renew_before_days.unwrap_or(30) * 86_400,
            ),
        }
    }

    /// The configured domain registrar, if any.
    pub fn registrar(
        &self,
    ) -> Result<Option<std::sync::Arc<dyn crate::registrar::Registrar>>, String> {
        match (&self.registrar_webhook_url, &self.registrar_webhook_secret) {
            (Some(url), Some(secret)) => Ok(Some(std::sync::Arc::new(
                crate::registrar::WebhookRegistrar::new(url.clone(), secret.clone())?,
            ))),
            (None, _) => Ok(None),
            (Some(_), None) => {
                Err("--registrar-webhook-url needs --registrar-webhook-secret".into())
            }
        }
    }

    pub fn rate_limits(&self) -> crate::ratelimit::RateLimits {
        crate::ratelimit::RateLimits::new(
            self.rate_limit_ip.unwrap_or(500.0),
            self.rate_limit_credential.unwrap_or(250.0),
            crate::ratelimit::PerMinute {
                auth_failures: self.auth_failures_per_minute.unwrap_or(30.0),
                forms_per_ip: self.form_rate_ip(),
                forms_per_site: self.form_rate_site(),
            },
        )
    }

    pub fn verifier(&self) -> Result<crate::dns::Verifier, String> {
        crate::dns::Verifier::new(
            self.dns_server,
            self.verify_interval(),
            std::time::Duration::from_secs(self.verify_deadline.unwrap_or(3 * 86_400)),
        )
    }

    /// The remote blob store, if one is set.
    pub fn remote_blobs(
        &self,
    ) -> Result<Option<(crate::store::remote::Remote, std::time::Duration)>, String> {
        let Some(url) = &self.blob_store else {
            return Ok(None);
        };
        let remote = crate::store::remote::Remote::from_url(url)?;
        Ok(Some((remote, self.blob_gc_grace())))
    }

    /// Opens the store the settings name: PostgreSQL or the data dir's embedded database.
    pub fn open_store(&self) -> Result<crate::store::Store, crate::store::OpenError> {
        let dir = self.data_dir();
        match self.database_url() {
            Some(url) => crate::store::Store::open_postgres(&dir, url, self.database_connections()),
            None => {
                let engine = self
                    .store_engine()
                    .map_err(crate::store::OpenError::Settings)?;
                crate::store::Store::open_embedded(&dir, self.cache_bytes(), engine)
            }
        }
    }
}
