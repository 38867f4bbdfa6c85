//! Form submissions at the edge: limits (per IP, per site, per form, the disk), the form a POST
//! names, and the answer (the form's action, or the reseller's success page).

use super::builtin::{builtin, html, reseller_page, too_many};
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::pages::PageKind;
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use resellerd_store::error::StoreError;

/// The most fields one multipart submission may have.
const MAX_PARTS: usize = 1000;

/// Reads a form body (urlencoded or multipart) as name/value pairs within `limit` bytes and the
/// body deadline (408 past it); file parts keep their file name.
pub(super) async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> ApiResult<Vec<(String, String)>> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        return tokio::time::timeout(deadline, read_multipart(req, payload, limit))
            .await
            .map_err(|_| ApiError::BodyTimeout(deadline.as_secs()))?;
    }
    let body = crate::http::read_body(payload, limit, deadline).await?;
    serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::invalid(format!("bad form body: {e}")))
}

/// A multipart body's fields. Every byte counts toward `limit`, part headers and boundaries
/// included, not only field values: the stream itself ends in an error past it.
async fn read_multipart(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> ApiResult<Vec<(String, String)>> {
    use futures_util::StreamExt;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let limited = payload.map(move |chunk| {
        let chunk = chunk?;
        let total = counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        if total + chunk.len() > limit {
            return Err(actix_web::error::PayloadError::Overflow);
        }
        Ok(chunk)
    });
    let bad = |e: &dyn std::fmt::Display| {
        if seen.load(std::sync::atomic::Ordering::Relaxed) > limit {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::invalid(format!("bad multipart body: {e}"))
        }
    };
    let mut mp = actix_multipart::Multipart::new(req.headers(), limited);
    let mut out = Vec::new();
    while let Some(field) = mp.next().await {
        let mut field = field.map_err(|e| bad(&e))?;
        if out.len() >= MAX_PARTS {
            return Err(ApiError::invalid(format!(
                "a form submission has at most {MAX_PARTS} fields"
            )));
        }
        let name = field.name().unwrap_or_default().to_string();
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_string);
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| bad(&e))?;
            if filename.is_none() {
                value.extend_from_slice(&chunk);
            }
        }
        let value = filename.unwrap_or_else(|| String::from_utf8_lossy(&value).into_owned());
        out.push((name, value));
    }
    Ok(out)
}

pub(super) fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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
pub(super) async fn submit_form(
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
    let ip = crate::http::client_ip(req, &state.trusted_proxies);
    let limits = &state.limits;
    for verdict in [
        limits
            .forms_per_ip
            .take(&ip.map(crate::http::ip_key).unwrap_or_default()),
        limits.forms_per_site.take(&site.id),
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
            Err(StoreError::Conflict(crate::error::Conflict::FormFull, _)) => {
                return Ok(builtin(
                    StatusCode::FORBIDDEN,
                    "This form is full",
                    "This form is not accepting more submissions right now.",
                ))
            }
            Err(StoreError::QuotaExceeded { .. }) => {
                return Ok(builtin(
                    StatusCode::FORBIDDEN,
                    "This form is full",
                    "This site has received all the submissions its plan allows this month.",
                ))
            }
            Err(e) => return Err(e.into()),
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
