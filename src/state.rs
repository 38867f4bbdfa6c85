//! Everything a request may need, built once from the settings and shared by all workers: the
//! store, the caches, the limiters, the TLS certificates, and the background tasks that keep
//! them (domain verification, traffic, renewals, the disk watcher).

use crate::config::Settings;
use crate::{
    acme, auth, disk, dns, edge, files, metrics, ratelimit, registrar, store, tls, webhooks,
};
use actix_web::web;
use std::sync::Arc;

pub struct AppState {
    pub store: store::Store,
    pub operator: auth::operator::OperatorAuth,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub settings: Settings,
    pub certs: Arc<tls::CertResolver>,
    pub acme: Arc<acme::Acme>,
    pub limits: ratelimit::RateLimits,
    pub metrics: metrics::Metrics,
    pub registrar: Option<Arc<dyn registrar::Registrar>>,
    pub edge: edge::Edge,
    pub traffic: Arc<store::traffic::TrafficRecorder>,
    pub verifier: Arc<dns::Verifier>,
    pub credentials: auth::cache::CredentialCache,
    pub disk: Arc<disk::Disk>,
    pub outbox: webhooks::Outbox,
}

impl AppState {
    /// Opens the data dir (database, TLS material, secrets), starts the background tasks on the
    /// current actix system, and returns the state with the TLS config for the HTTPS listener.
    pub fn open(settings: Settings) -> Result<(web::Data<AppState>, rustls::ServerConfig), String> {
        let data_dir = settings.data_dir();
        files::create_private_dir(&data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
        let store = store::Store::open_with(&data_dir, settings.cache_bytes())
            .map_err(|e| e.to_string())?;
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
        let loaded = acme.load_issued().map_err(|e| e.to_string())?;
        tracing::info!(certificates = loaded, "loaded stored certificates");
        if acme.is_configured() {
            actix_web::rt::spawn(acme.clone().renew_forever(settings.acme_check_interval()));
        }
        let edge = edge::Edge::new(&data_dir, settings.default_preview_domain())?;
        let traffic = Arc::new(store::traffic::TrafficRecorder::default());
        actix_web::rt::spawn(
            traffic
                .clone()
                .store_forever(store.clone(), settings.traffic_flush_interval()),
        );
        let disk = Arc::new(disk::Disk::new(&data_dir, settings.disk_reserve)?);
        actix_web::rt::spawn(disk::watch_forever(disk.clone(), store.clone()));
        actix_web::rt::spawn(store::tokens_sweeper(
            store.clone(),
            settings.token_sweep_interval(),
            settings.token_sweep_batch(),
        ));
        let verifier = Arc::new(settings.verifier()?);
        actix_web::rt::spawn(verifier.clone().run_forever(store.clone()));
        let outbox =
            webhooks::Outbox::new(settings.allow_private_targets(), settings.webhook_timeout())?;
        let state = AppState {
            outbox,
            traffic,
            verifier,
            credentials: Default::default(),
            disk,
            limits: settings.rate_limits(),
            metrics: metrics::Metrics::default(),
            registrar: settings.registrar()?,
            acme,
            store,
            operator: auth::operator::OperatorAuth::new(&data_dir),
            trusted_proxies: settings.trusted_proxies(),
            settings,
            certs,
            edge,
        };
        let state = web::Data::new(state);
        actix_web::rt::spawn(webhooks::dispatch_forever(state.clone()));
        actix_web::rt::spawn(webhooks::send_forever(state.clone()));
        Ok((state, tls_config))
    }
}
