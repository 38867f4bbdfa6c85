//! Proxy profiles (`settings:write`): `POST/GET /proxy_profiles`,
//! `GET/PATCH/DELETE /proxy_profiles/{id}`. A `_redirects` 200 rule to a profile's origin is
//! proxied by the edge (`edge::proxy`) with the profile's headers; header values are secrets,
//! stored and never shown again.

use super::{created, no_content, paginate, Order, PageQuery};
use crate::auth::guard::{Key, SettingsWrite};
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::proxy::{ProxyProfile, MAX_HEADERS};
use crate::AppState;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

super::endpoints! { ENDPOINTS:
    "/proxy_profiles" {
        post create, WaitsOnNetwork;
        get list;
    }
    "/proxy_profiles/{id}" {
        get get;
        patch update, WaitsOnNetwork;
        delete delete;
    }
}

/// The default time an origin has to start answering (and between two chunks of its body).
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const TIMEOUTS_MS: std::ops::RangeInclusive<u64> = 100..=120_000;

/// A profile as the API shows it: its header names, never their values.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProxyProfileView {
    pub id: String,
    pub name: String,
    /// `scheme://host[:port]`: a `_redirects` 200 rule to a URL on it is proxied.
    pub origin: String,
    /// The headers added to each proxied request (names only: the values are secrets).
    pub headers: Vec<String>,
    pub timeout_ms: u64,
    /// The users whose sites may proxy through it; null: every user of the reseller.
    pub user_ids: Option<Vec<String>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<ProxyProfile> for ProxyProfileView {
    fn from(p: ProxyProfile) -> Self {
        ProxyProfileView {
            id: p.id,
            name: p.name,
            origin: p.origin,
            headers: p.headers.into_iter().map(|(name, _)| name).collect(),
            timeout_ms: p.timeout_ms,
            user_ids: p.user_ids,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateProfile {
    name: String,
    #[schema(example = "https://api.example.com")]
    origin: String,
    /// Header name -> value, added to every proxied request (at most 20).
    #[serde(default)]
    #[schema(example = json!({"X-Api-Key": "secret"}))]
    headers: BTreeMap<String, String>,
    /// 100 to 120,000; 10,000 when left out.
    timeout_ms: Option<u64>,
    /// Only these users' sites may proxy through it (the reseller's clients are each other's
    /// strangers); left out or null: every user of the reseller.
    user_ids: Option<Vec<String>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateProfile {
    name: Option<String>,
    origin: Option<String>,
    /// Replaces every header (values are not shown, so they are set whole).
    headers: Option<BTreeMap<String, String>>,
    timeout_ms: Option<u64>,
    /// Replaces the list; null: every user of the reseller.
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    user_ids: Option<Option<Vec<String>>>,
}

/// Headers the edge sets itself: a profile cannot set them, nor the hop-by-hop ones.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "via",
];

fn valid_headers(headers: BTreeMap<String, String>) -> ApiResult<Vec<(String, String)>> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid(format!("headers: at most {MAX_HEADERS}")));
    }
    let mut out = Vec::with_capacity(headers.len());
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in headers {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ApiError::invalid(format!("headers: {name:?} is not a header name")))?;
        // `via` carries the loop guard; `forwarded` and `x-forwarded-*` are the edge's to say.
        if RESERVED.contains(&parsed.as_str())
            || crate::targets::HOP_BY_HOP.contains(&parsed.as_str())
        {
            return Err(ApiError::invalid(format!(
                "headers: {name} is set by the edge and cannot be configured"
            )));
        }
        if !seen.insert(parsed.as_str().to_string()) {
            return Err(ApiError::invalid(format!("headers: {name} is given twice")));
        }
        if value.len() > 4096 || HeaderValue::from_str(&value).is_err() {
            return Err(ApiError::invalid(format!(
                "headers: the value of {name} must be visible ASCII, at most 4096 characters"
            )));
        }
        out.push((parsed.as_str().to_string(), value));
    }
    Ok(out)
}

/// A list of the reseller's users (404 for one it does not have), at most 1,000, each once.
fn valid_users(
    state: &AppState,
    reseller_id: &str,
    ids: Option<Vec<String>>,
) -> ApiResult<Option<Vec<String>>> {
    let Some(ids) = ids else { return Ok(None) };
    if ids.len() > 1000 {
        return Err(ApiError::invalid("user_ids: at most 1000"));
    }
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        state.store.users().get(reseller_id, &id)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(Some(out))
}

fn valid_timeout(ms: Option<u64>) -> ApiResult<u64> {
    let ms = ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !TIMEOUTS_MS.contains(&ms) {
        return Err(ApiError::invalid(format!(
            "timeout_ms: {} to {}",
            TIMEOUTS_MS.start(),
            TIMEOUTS_MS.end()
        )));
    }
    Ok(ms)
}

