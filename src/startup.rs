//! Where the app's parts are made from its settings: the store, the verifier, the registrar, the
//! rate limits, the ACME and blob store configurations. `config` is the settings as data (and
//! their defaults); this is the one place that turns them into working parts, for `serve`
//! (`open`) and the commands that open a data dir's store (`backup`,
//! `doctor`: `open_data_dir`).

use crate::config::Settings;
use crate::state::AppState;
use crate::{
    acme, auth, disk, edge, files, hosts, mail, metrics, quota, signing, store, tls, views,
    webhooks,
};
use actix_web::web;
use std::path::Path;
use std::sync::Arc;

/// Opens the embedded store of the data dir `dir` as the commands that work on a stopped
/// server's data dir do (`backup`, `doctor`): its own engine, the default page cache.
/// `OpenError::Locked` says a server holds it.
pub fn open_data_dir(dir: &Path) -> Result<crate::store::Store, crate::store::OpenError> {
    crate::store::Store::open(dir)
}

/// The running app's parts: the shared state (with its background tasks started), the edge's
/// caches, and the TLS configuration of the HTTPS listener.
pub struct Parts {
    pub state: web::Data<AppState>,
    pub edge: web::Data<edge::Edge>,
    pub tls: rustls::ServerConfig,
}

/// Opens the data dir (database, TLS material, secrets), starts the background tasks on the
/// current actix system, and returns the app's parts.
pub fn open(settings: Settings) -> Result<Parts, String> {
    let data_dir = settings.data_dir();
    files::create_private_dir(&data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let mut store = settings.open_store().map_err(|e| e.to_string())?;
    tracing::info!(engine = store.engine(), "the records are open");
    if let Some((remote, grace)) = settings.remote_blobs()? {
        tracing::info!(blob_store = %remote.description, "site files are kept in the blob store");
        store.blobs = store.blobs.with_remote(remote, grace);
    }
    let (tls_config, certs) = tls::server_config(tls::default_key(
        &data_dir,
        settings.tls_cert.as_deref(),
        settings.tls_key.as_deref(),
    )?)?;
    let acme = Arc::new(acme::Acme::new(
        settings.acme(),
        store.clone(),
        certs.clone(),
    ));
    // Registered before the first load, so no other node's change falls between them.
    let reload = acme.clone();
    store.on_announcement(acme::CERTIFICATES_TOPIC, move || {
        reload
            .load_issued()
            .inspect_err(|e| {
                tracing::warn!(error = %crate::error::chain(e), "cannot load the stored certificates again")
            })
            .is_ok()
    });
    let loaded = acme.load_issued().map_err(|e| e.to_string())?;
    tracing::info!(certificates = loaded, "loaded stored certificates");
    if acme.is_configured() {
        actix_web::rt::spawn(acme.clone().renew_forever(settings.acme_check_interval()));
    }
    let secret = signing::InstanceSecret::load(&data_dir, &store)?;
    let traffic = Arc::new(store::traffic::TrafficRecorder::default());
    let disk = Arc::new(disk::Disk::new(&data_dir, settings.disk_reserve)?);
    actix_web::rt::spawn(disk::watch_forever(disk.clone(), store.clone()));
    actix_web::rt::spawn(store::tokens_sweeper(
        store.clone(),
        settings.token_sweep_interval(),
        settings.token_sweep_batch(),
    ));
    let grace = settings.blob_gc_grace();
    actix_web::rt::spawn(store::files_sweeper(
        store.clone(),
        grace.clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(3600),
        ),
        settings.deploy_expiry(),
        grace,
    ));
    let verifier = Arc::new(settings.verifier()?);
    actix_web::rt::spawn(verifier.clone().run_forever(store.clone()));
    let views = views::Views {
        store: store.clone(),
        links: Arc::new(views::Links::new(
            settings.default_preview_domain(),
            settings.instance_names(),
        )),
    };
    let outbox = Arc::new(webhooks::Outbox::new(
        settings.allow_private_targets(),
        settings.webhook_timeout(),
    )?);
    let mailer = Arc::new(mail::Mailer::new(
        settings.smtp_url.as_deref(),
        settings.mail_from(),
        &views,
        verifier.clone(),
        settings.verify_interval(),
    )?);
    if mailer.is_enabled() {
        store.webhooks().enable_mail_events();
        // The instance's DKIM key exists before the operator is shown its record.
        mail::instance_key(&store).map_err(|e| crate::error::chain(&e))?;
        store.flush_blocking().map_err(|e| e.to_string())?;
    }
    let limits = web::Data::new(settings.rate_limits());
    let mut metrics = metrics::Metrics::new();
    metrics.register(
        "resellerd_domain_verifications",
        "Domain TXT checks, by result.",
        verifier.checks.clone(),
    );
    outbox.metrics.register(&mut metrics);
    metrics.register(
        "resellerd_mail_attempts",
        "Attempts to hand a mail to the relay, by result.",
        mailer.attempts.clone(),
    );
    let builds = crate::builds::start(
        store.clone(),
        crate::builds::Config {
            dir: settings.build_dir(),
            concurrency: settings.build_concurrency(),
            limits: settings.build_limits(),
            allow_private: settings.allow_private_targets(),
            max_files: settings.max_deploy_files(),
            max_bytes: settings.max_deploy_bytes(),
        },
    );
    let state = AppState {
        builds,
        names: settings.instance_names(),
        views,
        hosts: hosts::HostCache::new(settings.default_preview_domain()),
        secret,
        blocked: quota::Blocked::load(&store).map_err(|e| e.cause_chain())?,
        mailer,
        outbox,
        traffic,
        verifier,
        disk,
        limits: limits.clone(),
        auth: web::Data::new(auth::Authenticator {
            store: store.clone(),
            operator: auth::operator::OperatorAuth::new(&data_dir, &store)?,
            credentials: Default::default(),
            limits,
        }),
        metrics,
        registrar: settings.registrar()?,
        acme,
        store,
        trusted_proxies: settings.trusted_proxies(),
        settings,
        certs,
    };
    let state = web::Data::new(state);
    actix_web::rt::spawn(traffic_forever(state.clone()));
    outbound(Arc::new(webhooks::Outbound {
        store: state.store.clone(),
        views: state.views.clone(),
        outbox: state.outbox.clone(),
        mailer: state.mailer.clone(),
        timeout: state.settings.webhook_timeout(),
    }))?;
    actix_web::rt::spawn(mail::check_senders_forever(state.mailer.clone()));
    edge::variants::start(state.store.clone())?;
    Ok(Parts {
        edge: web::Data::new(edge::Edge::new(state.settings.allow_private_targets())?),
        state,
        tls: tls_config,
    })
}

