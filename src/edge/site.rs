//! A site's request from start to end: suspension, the password gate, form submissions, then
//! files, redirects and the not-found chain (site `/404.html` -> reseller page -> built-in).

use super::builtin::{builtin, html, reseller_page};
use super::forms::submit_form;
use super::password::{has_pass, pass_token, password_gate};
use super::proxy;
use super::serve::{self, Route};
use crate::error::ApiResult;
use crate::store::pages::PageKind;
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use crate::AppState;
use actix_web::http::{header, Method, StatusCode};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

/// Not found: the site's `/404.html`, else the reseller's page, else the built-in one; always 404.
async fn not_found(
    req: &HttpRequest,
    state: &AppState,
    edge: &super::Edge,
    reseller: &Reseller,
    ix: Option<&serve::DeployIndex>,
) -> HttpResponse {
    if let Some(ix) = ix {
        if let Some(file) = ix.files.get("404.html") {
            if let Ok(resp) = send_file(
                req,
                state,
                edge,
                ix,
                req.path(),
                file,
                StatusCode::NOT_FOUND,
            )
            .await
            {
                return resp;
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

/// A file in the coding the request asks for (a variant that is gone is no error: the original
/// goes instead).
async fn send_file(
    req: &HttpRequest,
    state: &AppState,
    edge: &super::Edge,
    ix: &serve::DeployIndex,
    path: &str,
    file: &serve::FileEntry,
    status: StatusCode,
) -> ApiResult<HttpResponse> {
    let (sha, coding) = file.negotiate(req);
    let sent = match (edge.blob(&state.store, sha).await, coding) {
        (Ok(data), coding) => (data, coding),
        (Err(crate::error::ApiError::NotFound(_)), Some(_)) => {
            (edge.blob(&state.store, &file.sha).await?, None)
        }
        (Err(e), _) => return Err(e),
    };
    Ok(serve::file_response(req, ix, path, file, status, sent))
}

/// True if a segment of the (decoded) path is `.` or `..` followed by `;` parameters
/// (`..;`, `.;x`): Tomcat and Spring read those as dot segments, so a rule's prefix would not
/// hold at the origin.
pub fn has_dot_segment_with_params(path: &str) -> bool {
    path.split('/').any(|seg| {
        seg.split_once(';')
            .is_some_and(|(head, _)| head == "." || head == "..")
    })
}

pub async fn serve_site(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    edge: &super::Edge,
    target: &crate::hosts::HostTarget,
    deploy: Option<&str>,
) -> ApiResult<HttpResponse> {
    let (site, reseller): (&Site, &Reseller) = (&target.site, &target.reseller);
    let method = req.method().clone();
    // TRACE and TRACK would echo what a proxy rule adds (a profile's secret headers), CONNECT
    // is no site's: the methods a site answers or proxies are a fixed list.
    if !crate::targets::PROXIED_METHODS.contains(&method.as_str()) {
        return Ok(builtin(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "This site does not answer this method.",
        ));
    }
    let path = percent_encoding::percent_decode_str(req.path()).decode_utf8_lossy();
    if has_dot_segment_with_params(&path) {
        return Ok(builtin(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "A path segment may not be a dot segment with parameters (such as ..;).",
        ));
    }
    if reseller.suspended {
        return Ok(builtin(
            StatusCode::SERVICE_UNAVAILABLE,
            "Site unavailable",
            "This site is temporarily unavailable.",
        ));
    }
    // An owner over its plan's bandwidth (with `overuse: block`) gets the quota page.
    let now = crate::model::Timestamp::now();
    if state
        .blocked
        .is_blocked(&site.reseller_id, &site.user_id, now)
    {
        return Ok(
            match reseller_page(state, reseller, PageKind::QuotaExceeded) {
                Some(page) => html(StatusCode::SERVICE_UNAVAILABLE, page),
                None => builtin(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Site unavailable",
                    "This site has used all the bandwidth its plan allows this month.",
                ),
            },
        );
    }
    // A suspended owner's sites show the reseller's page for it; nothing is deleted.
    if target.suspended {
        return Ok(match reseller_page(state, reseller, PageKind::Suspended) {
            Some(page) => html(StatusCode::SERVICE_UNAVAILABLE, page),
            None => builtin(
                StatusCode::SERVICE_UNAVAILABLE,
                "Site unavailable",
                "This site is temporarily unavailable.",
            ),
        });
    }
    if let Some(token) = pass_token(state, site) {
        if !has_pass(req, &token) {
            return password_gate(req, payload, state, edge, reseller, site, &token).await;
        }
    }
    let ix = match deploy {
        Some(id) => edge.deploy_index(&state.store, id).await?,
        None => None,
    };
    let route = ix.as_ref().map(|ix| serve::route(ix, &path));
    // A rule to one of the reseller's proxy profiles takes every method.
    if let Some(Route::External { url }) = &route {
        if let Some((url, profile)) = proxy::target(state, site, url, req)? {
            return Ok(
                proxy::forward(req, payload, &edge.proxy, state, target, url, &profile).await,
            );
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
    let (Some(ix), Some(route)) = (&ix, route) else {
        return Ok(not_found(req, state, edge, reseller, None).await);
    };
    let redirect = |location: String, status: StatusCode| {
        HttpResponse::build(status)
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, serve::CACHE_CONTROL))
            .finish()
    };
    match route {
        Route::File { file, status } => send_file(req, state, edge, ix, &path, file, status).await,
        Route::Redirect { location, status } => Ok(redirect(location, status)),
        Route::External { url } => Ok(redirect(url, StatusCode::FOUND)),
        Route::NotFound => Ok(not_found(req, state, edge, reseller, Some(ix)).await),
    }
}