fn valid_name(name: &str) -> ApiResult<String> {
    Ok(crate::model::Name::parse(name)
        .map_err(|e| ApiError::invalid(format!("name: {e}")))?
        .into_string())
}

/// An origin: http or https, a host, an optional port, nothing else; and (unless the operator
/// allows it) not a loopback, private or link-local address.
async fn valid_origin(state: &AppState, raw: &str) -> ApiResult<String> {
    let invalid = |why: &str| ApiError::invalid(format!("origin: {why}"));
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "scheme, host and port only, e.g. https://api.example.com",
        ));
    }
    let origin =
        crate::targets::origin_of(&url).ok_or_else(|| invalid("needs http or https and a host"))?;
    crate::targets::check(&origin, state.settings.allow_private_targets()).await?;
    Ok(origin)
}

#[utoipa::path(
post, path = "/api/v1/proxy_profiles", tag = "proxy profiles",
    request_body = CreateProfile,
    responses((status = 201, description = "The profile, with its header names only; at most 20 per reseller, one per origin and user", body = ProxyProfileView))
)]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    body: web::Json<CreateProfile>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let b = body.into_inner();
    let name = valid_name(&b.name)?;
    let headers = valid_headers(b.headers)?;
    let timeout_ms = valid_timeout(b.timeout_ms)?;
    let user_ids = valid_users(&state, &reseller.id, b.user_ids)?;
    let origin = valid_origin(&state, &b.origin).await?;
    // The origin is resolved: the record is written under the gate (`GateMode::WaitsOnNetwork`).
    let _gate = super::write_gate(&req, &state).await;
    let now = Timestamp::now();
    let profile = state.store.proxy_profiles().create(ProxyProfile {
        id: String::new(),
        reseller_id: reseller.id.clone(),
        name,
        origin,
        headers,
        timeout_ms,
        user_ids,
        created_at: now,
        updated_at: now,
    })?;
    Ok(created(ProxyProfileView::from(profile)))
}

#[utoipa::path(
get, path = "/api/v1/proxy_profiles", tag = "proxy profiles",
    params(PageQuery),
    responses((status = 200, description = "The reseller's profiles, oldest first, header names only; `Link` header", body = Vec<ProxyProfileView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let profiles: Vec<ProxyProfileView> = state
        .store
        .proxy_profiles()
        .list(&reseller.id)?
        .into_iter()
        .map(ProxyProfileView::from)
        .collect();
    paginate(
        &req,
        &who.scope(),
        profiles,
        |p| &p.id,
        Order::OldestFirst,
        &q,
    )
}

#[utoipa::path(
get, path = "/api/v1/proxy_profiles/{id}", tag = "proxy profiles",
    params(("id" = String, Path, description = "Proxy profile id")),
    responses((status = 200, description = "The profile, header names only", body = ProxyProfileView))
)]
async fn get(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let profile = state.store.proxy_profiles().get(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(ProxyProfileView::from(profile)))
}

#[utoipa::path(
patch, path = "/api/v1/proxy_profiles/{id}", tag = "proxy profiles",
    params(("id" = String, Path, description = "Proxy profile id")),
    request_body = UpdateProfile,
    responses((status = 200, description = "The profile as changed", body = ProxyProfileView))
)]
async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
    body: web::Json<UpdateProfile>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    // A foreign id is "not found" before anything is resolved.
    let mut profile = state.store.proxy_profiles().get(&reseller.id, &id)?;
    let b = body.into_inner();
    if let Some(name) = b.name {
        profile.name = valid_name(&name)?;
    }
    if let Some(headers) = &b.headers {
        profile.headers = valid_headers(headers.clone())?;
    }
    if b.timeout_ms.is_some() {
        profile.timeout_ms = valid_timeout(b.timeout_ms)?;
    }
    if let Some(user_ids) = b.user_ids {
        profile.user_ids = valid_users(&state, &reseller.id, user_ids)?;
    }
    if let Some(origin) = b.origin {
        let origin = valid_origin(&state, &origin).await?;
        // The stored values never go to an origin they were not given for: whoever moves a
        // profile must know them (else a `settings:write` key could read them at its own host).
        if origin != profile.origin && b.headers.is_none() && !profile.headers.is_empty() {
            return Err(ApiError::invalid(
                "headers: give the headers again when the origin changes (the stored values are never sent to a new origin)",
            ));
        }
        profile.origin = origin;
    }
    profile.updated_at = Timestamp::now();
    let _gate = super::write_gate(&req, &state).await;
    state.store.proxy_profiles().put(&profile)?;
    Ok(HttpResponse::Ok().json(ProxyProfileView::from(profile)))
}

#[utoipa::path(
delete, path = "/api/v1/proxy_profiles/{id}", tag = "proxy profiles",
    params(("id" = String, Path, description = "Proxy profile id")),
    responses((status = 204, description = "Deleted: rules to its origin redirect again"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.proxy_profiles().delete(&reseller.id, &id)?;
    Ok(no_content())
}
