//! The password gate of a protected site: the password page until a POST with the right
//! password (argon2, off the workers, rate-limited per IP) sets a signed cookie.

use super::builtin::{password_page, too_many};
use super::forms::{read_form, value};
use crate::error::{ApiError, ApiResult};
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use crate::AppState;
use actix_web::http::{header, Method};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

const COOKIE: &str = "resellerd_pw";

/// The cookie value that proves the visitor knew the site's current password.
pub(super) fn pass_token(state: &AppState, site: &Site) -> Option<String> {
    let pw = site.password.as_ref()?;
    let mut msg = site.id.as_bytes().to_vec();
    msg.extend_from_slice(&pw.salt);
    msg.extend_from_slice(&pw.hash);
    Some(hex::encode(state.secret.sign(&msg)))
}

pub(super) fn has_pass(req: &HttpRequest, expected: &str) -> bool {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| {
            k == COOKIE && crate::model::secret::hashes_equal(v.as_bytes(), expected.as_bytes())
        })
}

/// A `Cookie` header without the password cookie (None when nothing is left).
pub(super) fn without_pass_cookie(value: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(value);
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').map_or(*c, |(k, _)| k.trim()) != COOKIE)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; ").into_bytes())
}

/// A protected site without a valid cookie: a POST is a password attempt, anything else the page.
pub(super) async fn password_gate(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    edge: &super::Edge,
    reseller: &Reseller,
    site: &Site,
    token: &str,
) -> ApiResult<HttpResponse> {
    if req.method() != Method::POST {
        return Ok(password_page(state, reseller));
    }
    let ip = crate::http::client_ip(req, &state.trusted_proxies);
    let key = ip.map(crate::http::ip_key).unwrap_or_default();
    let attempt = state.limits.password_attempts.take(&key);
    if !attempt.allowed {
        return Ok(too_many(
            "Too many attempts",
            "Too many password attempts. Wait a few minutes and try again.",
            attempt.wait_secs,
        ));
    }
    let deadline = state.settings.body_timeout();
    let fields = match read_form(req, payload, 64 * 1024, deadline).await {
        Ok(fields) => fields,
        Err(e @ ApiError::BodyTimeout(_)) => return Err(e),
        Err(_) => Vec::new(),
    };
    let given = value(&fields, "password").unwrap_or_default().to_string();
    let ok = match &site.password {
        Some(pw) => {
            // Argon2 is slow by design: off the workers, and only a few at once.
            let _permit = edge
                .password_checks
                .acquire()
                .await
                .map_err(ApiError::internal)?;
            let pw = pw.clone();
            web::block(move || pw.verify(&given))
                .await
                .map_err(ApiError::internal)?
        }
        None => false,
    };
    if !ok {
        return Ok(password_page(state, reseller));
    }
    let secure = crate::http::is_https(req, &state.trusted_proxies);
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000{}",
        if secure { "; Secure" } else { "" }
    );
    Ok(HttpResponse::SeeOther()
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::LOCATION, same_site_location(req)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// Where to send a visitor back to on this site: the request's path and query, made relative to
/// this host (`//evil.example/` or `/\evil.example/` would be another host to a browser).
fn same_site_location(req: &HttpRequest) -> String {
    let path = format!("/{}", req.path().trim_start_matches(['/', '\\']));
    match req.query_string() {
        "" => path,
        q => format!("{path}?{q}"),
    }
}
