//! A site's request from start to end: the password gate, form submissions, files, and the
//! pages shown instead (site `/404.html` -> reseller page -> built-in).

use super::serve::{self, Route};
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::pages::PageKind;
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use crate::AppState;
use actix_web::http::{header, Method, StatusCode};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

const COOKIE: &str = "resellerd_pw";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(status: StatusCode, body: String) -> HttpResponse {
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

const BUILTIN_PASSWORD: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Password required</title>\
<meta name=\"viewport\" content=\"width=device-width\"></head>\
<body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
<h1>Password required</h1><form method=\"post\"><label>Password <input type=\"password\" name=\"password\" autofocus></label> \
<button type=\"submit\">Enter</button></form></body></html>";

fn reseller_page(state: &AppState, reseller: &Reseller, kind: PageKind) -> Option<String> {
    state.store.pages().get(&reseller.id, kind).ok().flatten()
}

/// Not found: the site's `/404.html`, else the reseller's page, else the built-in one; always 404.
async fn not_found(
    req: &HttpRequest,
    state: &AppState,
    reseller: &Reseller,
    ix: Option<&serve::DeployIndex>,
) -> HttpResponse {
    if let Some(ix) = ix {
        if let Some(file) = ix.files.get("404.html") {
            if let Ok(data) = state.edge.blob(&state.store, &file.sha).await {
                return serve::file_response(
                    req,
                    ix,
                    req.path(),
                    file,
                    StatusCode::NOT_FOUND,
                    data,
                );
            }
        }
    }
    match reseller_page(state, reseller, PageKind::NotFound) {
        Some(page) => html(StatusCode::NOT_FOUND, page),
        None => builtin(
            StatusCode::NOT_FOUND,
            "Page not found",
            "The page you are looking for does not exist.",
        ),
    }
}

fn password_page(state: &AppState, reseller: &Reseller) -> HttpResponse {
    let page = reseller_page(state, reseller, PageKind::Password)
        .unwrap_or_else(|| BUILTIN_PASSWORD.to_string());
    html(StatusCode::UNAUTHORIZED, page)
}

/// The cookie value that proves the visitor knew the site's current password.
fn pass_token(state: &AppState, site: &Site) -> Option<String> {
    let pw = site.password.as_ref()?;
    let mut msg = site.id.as_bytes().to_vec();
    msg.extend_from_slice(&pw.salt);
    msg.extend_from_slice(&pw.hash);
    Some(hex::encode(state.edge.sign(&msg)))
}

fn has_pass(req: &HttpRequest, expected: &str) -> bool {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| {
            k == COOKIE && crate::model::secret::hashes_equal(v.as_bytes(), expected.as_bytes())
        })
}

/// Reads a form body (urlencoded or multipart) as name/value pairs within `limit` bytes and the
/// body deadline (408 past it); file parts keep their file name.
async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> ApiResult<Vec<(String, String)>> {
    tokio::time::timeout(deadline, read_form_body(req, payload, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout(deadline.as_secs()))?
}

async fn read_form_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> ApiResult<Vec<(String, String)>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        use futures_util::StreamExt;
        let mut mp = actix_multipart::Multipart::new(req.headers(), payload);
        let mut out = Vec::new();
        let mut total = 0usize;
        while let Some(field) = mp.next().await {
            let mut field =
                field.map_err(|e| ApiError::invalid(format!("bad multipart body: {e}")))?;
            let name = field.name().unwrap_or_default().to_string();
            let filename = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(str::to_string);
            let mut value = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::invalid(format!("bad multipart body: {e}")))?;
                total += chunk.len();
                if total > limit {
                    return Err(ApiError::PayloadTooLarge(limit));
                }
                if filename.is_none() {
                    value.extend_from_slice(&chunk);
                }
            }
            let value = filename.unwrap_or_else(|| String::from_utf8_lossy(&value).into_owned());
            out.push((name, value));
        }
        return Ok(out);
    }
    // The caller's deadline covers the whole read.
    let body =
        crate::http::read_body(payload, limit, std::time::Duration::from_secs(86_400)).await?;
    serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::invalid(format!("bad form body: {e}")))
}

fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub async fn serve_site(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    site: &Site,
    reseller: &Reseller,
    deploy: Option<&str>,
) -> ApiResult<HttpResponse> {
    let method = req.method().clone();
    if reseller.suspended {
        return Ok(builtin(
            StatusCode::SERVICE_UNAVAILABLE,
            "Site unavailable",
            "This site is temporarily unavailable.",
        ));
    }
    if let Some(token) = pass_token(state, site) {
        if !has_pass(req, &token) {
            return password_gate(req, payload, state, reseller, site, &token).await;
        }
    }
    if method == Method::POST {
        return submit_form(req, payload, state, site, reseller).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return Ok(builtin(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "This site only answers GET, HEAD and form POSTs.",
        ));
    }
    let ix = match deploy {
        Some(id) => state.edge.deploy_index(&state.store, id)?,
        None => None,
    };
    let Some(ix) = ix else {
        return Ok(not_found(req, state, reseller, None).await);
    };
    let path = percent_encoding::percent_decode_str(req.path()).decode_utf8_lossy();
    match serve::route(&ix, &path) {
        Route::File { file, status } => {
            let data = state.edge.blob(&state.store, &file.sha).await?;
            Ok(serve::file_response(req, &ix, &path, file, status, data))
        }
        Route::Redirect { location, status } => Ok(HttpResponse::build(status)
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, serve::CACHE_CONTROL))
            .finish()),
        Route::NotFound => Ok(not_found(req, state, reseller, Some(&ix)).await),
    }
}

