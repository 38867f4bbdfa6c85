//! Everything a request may need, built once from the settings and shared by all workers: the
//! store, the caches, the limiters, the TLS certificates, and the background tasks that keep
//! them (domain verification, traffic, renewals, the disk watcher).

use crate::config::Settings;
use crate::{
    acme, auth, disk, dns, edge, files, mail, metrics, quota, ratelimit, registrar, store, tls,
    webhooks,
};
use actix_web::web;
use std::sync::Arc;

pub struct AppState {
    pub store: store::Store,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub settings: Settings,
    pub certs: Arc<tls::CertResolver>,
    pub acme: Arc<acme::Acme>,
    /// Registered as app data too, for the rate-limit layer and the edge's form limits.
    pub limits: web::Data<ratelimit::RateLimits>,
    /// Registered as app data too, for the `Principal` extractor.
    pub auth: web::Data<auth::Authenticator>,
    pub metrics: metrics::Metrics,
    pub registrar: Option<Arc<dyn registrar::Registrar>>,
    pub edge: edge::Edge,
    pub traffic: Arc<store::traffic::TrafficRecorder>,
    pub verifier: Arc<dns::Verifier>,
    pub disk: Arc<disk::Disk>,
    pub outbox: webhooks::Outbox,
    pub mailer: mail::Mailer,
    pub blocked: quota::Blocked,
    pub proxy: edge::proxy::Proxy,
    /// The instance's own names and the operator's zones (`hosts::InstanceNames`).
    pub names: crate::hosts::InstanceNames,
    /// The (HTTP, HTTPS) addresses the listeners bound, once they have.
    pub listening: std::sync::OnceLock<(std::net::SocketAddr, std::net::SocketAddr)>,
}

/// `:PORT` for a URL, unless the port is the scheme's `default` (or not bound yet).
fn port_suffix(port: Option<u16>, default: u16) -> String {
    match port {
        Some(p) if p != default => format!(":{p}"),
        _ => String::new(),
    }
}

impl AppState {
    /// `:PORT` for a site's `https://` URL when the HTTPS listener is not on 443 (a local
    /// install's 8443), so the URLs the API shows open as they are.
    pub fn https_port_suffix(&self) -> String {
        port_suffix(self.listening.get().map(|(_, https)| https.port()), 443)
    }

    /// `:PORT` for a site's `http://` URL when the HTTP listener is not on 80.
    pub fn http_port_suffix(&self) -> String {
        port_suffix(self.listening.get().map(|(http, _)| http.port()), 80)
    }

    /// Where the panel is: the first `--api-host` over HTTPS, else the HTTP listener's address.
    pub fn panel_url(&self) -> String {
        if let Some(host) = self.names.api_hosts().first() {
            return format!("https://{host}{}/admin/", self.https_port_suffix());
        }
        match self.listening.get() {
            Some((http, _)) if http.ip().is_unspecified() => {
                format!("http://localhost:{}/admin/", http.port())
            }
            Some((http, _)) => format!("http://{http}/admin/"),
            None => "/admin/".to_string(),
        }
    }
}

impl AppState {
    /// Opens the data dir (database, TLS material, secrets), starts the background tasks on the
    /// current actix system, and returns the state with the TLS config for the HTTPS listener.
    pub fn open(settings: Settings) -> Result<(web::Data<AppState>, rustls::ServerConfig), String> {
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
                    tracing::warn!(error = %e.cause_chain(), "cannot load the stored certificates again")
                })
                .is_ok()
        });
        let loaded = acme.load_issued().map_err(|e| e.to_string())?;
        tracing::info!(certificates = loaded, "loaded stored certificates");
        if acme.is_configured() {
            actix_web::rt::spawn(acme.clone().renew_forever(settings.acme_check_interval()));
        }
        let edge = edge::Edge::new(&data_dir, &store, settings.default_preview_domain())?;
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
        let outbox =
            webhooks::Outbox::new(settings.allow_private_targets(), settings.webhook_timeout())?;
        let mailer = mail::Mailer::new(settings.smtp_url.as_deref(), settings.mail_from())?;
        if mailer.is_enabled() {
            store.webhooks().enable_mail_events();
            // The instance's DKIM key exists before the operator is shown its record.
            mail::instance_key(&store).map_err(|e| e.cause_chain())?;
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
        let state = AppState {
            names: settings.instance_names(),
            listening: Default::default(),
            proxy: edge::proxy::Proxy::new(settings.allow_private_targets())?,
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
            edge,
        };
        let state = web::Data::new(state);
        actix_web::rt::spawn(traffic_forever(state.clone()));
        outbound(state.clone())?;
        actix_web::rt::spawn(mail::check_senders_forever(state.clone()));
        Ok((state, tls_config))
    }
}

/// Runs the webhook dispatcher, sender and recorder and the mail sender on a thread of their own
/// at a lower CPU priority (nice 10), so a burst of deliveries yields to API requests on a busy
/// machine instead of taking an equal share; they catch up when it is idle.
fn outbound(state: web::Data<AppState>) -> Result<(), String> {
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
                    webhooks::dispatch_forever(state.clone()),
                    webhooks::send_forever(state.clone()),
                    webhooks::record_forever(state.clone()),
                    mail::send_forever(state),
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
