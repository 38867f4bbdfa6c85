//! resellerd as a library: the route table and the layers every request passes, and the
//! `Application` that binds them once (`main` runs it; tests may build it in process).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub use resellerd_store::{files, kv, model, store};

pub mod acme;
pub mod api;
pub mod auth;
pub mod backup;
pub mod config;
pub mod disk;
pub mod dns;
pub mod doctor;
pub mod edge;
pub mod error;
pub mod hosts;
pub mod http;
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

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer};
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
        // Middleware runs bottom-up: the rate limit, then the write gate, then the route.
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(write_gate))
            .wrap(actix_web::middleware::from_fn(ratelimit::limit))
            .configure(api::configure)
            .route("/openapi.json", web::get().to(api::openapi::openapi_json))
            .route("", web::get().to(api::ops::api_index))
            .route("/", web::get().to(api::ops::api_index))
            .default_service(web::to(api::ops::not_found)),
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
    who: auth::Principal,
    body: web::Json<serde_json::Value>,
) -> error::ApiResult<actix_web::HttpResponse> {
    who.require_operator()?;
    let secs = body["advance_secs"]
        .as_i64()
        .filter(|s| *s >= 0)
        .ok_or_else(|| error::ApiError::invalid("advance_secs: a whole number of seconds"))?;
    model::Timestamp::advance(secs);
    Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({"now": model::Timestamp::now()})))
}

/// Any error response without a body of its own (actix's 404/405, a failed extractor that did
/// not go through our handlers) gets the JSON error shape.
fn json_error_fallback<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    if res.headers().contains_key(header::CONTENT_TYPE) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let err = match status.as_u16() {
        404 => error::ApiError::NotFound("path"),
        405 => error::ApiError::MethodNotAllowed,
        413 => error::ApiError::PayloadTooLarge(0),
        s if s < 500 => {
            error::ApiError::invalid(status.canonical_reason().unwrap_or("bad request"))
        }
        _ => error::ApiError::internal(status.to_string()),
    };
    let (req, _) = res.into_parts();
    let body = actix_web::ResponseError::error_response(&err).map_into_boxed_body();
    let mut resp = ServiceResponse::new(req, body).map_into_right_body();
    *resp.response_mut().status_mut() = status;
    Ok(ErrorHandlerResponse::Response(resp))
}

