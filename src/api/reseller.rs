//! The reseller's own account: `GET/PATCH /reseller` and the custom pages
//! `PUT/GET/DELETE /reseller/pages/{not_found,form_success,password}`.

use super::{no_content, nullable};
use crate::auth::guard::{AnyKey, Key, SettingsWrite};
use crate::error::{ApiError, ApiResult};
use crate::model::{DomainName, Email, IpAllowList, Permission, Timestamp};
use crate::store::domains::DomainStatus;
use crate::store::pages::PageKind;
use crate::store::resellers::{
    PendingPreview, Reseller, ResellerPatch, MAX_TOKENS_LIMIT, MAX_TOKEN_TTL,
};
use crate::store::signing::Alg;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

pub const MAX_PAGE_BYTES: usize = 512 * 1024;

super::endpoints! { ENDPOINTS:
    "/reseller" {
        get get;
        patch update;
    }
    "/reseller/preview_domain/verify" {
        post verify_preview, WaitsOnNetwork;
    }
    "/reseller/pages/{kind}" {
        put put_page;
        get get_page;
        delete delete_page;
    }
}

#[utoipa::path(
get, path = "/api/v1/reseller", tag = "reseller",
    responses((status = 200, description = "The reseller account", body = Reseller))
)]
async fn get(who: Key<AnyKey>) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    Ok(HttpResponse::Ok().json(reseller))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PatchResellerAccount)]
struct PatchReseller {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    preview_domain: Option<Option<DomainName>>,
    /// The address notification mail is sent from once DNS verifies it (see
    /// `GET /reseller/notification_email`): an address, or `{"from", "name"}`; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    notification_email: Option<Option<NotificationEmail>>,
    allowed_ips: Option<IpAllowList>,
    /// Seconds a new access token lives when `POST /access_tokens` names no `expires_in`
    /// (60 s to 10 years); `null`: tokens never expire.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    access_token_ttl: Option<Option<u64>>,
    /// Live access tokens a user may have, 1 to 1000; issuing one more revokes the oldest.
    max_tokens_per_user: Option<u32>,
    /// The plan of users without one of their own; `null`: none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<String>)]
    default_plan_id: Option<Option<String>>,
}

/// A sender address, alone or with a display name.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum NotificationEmail {
    Address(Email),
    Sender {
        from: Email,
        /// The display name, at most 100 characters.
        name: Option<String>,
        /// The DKIM key: `rsa` (RSA 2048, what every verifier checks; the default) or `ed25519`
        /// (RFC 8463; a short record, but not every receiver checks it).
        #[serde(default)]
        dkim: Option<String>,
    },
}

impl NotificationEmail {
    fn parts(self) -> ApiResult<(Email, Option<String>, Alg)> {
        match self {
            NotificationEmail::Address(from) => Ok((from, None, Alg::RS256)),
            NotificationEmail::Sender { from, name, dkim } => {
                let alg = match dkim.as_deref() {
                    None | Some("rsa") => Alg::RS256,
                    Some("ed25519") => Alg::EdDSA,
                    Some(other) => {
                        return Err(ApiError::invalid(format!(
                            "notification_email.dkim {other:?} is not rsa or ed25519"
                        )))
                    }
                };
                let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
                if name
                    .as_ref()
                    .is_some_and(|n| n.chars().count() > 100 || n.chars().any(char::is_control))
                {
                    return Err(ApiError::invalid(
                        "notification_email.name is at most 100 characters, without control characters",
                    ));
                }
                Ok((from, name, alg))
            }
        }
    }
}

