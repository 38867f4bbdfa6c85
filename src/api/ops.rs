//! Liveness and readiness probes, and JSON fallbacks for unknown paths and methods.

use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};

/// Netlify's extensions ("integrations") of a site, which `netlify build` and `netlify deploy`
/// ask the API host for (`/team/{account}/integrations/installations/meta/{site}`,
/// `/site/{site}/integrations/safe`, outside `/api/v1`): resellerd has none, so always `[]`,
/// whoever asks (the answer says nothing about any site).
pub async fn no_extensions() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!([]))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Ready unless the store cannot read or write or the disk is below its reserve, with the
/// reason, so a load balancer sends writers elsewhere while sites are still served.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let disk = &state.disk;
    let reason = if !state.store.is_ready() {
        Some("the store cannot read".to_string())
    } else if state.store.is_failed() {
        Some("the store cannot write (a write failed; see the server log)".to_string())
    } else if disk.is_low() {
        Some(format!(
            "free space on the data dir's filesystem ({} bytes) is below the reserve ({} bytes)",
            disk.free(),
            disk.reserve()
        ))
    } else {
        None
    };
    match reason {
        None => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "reason": reason})),
    }
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("path"))
}

/// `GET /api/v1`: where the API's description and the panel are.
pub async fn api_index() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "name": "resellerd",
        "version": env!("CARGO_PKG_VERSION"),
        "openapi": "/api/v1/openapi.json",
        "panel": "/admin/",
        "health": "/healthz",
    }))
}

/// Any path the app does not route, on an instance name: netlify-cli's
/// root-level integration lookups get an empty list, and anything else is an API 404, never a
/// site.
pub async fn instance_fallback(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let get = req.method() == actix_web::http::Method::GET;
    let segs: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    let integrations = matches!(
        segs.as_slice(),
        ["team", _, "integrations", "installations", "meta", _]
            | ["site", _, "integrations", "safe"]
    );
    if get && integrations {
        return Ok(HttpResponse::Ok().json(Vec::<()>::new()));
    }
    Err(ApiError::NotFound("path"))
}

/// HTTP-01: the key authorization for a token of an order in flight.
pub async fn acme_challenge(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let answer = state
        .acme
        .challenge_response(&crate::http::host(&req), &token)
        .ok_or(ApiError::NotFound("challenge"))?;
    Ok(HttpResponse::Ok().content_type("text/plain").body(answer))
}

/// `GET /metrics` for the operator's scraper (Prometheus `bearer_token`).
pub async fn metrics(
    state: web::Data<AppState>,
    _: crate::auth::guard::Operator,
) -> Result<HttpResponse, ApiError> {
    let store = &state.store;
    let certificates = store
        .certs()
        .all()?
        .into_iter()
        .filter_map(|c| c.not_after.map(|t| (c.domain, t.0 / 1000)))
        .collect();
    let sample = crate::metrics::Sample {
        free_bytes: state.disk.free(),
        reserve_bytes: state.disk.reserve(),
        leader: store.is_leader(),
        store_failed: store.is_failed(),
        webhook_depth: store.webhooks().pending_count(),
        mail_depth: store.mail().pending_count() as u64,
        flushes: crate::store::FLUSHES.load(std::sync::atomic::Ordering::Relaxed),
        flush_micros: crate::store::FLUSH_MICROS.load(std::sync::atomic::Ordering::Relaxed),
        certificates,
    };
    Ok(HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(state.metrics.render(&sample)))
}