/// Runs the webhook dispatcher, sender and recorder and the mail sender on a thread of their own
/// at a lower CPU priority (nice 10), so a burst of deliveries yields to API requests on a busy
/// machine instead of taking an equal share; they catch up when it is idle.
fn outbound(out: Arc<webhooks::Outbound>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("outbound".into())
        .spawn(move || {
            // Linux gives each thread its own nice value; elsewhere this is the whole process,
            // and a failure only means equal priority.
            let _ = rustix::process::nice(10);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the webhook and mail thread");
                    return;
                }
            };
            runtime.block_on(async move {
                tokio::join!(
                    webhooks::dispatch_forever(out.clone()),
                    webhooks::send_forever(out.clone()),
                    webhooks::record_forever(out.clone()),
                    mail::send_forever(out.mailer.clone()),
                );
            });
        })
        .map(drop)
        .map_err(|e| format!("cannot start the webhook and mail thread: {e}"))
}

/// Stores the edge's traffic counters every `--traffic-flush-interval`, then measures the users
/// they touched against their bandwidth quotas.
async fn traffic_forever(state: web::Data<AppState>) {
    let interval = state.settings.traffic_flush_interval();
    loop {
        tokio::time::sleep(interval).await;
        match state.traffic.store_batch(&state.store).await {
            Ok(users) => quota::check(&state.store, &state.blocked, &users).await,
            Err(e) => tracing::warn!(error = %e, "cannot store traffic metrics"),
        }
    }
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
