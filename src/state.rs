//! Everything a request may need, shared by all workers: the store, the caches, the limiters,
//! the TLS certificates, the outboxes. Plain data: `startup::open` makes it from the settings and
//! starts the background tasks that keep it; the handlers read it. It names no face (`api`,
//! `edge`), so nothing below the faces imports them through it.

use crate::config::Settings;
use crate::{
    acme, auth, disk, dns, hosts, mail, metrics, quota, ratelimit, registrar, signing, store, tls,
    views, webhooks,
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
    /// `resolve_host`, cached: which site a Host names.
    pub hosts: hosts::HostCache,
    /// Signs cursors, idempotency ids and password cookies.
    pub secret: signing::InstanceSecret,
    pub traffic: Arc<store::traffic::TrafficRecorder>,
    pub verifier: Arc<dns::Verifier>,
    pub disk: Arc<disk::Disk>,
    pub outbox: Arc<webhooks::Outbox>,
    pub mailer: Arc<mail::Mailer>,
    pub blocked: quota::Blocked,
    /// The instance's own names and the operator's zones (`hosts::InstanceNames`).
    pub names: crate::hosts::InstanceNames,
    /// What the API's views, webhook payloads and mails are made from.
    pub views: views::Views,
    /// The build runner: queued builds from git are woken through it.
    pub builds: Arc<crate::builds::Runner>,
}
