//! The pages the edge shows instead of a site's own: built-in ones, and the reseller's custom
//! pages (`not_found`, `password`, `form_success`) where it set them.

use crate::store::pages::PageKind;
use crate::store::resellers::Reseller;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A plain built-in page.
pub fn builtin(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    html(
        status,
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
             <meta name=\"viewport\" content=\"width=device-width\"></head>\
             <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
             <h1>{t}</h1><p>{x}</p></body></html>",
            t = escape(title),
            x = escape(text)
        ),
    )
}

pub(super) const BUILTIN_PASSWORD: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Password required</title>\
<meta name=\"viewport\" content=\"width=device-width\"></head>\
<body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
<h1>Password required</h1><form method=\"post\"><label>Password <input type=\"password\" name=\"password\" autofocus></label> \
<button type=\"submit\">Enter</button></form></body></html>";

pub(super) fn reseller_page(
    state: &AppState,
    reseller: &Reseller,
    kind: PageKind,
) -> Option<String> {
    state.store.pages().get(&reseller.id, kind).ok().flatten()
}

pub(super) fn password_page(state: &AppState, reseller: &Reseller) -> HttpResponse {
    let page = reseller_page(state, reseller, PageKind::Password)
        .unwrap_or_else(|| BUILTIN_PASSWORD.to_string());
    html(StatusCode::UNAUTHORIZED, page)
}

/// A 429 page with `Retry-After`.
pub(super) fn too_many(title: &str, text: &str, wait_secs: u64) -> HttpResponse {
    let mut resp = builtin(StatusCode::TOO_MANY_REQUESTS, title, text);
    if let Ok(v) = header::HeaderValue::from_str(&wait_secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