#[utoipa::path(
patch, path = "/api/v1/reseller", tag = "reseller", request_body = PatchReseller,
    responses((status = 200, description = "The updated reseller account", body = Reseller))
)]
async fn update(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    body: web::Json<PatchReseller>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let b = body.into_inner();
    if b.allowed_ips.is_some() {
        // The reseller-wide allowlist governs every key: changing it is key management.
        who.holds(Permission::KeysManage)?;
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
    let sender = match b.notification_email {
        None => None,
        Some(None) => Some(None),
        Some(Some(n)) => Some(Some(n.parts()?)),
    };
    // A new preview domain takes effect once DNS proves it (`preview_domain_pending`); going
    // back to the default, or keeping the current one, is at once.
    let now = Timestamp::now();
    let (preview_domain, preview_domain_pending) = match b.preview_domain {
        None => (None, None),
        Some(None) => (Some(None), None),
        Some(Some(d)) if reseller.preview_domain.as_ref() == Some(&d) => (None, Some(None)),
        Some(Some(d)) => {
            state
                .names
                .preview_domain_allowed(&state.store, &reseller.id, d.as_str(), false)?;
            let same = reseller
                .preview_domain_pending
                .clone()
                .filter(|p| p.domain == d && p.status == DomainStatus::Pending);
            (
                None,
                Some(Some(same.unwrap_or_else(|| PendingPreview::new(d, now)))),
            )
        }
    };
    // Checked before anything is written: an unknown plan is 404 and changes nothing.
    if let Some(Some(plan)) = &b.default_plan_id {
        state.store.plans().get(&reseller.id, plan)?;
    }
    let patch = ResellerPatch {
        name: b.name,
        access_token_ttl: b.access_token_ttl,
        max_tokens_per_user: b.max_tokens_per_user,
        preview_domain,
        preview_domain_pending,
        notification_email: sender
            .as_ref()
            .map(|s| s.as_ref().map(|(from, _, _)| from.clone())),
        allowed_ips: b.allowed_ips,
        ..Default::default()
    };
    let updated = state.store.resellers().update(&reseller.id, patch, now)?;
    if let Some(plan) = &b.default_plan_id {
        state
            .store
            .plans()
            .set_default(&reseller.id, plan.as_deref())?;
    }
    if let Some(sender) = sender {
        let sender = sender.map(|(from, name, alg)| (from.as_str().to_string(), name, alg));
        crate::mail::set_sender(&state.store, &reseller.id, sender).await?;
    }
    Ok(HttpResponse::Ok().json(updated))
}

#[utoipa::path(
post, path = "/api/v1/reseller/preview_domain/verify", tag = "reseller",
    responses((status = 200, description = "The reseller account after a DNS check of its pending preview domain (if any): `preview_domain` is the new one if the TXT record was found, else `preview_domain_pending.verification_error` says what was found instead", body = Reseller))
)]
async fn verify_preview(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    // With nothing pending there is nothing to look up: the account as it is.
    let reseller = state.store.resellers().get(&reseller.id)?;
    let updated = state.verifier.check_preview(&state.store, reseller).await?;
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
put, path = "/api/v1/reseller/pages/{kind}", tag = "reseller", params(("kind" = String, Path, description = "not_found, form_success, password, suspended or quota_exceeded")),
    request_body(content = String, content_type = "text/html", description = "The page's HTML, at most 512 KiB"),
    responses((status = 204, description = "Stored"))
)]
async fn put_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    kind: web::Path<String>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let kind = PageKind::parse(&kind)?;
    let timeout = state.settings.body_timeout();
    let html = super::html_body(&req, payload, MAX_PAGE_BYTES, timeout, "custom pages").await?;
    let html = html.as_str();
    if kind == PageKind::Password && !has_password_form(html) {
        return Err(ApiError::InvalidPasswordPage);
    }
    state.store.pages().put(&reseller.id, kind, html)?;
    Ok(no_content())
}

#[utoipa::path(
get, path = "/api/v1/reseller/pages/{kind}", tag = "reseller", params(("kind" = String, Path, description = "not_found, form_success, password, suspended or quota_exceeded")),
    responses((status = 200, description = "The custom page", content_type = "text/html", body = String))
)]
async fn get_page(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    kind: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
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
delete, path = "/api/v1/reseller/pages/{kind}", tag = "reseller", params(("kind" = String, Path, description = "not_found, form_success, password, suspended or quota_exceeded")),
    responses((status = 204, description = "Back to the built-in page"))
)]
async fn delete_page(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    kind: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
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
