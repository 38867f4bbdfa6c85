//! The reseller's own account: `GET/PATCH /reseller` and the custom pages
//! `PUT/GET/DELETE /reseller/pages/{not_found,form_success,password}`.

use super::{no_content, nullable};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::{DomainName, Email, IpAllowList, Permission, Timestamp};
use crate::store::pages::PageKind;
use crate::store::resellers::{Reseller, ResellerPatch, MAX_TOKENS_LIMIT, MAX_TOKEN_TTL};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

pub const MAX_PAGE_BYTES: usize = 512 * 1024;

super::endpoints! { ENDPOINTS:
    "/reseller" {
        get get Key(ANY);
        patch update Key(ST);
    }
    "/reseller/pages/{kind}" {
        put put_page Key(ST);
        get get_page Key(ST);
        delete delete_page Key(ST);
    }
}

#[utoipa::path(
get, path = "/api/v1/reseller", tag = "reseller",
    responses((status = 200, description = "The reseller account", body = Reseller))
)]
async fn get(who: Principal) -> ApiResult<HttpResponse> {
    let reseller = match &who {
        Principal::Reseller { reseller, .. } => reseller,
        _ => {
            return Err(ApiError::Forbidden(
                "this endpoint needs a reseller API key".into(),
            ))
        }
    };
    Ok(HttpResponse::Ok().json(reseller))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PatchResellerAccount)]
struct PatchReseller {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    preview_domain: Option<Option<DomainName>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    notification_email: Option<Option<Email>>,
    allowed_ips: Option<IpAllowList>,
    /// Seconds a new access token lives when `POST /access_tokens` names no `expires_in`
    /// (60 s to 10 years); `null`: tokens never expire.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    access_token_ttl: Option<Option<u64>>,
    /// Live access tokens a user may have, 1 to 1000; issuing one more revokes the oldest.
    max_tokens_per_user: Option<u32>,
}

#[utoipa::path(
patch, path = "/api/v1/reseller", tag = "reseller", request_body = PatchReseller,
    responses((status = 200, description = "The updated reseller account", body = Reseller))
)]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    body: web::Json<PatchReseller>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::SettingsWrite)?;
    let b = body.into_inner();
    if b.allowed_ips.is_some() {
        // The reseller-wide allowlist governs every key: changing it is key management.
        who.reseller(Permission::KeysManage)?;
    }
    if let Some(Some(ttl)) = b.access_token_ttl {
        token_ttl(ttl)?;
    }
    if let Some(max) = b.max_tokens_per_user {
        if !(1..=MAX_TOKENS_LIMIT).contains(&max) {
            return Err(ApiError::invalid(format!(
                "max_tokens_per_user is 1 to {MAX_TOKENS_LIMIT}"
            )));
        }
    }
    let patch = ResellerPatch {
        name: b.name,
        access_token_ttl: b.access_token_ttl,
        max_tokens_per_user: b.max_tokens_per_user,
        preview_domain: b.preview_domain,
        notification_email: b.notification_email,
        allowed_ips: b.allowed_ips,
        ..Default::default()
    };
    let updated = state
        .store
        .resellers()
        .update(&reseller.id, patch, Timestamp::now())?;
    Ok(HttpResponse::Ok().json(updated))
}

/// A token lifetime in seconds, checked: 60 s to 10 years.
pub fn token_ttl(secs: u64) -> ApiResult<u64> {
    if !(60..=MAX_TOKEN_TTL).contains(&secs) {
        return Err(ApiError::invalid(format!(
            "a token lifetime is 60 to {MAX_TOKEN_TTL} seconds (10 years)"
        )));
    }
    Ok(secs)
}

/// True if the page has a form with an input named `password` (parsed, not pattern-matched).
pub fn has_password_form(html: &str) -> bool {
    let doc = scraper::Html::parse_document(html);
    scraper::Selector::parse(r#"form input[name="password"]"#)
        .map(|sel| doc.select(&sel).next().is_some())
        .unwrap_or(false)
}

#[utoipa::path(
put, path = "/api/v1/reseller/pages/{kind}", tag = "reseller", params(("kind" = String, Path, description = "not_found, form_success or password")),
    request_body(content = String, content_type = "text/html", description = "The page's HTML, at most 512 KiB"),
    responses((status = 204, description = "Stored"))
)]
async fn put_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Principal,
    kind: web::Path<String>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::SettingsWrite)?;
    let kind = PageKind::parse(&kind)?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("text/html")
    {
        return Err(ApiError::invalid(
            "custom pages are sent with Content-Type: text/html",
        ));
    }
    let body =
        crate::http::read_body(payload, MAX_PAGE_BYTES, state.settings.body_timeout()).await?;
    let html =
        std::str::from_utf8(&body).map_err(|_| ApiError::invalid("the page must be UTF-8 HTML"))?;
    if html.trim().is_empty() {
        return Err(ApiError::invalid("the page is empty"));
    }
    if kind == PageKind::Password && !has_password_form(html) {
        return Err(ApiError::InvalidPasswordPage);
    }
    state.store.pages().put(&reseller.id, kind, html)?;
    Ok(no_content())
}

#[utoipa::path(
get, path = "/api/v1/reseller/pages/{kind}", tag = "reseller", params(("kind" = String, Path, description = "not_found, form_success or password")),
    responses((status = 200, description = "The custom page", content_type = "text/html", body = String))
)]
async fn get_page(
    state: web::Data<AppState>,
    who: Principal,
    kind: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::SettingsWrite)?;
    let kind = PageKind::parse(&kind)?;
    let html = state
        .store
        .pages()
        .get(&reseller.id, kind)?
        .ok_or(ApiError::NotFound("custom page"))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

#[utoipa::path(
delete, path = "/api/v1/reseller/pages/{kind}", tag = "reseller", params(("kind" = String, Path, description = "not_found, form_success or password")),
    responses((status = 204, description = "Back to the built-in page"))
)]
async fn delete_page(
    state: web::Data<AppState>,
    who: Principal,
    kind: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::SettingsWrite)?;
    let kind = PageKind::parse(&kind)?;
    if !state.store.pages().delete(&reseller.id, kind)? {
        return Err(ApiError::NotFound("custom page"));
    }
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::has_password_form;

    #[test]
    fn password_page_needs_a_password_input_in_a_form() {
        assert!(has_password_form(
            r#"<form method=post><input type=password name=password></form>"#
        ));
        assert!(!has_password_form(r#"<form><input name=pass></form>"#));
        assert!(!has_password_form(r#"<input name=password>"#));
        assert!(!has_password_form(
            "<!-- <form><input name=password></form> -->"
        ));
    }
}
