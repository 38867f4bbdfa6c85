//! resellerd as a library: the route table and the layers every request passes, and the
//! `Application` that binds them once (`main` runs it; tests may build it in process).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub use resellerd_store::{files, kv, model, store};

pub mod acme;
pub mod api;
pub mod auth;
pub mod backup;
pub mod builds;
pub mod config;
pub mod disk;
pub mod dns;
pub mod doctor;
pub mod edge;
pub mod error;
pub mod hosts;
pub mod http;
pub mod layers;
pub mod listen;
pub mod mail;
pub mod metrics;
pub mod panel;
pub mod progress;
pub mod quota;
pub mod ratelimit;
pub mod registrar;
pub mod rules;
pub mod signing;
pub mod startup;
pub mod state;
pub mod targets;
pub mod telemetry;
pub mod tls;
pub mod views;
pub mod webhooks;

use actix_web::web;
use config::Settings;

pub use files::create_private_dir;
pub use state::AppState;

/// Routes shared by both listeners.
pub fn configure_app(
    cfg: &mut web::ServiceConfig,
    state: web::Data<AppState>,
    edge: web::Data<edge::Edge>,
) {
    let max_body = state.settings.max_body();
    cfg.app_data(edge);
    cfg.app_data(state.limits.clone());
    cfg.app_data(state.auth.clone());
    cfg.app_data(state);
    api::extractor_configs(cfg, max_body);
    // The API first: routes are tried in order and the `{param}` patterns below cost a regex
    // match each. No other route starts with `/api/v1`.
    cfg.service(
        // Its own fallback, so an unknown API path is a JSON 404 on a host that names no site.
        // The rate limit, then the write gate, then the route (`layers`).
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(layers::write_gate::layer))
            .wrap(actix_web::middleware::from_fn(layers::rate_limit::layer))
            .configure(api::configure)
            .route("/openapi.json", web::get().to(api::openapi::openapi_json))
            .route("", web::get().to(api::ops::api_index))
            .route("/", web::get().to(api::ops::api_index))
            .default_service(web::to(api::ops::not_found)),
    )
    .route(
        "/team/{account}/integrations/installations/meta/{site}",
        web::get().to(api::ops::no_extensions),
    )
    .route(
        "/site/{site}/integrations/safe",
        web::get().to(api::ops::no_extensions),
    )
    .route("/healthz", web::get().to(api::ops::healthz))
    .route("/readyz", web::get().to(api::ops::readyz))
    .route("/metrics", web::get().to(api::ops::metrics))
    .configure(panel::configure)
    .route(
        "/.well-known/acme-challenge/{token}",
        web::get().to(api::ops::acme_challenge),
    );
    #[cfg(debug_assertions)]
    if std::env::var_os("RESELLERD_TEST_CLOCK").is_some_and(|v| v == "1") {
        cfg.route("/__test/clock", web::post().to(advance_clock));
    }
    cfg.default_service(web::to(api::ops::instance_fallback));
}

/// `POST /__test/clock` `{"advance_secs": n}` (operator only): moves the clock forward, so
/// integration tests check expiry without sleeping. Only in debug builds started with
/// `RESELLERD_TEST_CLOCK=1`.
#[cfg(debug_assertions)]
async fn advance_clock(
    _: auth::guard::Operator,
    body: web::Json<serde_json::Value>,
) -> error::ApiResult<actix_web::HttpResponse> {
    let secs = body["advance_secs"]
        .as_i64()
        .filter(|s| *s >= 0)
        .ok_or_else(|| error::ApiError::invalid("advance_secs: a whole number of seconds"))?;
    model::Timestamp::advance(secs);
    Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({"now": model::Timestamp::now()})))
}

/// Why a listener could not bind, and what to do.
fn cannot_listen(addr: std::net::SocketAddr, flag: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: another process is listening there (`ss -ltnp 'sport = :{}'` \
             names it); stop it or choose another port with --{flag}",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "cannot listen on {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE (the \
             packaged systemd unit grants it); or choose a port above 1023 with --{flag}"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// The server, built and bound, not yet running: `main` runs it, and tests may build it in
/// process (inside an actix system) to reach its state.
pub struct Application {
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    http: std::net::SocketAddr,
    https: std::net::SocketAddr,
}

impl Application {
    /// Opens the data dir (`startup::open`), binds both listeners with every layer and route,
    /// and records where it listens in `<data-dir>/server.json` for local tools.
    pub async fn build(settings: Settings) -> Result<Application, String> {
        let workers = settings.workers();
        let (http_addr, https_addr) = (settings.http_addr()?, settings.https_addr()?);
        let startup::Parts {
            state,
            edge,
            tls: tls_config,
        } = startup::open(settings)?;
        let request_timeout = state.settings.request_timeout();
        let max_connections = state.settings.max_connections();
        let app_state = state.clone();
        let app = move || {
            let state = app_state.clone();
            let edge = edge.clone();
            listen::app_factory(
                layers::around_every_request().configure(|cfg| configure_app(cfg, state, edge)),
            )
        };
        let bind = |addr: std::net::SocketAddr, flag| {
            listen::bind(addr).map_err(|e| cannot_listen(addr, flag, &e))
        };
        let (http_listener, https_listener) = (
            bind(http_addr, "http-addr")?,
            bind(https_addr, "https-addr")?,
        );
        let (http, https) = (
            http_listener.local_addr().map_err(|e| e.to_string())?,
            https_listener.local_addr().map_err(|e| e.to_string())?,
        );
        let server = listen::serve(
            app,
            listen::Options {
                workers,
                max_connections: max_connections.div_ceil(workers).max(1),
                request_timeout,
                http: http_listener,
                https: https_listener,
                tls: tls_config,
            },
        )
        .map_err(|e| format!("cannot start the listeners: {e}"))?;
        state.views.links.bound(http, https);
        let about = serde_json::json!({"http": http.to_string(), "https": https.to_string(), "pid": std::process::id()});
        let path = state.settings.data_dir().join("server.json");
        files::write_private(&path, about.to_string().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Application {
            server,
            state,
            http,
            https,
        })
    }

    /// The bound (HTTP, HTTPS) addresses.
    pub fn addrs(&self) -> (std::net::SocketAddr, std::net::SocketAddr) {
        (self.http, self.https)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT/SIGTERM, then stores the last traffic counters and flushes.
    pub async fn run_until_stopped(self) -> Result<(), String> {
        let result = self.server.await.map_err(|e| format!("server error: {e}"));
        let store = &self.state.store;
        if let Err(e) = self.state.traffic.store_batch(store).await {
            tracing::warn!(error = %e, "cannot store the last traffic metrics");
        }
        store.flush_blocking().map_err(|e| e.to_string())?;
        result
    }
}

/// Builds the application and serves until SIGINT/SIGTERM. `on_ready` receives the bound
/// (http, https) addresses.
pub async fn serve(
    settings: Settings,
    on_ready: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr),
) -> Result<(), String> {
    let app = Application::build(settings).await?;
    let (http, https) = app.addrs();
    on_ready(http, https);
    app.run_until_stopped().await
}