/// A protected site without a valid cookie: a POST is a password attempt, anything else the page.
async fn password_gate(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    reseller: &Reseller,
    site: &Site,
    token: &str,
) -> ApiResult<HttpResponse> {
    if req.method() != Method::POST {
        return Ok(password_page(state, reseller));
    }
    let ip = crate::http::client_ip(req, &state.trusted_proxies);
    let key = ip.map(crate::http::ip_key).unwrap_or_default();
    let attempt = state
        .limits
        .password_attempts
        .take(&key, 1.0, std::time::Instant::now());
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
            let _permit = state
                .edge
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

fn too_many(title: &str, text: &str, wait_secs: u64) -> HttpResponse {
    let mut resp = builtin(StatusCode::TOO_MANY_REQUESTS, title, text);
    if let Ok(v) = header::HeaderValue::from_str(&wait_secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A plain HTML form posts without `form-name` (Netlify injects that field when it processes
/// the HTML; we serve files unchanged): the one form whose `action` is this path, or that has
/// no action and sits on this page.
fn form_by_target(
    state: &AppState,
    site: &Site,
    path: &str,
) -> ApiResult<Option<crate::store::forms::Form>> {
    let p = path.trim_end_matches('/');
    let pages = [
        format!("{p}/index.html"),
        format!("{p}.html"),
        path.to_string(),
    ];
    let mut matching =
        state
            .store
            .forms()
            .list(&site.id)?
            .into_iter()
            .filter(|f| match &f.action {
                Some(a) => a.split(['?', '#']).next() == Some(path),
                None => f.paths.iter().any(|fp| pages.contains(fp)),
            });
    Ok(match (matching.next(), matching.next()) {
        (Some(f), None) => Some(f),
        _ => None,
    })
}

/// A POST with `form-name`: stored as a submission of that detected form (a filled honeypot is
/// accepted and dropped), then 303 to the form's action or the reseller's success page.
async fn submit_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    site: &Site,
    reseller: &Reseller,
) -> ApiResult<HttpResponse> {
    if state.disk.check_room(0).is_err() || state.store.is_failed() {
        let mut resp = builtin(
            StatusCode::INSUFFICIENT_STORAGE,
            "Try again later",
            "This site cannot accept form submissions right now. Please try again later.",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
        return Ok(resp);
    }
    let now = std::time::Instant::now();
    let ip = crate::http::client_ip(req, &state.trusted_proxies);
    let limits = &state.limits;
    for verdict in [
        limits
            .forms_per_ip
            .take(&ip.map(crate::http::ip_key).unwrap_or_default(), 1.0, now),
        limits.forms_per_site.take(&site.id, 1.0, now),
    ] {
        if !verdict.allowed {
            return Ok(too_many(
                "Too many submissions",
                "Too many form submissions. Wait a minute and try again.",
                verdict.wait_secs,
            ));
        }
    }
    let s = &state.settings;
    let fields = match read_form(req, payload, s.max_body(), s.body_timeout()).await {
        Ok(f) => f,
        Err(ApiError::PayloadTooLarge(_)) => {
            return Ok(builtin(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Submission too large",
                "The form submission is too large.",
            ))
        }
        Err(e @ ApiError::BodyTimeout(_)) => return Err(e),
        Err(_) => Vec::new(),
    };
    let form = match value(&fields, "form-name") {
        Some(name) => state.store.forms().by_name(&site.id, name)?,
        None => form_by_target(state, site, req.path())?,
    };
    let Some(form) = form else {
        return Ok(builtin(
            StatusCode::NOT_FOUND,
            "Form not found",
            "This site has no form by that name.",
        ));
    };
    let spam = form
        .honeypot
        .as_deref()
        .and_then(|h| value(&fields, h))
        .is_some_and(|v| !v.is_empty());
    if !spam {
        let data: Vec<(String, String)> = fields
            .into_iter()
            .filter(|(k, _)| k != "form-name" && Some(k.as_str()) != form.honeypot.as_deref())
            .collect();
        let (scheme, host) = crate::http::origin(req, &state.trusted_proxies);
        let max = s.max_submissions_per_form();
        match state.store.forms().submit(
            &form,
            data,
            format!("{scheme}://{host}"),
            max,
            Timestamp::now(),
        ) {
            Ok(_) => {}
            Err(ApiError::Conflict("form_full", _)) => {
                return Ok(builtin(
                    StatusCode::FORBIDDEN,
                    "This form is full",
                    "This form is not accepting more submissions right now.",
                ))
            }
            Err(e) => return Err(e),
        }
        state.store.flush().await?;
    }
    if let Some(action) = &form.action {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, action.as_str()))
            .finish());
    }
    Ok(
        match reseller_page(state, reseller, PageKind::FormSuccess) {
            Some(page) => html(StatusCode::OK, page),
            None => builtin(
                StatusCode::OK,
                "Thank you",
                "Your form submission has been received.",
            ),
        },
    )
}
