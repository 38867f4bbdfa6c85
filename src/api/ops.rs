//! Liveness and readiness probes, and JSON fallbacks for unknown paths and methods.

use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.store.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "store unavailable"}))
    }
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
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