/// Refuses over-long URIs (414) before anything else looks at the request.
async fn refuse_long_uris(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let uri = req.uri();
    if uri.path_and_query().map_or(0, |p| p.as_str().len()) > error::MAX_URI {
        return Ok(req.error_response(error::ApiError::UriTooLong));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// The instance's own names (`--api-host`, loopback names, IP literals) are the app's on every
/// path: no site can answer there, whatever a tenant named or deployed. Any other host is a
/// site's on every path (only an ACME HTTP-01 token in flight for that very host is answered by
/// the app), or the edge's "No site here" page: never the API, so a name nobody configured
/// cannot reach the API or the panel's origin.
async fn route_by_host(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::FromRequest;
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let host = http::host(req.request());
    let acme_token = || {
        req.path()
            .strip_prefix("/.well-known/acme-challenge/")
            .is_some_and(|token| state.acme.challenge_response(&host, token).is_some())
    };
    if state.names.is_instance_name(&host) || acme_token() {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let Some(edge) = req.app_data::<web::Data<edge::Edge>>().cloned() else {
        return Ok(req.error_response(error::ApiError::internal("the edge is not configured")));
    };
    let target = match state.hosts.site_for_host(&state.store, &host) {
        Ok(t) => t,
        Err(e) => return Ok(req.error_response(e)),
    };
    let (http_req, mut raw) = req.into_parts();
    let payload = web::Payload::from_request(&http_req, &mut raw).await?;
    let resp = match &target {
        Some(target) => edge::serve(&http_req, payload, &state, &edge, target).await,
        None => edge::no_site(&http_req),
    };
    Ok(ServiceResponse::new(http_req, resp))
}

/// Answers `e` to a request refused before its body was read, once the body is drained (see
/// `http::drain`), so the client reads the refusal instead of a reset.
async fn refuse_unread(mut req: ServiceRequest, e: error::ApiError) -> ServiceResponse<BoxBody> {
    use actix_web::HttpMessage;
    http::drain(req.take_payload()).await;
    req.error_response(e)
}

/// Every mutating API call, in one place: refused with 507/503 while the disk is below its
/// reserve or the store cannot write (deletes still go through); its whole body read first
/// (within `--max-body` and `--body-timeout`); run holding the store's write gate for reading, so
/// a backup (which holds it for writing) never captures half a request and a client trickling
/// its body never holds the gate; then its audit entry queued and everything made durable by one
/// group commit before it is answered. Routes that stream large bodies or wait on the network
/// take the gate themselves, only for their writes (`api::GateMode`).
async fn write_gate(
    mut req: ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::http::Method;
    use actix_web::HttpMessage;
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state.filter(|_| !reads) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if *req.method() != Method::DELETE {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        if let Err(e) = state.disk.check_room(declared) {
            return Ok(refuse_unread(req, e).await);
        }
        if let Some(e) = state.store.refusal() {
            return Ok(refuse_unread(req, error::ApiError::from(e)).await);
        }
    }
    // The caller is known before its body is read: an anonymous or bad credential is refused
    // without buffering up to `--max-body` for it. (Every mutating API call needs a credential.)
    {
        use actix_web::FromRequest;
        let (http_req, payload) = req.parts_mut();
        if let Err(e) = auth::Principal::from_request(http_req, payload).await {
            return Ok(refuse_unread(req, e).await);
        }
    }
    let mode = api::gate_mode(&req);
    // A streaming handler's body stays reachable from here, so what it left unread when it
    // refused can be drained (see `http::drain`).
    let mut streamed = None;
    let gate = if mode == api::GateMode::StreamsBody {
        let shared = http::SharedPayload::new(req.take_payload());
        req.set_payload(shared.clone().into_payload());
        streamed = Some(shared);
        None
    } else {
        let limit = state.settings.max_body().max(api::reseller::MAX_PAGE_BYTES);
        let timeout = state.settings.body_timeout();
        let mut payload = req.take_payload();
        let body = match http::read_body(&mut payload, limit, timeout).await {
            Ok(body) => body.freeze(),
            Err(e @ error::ApiError::PayloadTooLarge(_)) => {
                http::drain(payload).await;
                return Ok(req.error_response(e));
            }
            Err(e) => return Ok(req.error_response(e)),
        };
        req.set_payload(actix_web::dev::Payload::from(body));
        if mode == api::GateMode::WaitsOnNetwork {
            None
        } else {
            let gate = state.store.write_gate().read_owned().await;
            req.extensions_mut().insert(api::GateHeld);
            Some(gate)
        }
    };
    let res = next.call(req).await?;
    if let Some(body) =
        streamed.filter(|_| res.status().is_client_error() || res.status().is_server_error())
    {
        http::drain(body).await;
    }
    let ip = http::client_ip(res.request(), &state.trusted_proxies);
    api::audit::record(&res, ip);
    let flushed = state.store.flush().await;
    drop(gate);
    match flushed {
        Ok(()) => Ok(res.map_into_boxed_body()),
        Err(e) => {
            let (req, _) = res.into_parts();
            let body = actix_web::ResponseError::error_response(&error::ApiError::from(e));
            Ok(ServiceResponse::new(req, body))
        }
    }
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

fn access_log<B>(
    req_info: (String, String, String, Option<std::net::IpAddr>),
    start: std::time::Instant,
    res: &ServiceResponse<B>,
) {
    let (method, host, path, ip) = req_info;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    telemetry::access(&method, &host, &path, res.status().as_u16(), ms, ip);
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
        let server = HttpServer::new(move || {
            let state = app_state.clone();
            let edge = edge.clone();
            App::new()
                // Bottom-up: the access line, JSON for bare errors, long URIs, then the host.
                .wrap(actix_web::middleware::from_fn(route_by_host))
                .wrap(actix_web::middleware::from_fn(refuse_long_uris))
                .wrap(ErrorHandlers::new().default_handler(json_error_fallback))
                .wrap_fn(|req: ServiceRequest, srv| {
                    use actix_web::dev::Service;
                    let start = std::time::Instant::now();
                    let trusted = req
                        .app_data::<web::Data<AppState>>()
                        .map(|s| s.trusted_proxies.as_slice())
                        .unwrap_or_default();
                    let ip = http::client_ip(req.request(), trusted);
                    if let Some(ip) = ip {
                        actix_web::HttpMessage::extensions_mut(&req).insert(http::ClientIp(ip));
                    }
                    // Only pay for the log line's strings when access logging is on.
                    let info =
                        tracing::enabled!(target: "access", tracing::Level::INFO).then(|| {
                            let host = http::host(req.request());
                            (req.method().to_string(), host, req.path().to_string(), ip)
                        });
                    let fut = srv.call(req);
                    async move {
                        let res: ServiceResponse<EitherBody<BoxBody>> = fut.await?;
                        if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
                            state.metrics.observe(&res, start.elapsed());
                        }
                        if let Some(info) = info {
                            access_log(info, start, &res);
                        }
                        Ok(res)
                    }
                })
                .configure(|cfg| configure_app(cfg, state, edge))
        })
        .workers(workers)
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(2))
        .max_connections(max_connections.div_ceil(workers).max(1))
        .bind(http_addr)
        .map_err(|e| cannot_listen(http_addr, "http-addr", &e))?
        .bind_rustls_0_23(https_addr, tls_config)
        .map_err(|e| cannot_listen(https_addr, "https-addr", &e))?;
        let addrs = server.addrs();
        let (http, https) = (addrs[0], addrs[addrs.len() - 1]);
        state.views.links.bound(http, https);
        let about = serde_json::json!({"http": http.to_string(), "https": https.to_string(), "pid": std::process::id()});
        let path = state.settings.data_dir().join("server.json");
        files::write_private(&path, about.to_string().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Application {
            server: server.run(),
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
