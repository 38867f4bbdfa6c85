//! Client domains (the NextNet reseller flow): `POST/GET /domains`, `GET/PATCH/DELETE
//! /domains/{id}`, `POST /domains/{id}/verify`, `POST /domains/{id}/wordpress_key`, and the
//! WordPress plugin's own `GET /plugin/domain`.

use super::sites::find_site;
use super::{created, no_content, nullable, paginate, Order, PageQuery};
use crate::auth::guard::{DomainsRead, DomainsWrite, Key, KeyOrUser, Plugin, RegisterDomains};
use crate::auth::Tenant;
use crate::error::{ApiError, ApiResult};
use crate::model::{DomainName, Email, Timestamp};
use crate::store::billing::PaidAction;
use crate::store::domains::{Domain, DomainStatus};
use crate::views::domains::{domain_view, metrics_view, DomainMetrics};
use crate::views::DomainView;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    "/domains" {
        post create;
        get list;
    }
    // Before /domains/{id}, which would otherwise claim the path and answer 405.
    "/domains/register" {
        post register, WaitsOnNetwork;
    }
    "/domains/{id}" {
        get get;
        patch update;
        delete delete;
    }
    "/domains/{id}/verify" {
        post verify, WaitsOnNetwork;
    }
    "/domains/{id}/wordpress_key" {
        post rotate_wp_key;
    }
    "/plugin/domain" {
        get plugin_domain;
    }
}

/// A new domain: the view plus its WordPress plugin key (shown once).
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedDomain {
    #[serde(flatten)]
    view: DomainView,
    wordpress_api_key: String,
}

/// A registered domain: the view plus the charge made, and the WordPress key the first time
/// (a retry with the same `Idempotency-Key` cannot show it again: it is not stored).
#[derive(Serialize, utoipa::ToSchema)]
struct RegisteredDomain {
    #[serde(flatten)]
    view: DomainView,
    #[serde(skip_serializing_if = "Option::is_none")]
    wordpress_api_key: Option<String>,
    charge_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct WordpressKey {
    wordpress_api_key: String,
}

/// What the WordPress plugin sees of its domain.
#[derive(Serialize, utoipa::ToSchema)]
struct PluginDomain {
    domain: DomainName,
    #[schema(value_type = String)]
    verification_status: DomainStatus,
    verified_at: Option<Timestamp>,
    last_checked_at: Option<Timestamp>,
    /// Why the last check did not verify it, and what to do (`null` once verified or before
    /// the first check).
    verification_error: Option<String>,
    metrics: DomainMetrics,
}

/// A domain the tenant may see: its reseller's, and for a user token only the user's own.
fn find_domain(state: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Domain> {
    let d = state.store.domains().get(&tenant.reseller.id, id)?;
    match &tenant.user {
        Some(u) if u.id != d.user_id => Err(ApiError::NotFound("domain")),
        _ => Ok(d),
    }
}

/// Checks that `site_id` is a site of the tenant owned by the domain's user.
fn site_for(state: &AppState, tenant: &Tenant, site_id: &str, user_id: &str) -> ApiResult<String> {
    let site = find_site(state, tenant, site_id)?;
    if site.user_id != user_id {
        return Err(ApiError::invalid(
            "the site belongs to another client than the domain",
        ));
    }
    Ok(site.id)
}

/// Everything about a new domain's owner that can refuse the request, checked before any user
/// is made (the site is the reseller's and that client's, the name is free), so a refused
/// request creates no user. Returns the site's id, if one is named.
fn check_owner(
    state: &AppState,
    reseller: &crate::store::resellers::Reseller,
    domain: &DomainName,
    email: &Email,
    site_id: Option<&str>,
) -> ApiResult<Option<String>> {
    let tenant = Tenant {
        reseller: reseller.clone(),
        user: None,
    };
    let site = site_id
        .map(|id| find_site(state, &tenant, id))
        .transpose()?;
    let owner = state
        .store
        .users()
        .with_email(&reseller.id, email.as_str())?;
    if let Some(site) = &site {
        if owner.as_ref().is_none_or(|o| o.user.id != site.user_id) {
            return Err(ApiError::invalid(format!(
                "the site {} belongs to another client than {email}: give the site owner's email, or no site_id",
                site.name
            )));
        }
    }
    if state.store.domains().by_name(domain.as_str())?.is_some() {
        return Err(ApiError::Conflict(
            crate::error::Conflict::DomainTaken,
            format!("{domain} is already registered on this server"),
        ));
    }
    if owner.is_none() {
        // A new client: within the operator's cap on clients (checked again when it is made).
        let max = state.store.plans().reseller_limits(&reseller.id)?.max_users;
        let users = state.store.users().count(&reseller.id) as u64;
        crate::store::plans::check("max_users", users, max)?;
    }
    Ok(site.map(|s| s.id))
}

/// The client user a new domain belongs to, created if the email is new (after `check_owner`).
fn owner(
    state: &AppState,
    reseller: &crate::store::resellers::Reseller,
    email: &Email,
    now: Timestamp,
) -> ApiResult<crate::store::users::User> {
    let (user, _) = state
        .store
        .users()
        .find_or_create(&reseller.id, email, None, now)?;
    Ok(user)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    domain: DomainName,
    email: Email,
    #[serde(default)]
    site_id: Option<String>,
}

#[utoipa::path(
post, path = "/api/v1/domains", tag = "domains", request_body = NewDomain,
    responses((status = 201, description = "The domain, with its WordPress key shown this once", body = CreatedDomain))
)]
async fn create(
    state: web::Data<AppState>,
    who: Key<DomainsWrite>,
    body: web::Json<NewDomain>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let NewDomain {
        domain,
        email,
        site_id,
    } = body.into_inner();
    let now = Timestamp::now();
    let max_pending = state.settings.max_pending_domains();
    state
        .names
        .client_domain_allowed(&state.store, &reseller.id, domain.as_str())?;
    // Refused before the user is made; `create` checks again under its lock.
    state
        .store
        .domains()
        .check_pending_limit(&reseller.id, max_pending)?;
    let site_id = check_owner(&state, reseller, &domain, &email, site_id.as_deref())?;
    let user = owner(&state, reseller, &email, now)?;
    let (d, wp) = state.store.domains().create(
        &reseller.id,
        &user.id,
        domain,
        email,
        site_id,
        max_pending,
        now,
    )?;
    Ok(created(CreatedDomain {
        view: domain_view(&state.views, &d)?,
        wordpress_api_key: wp.expose().to_string(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DomainFilter {
    status: Option<String>,
    user_id: Option<String>,
}

#[utoipa::path(
get, path = "/api/v1/domains", tag = "domains", params(DomainFilter, super::PageQuery),
    responses((status = 200, description = "One page of domains; `Link` header", body = Vec<DomainView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<DomainsRead>,
    filter: web::Query<DomainFilter>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let status = filter
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(DomainStatus::parse)
        .transpose()?;
    let user_id = filter.user_id.as_deref().filter(|s| !s.is_empty());
    let own = tenant.user.as_ref().map(|u| u.id.as_str());
    let views = state
        .store
        .domains()
        .list(&tenant.reseller.id)?
        .into_iter()
        .filter(|d| status.is_none_or(|s| d.status == s))
        .filter(|d| user_id.is_none_or(|u| d.user_id == u))
        .filter(|d| own.is_none_or(|u| d.user_id == u))
        .map(|d| domain_view(&state.views, &d))
        .collect::<Result<Vec<_>, _>>()?;
    paginate(
        &req,
        &who.scope(),
        views,
        |d| &d.id,
        Order::OldestFirst,
        &page,
    )
}

#[utoipa::path(
get, path = "/api/v1/domains/{id}", tag = "domains", params(("id" = String, Path, description = "Domain id")),
    responses((status = 200, description = "The domain", body = DomainView))
)]
async fn get(
    state: web::Data<AppState>,
    who: KeyOrUser<DomainsRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let d = find_domain(&state, &tenant, &id)?;
    Ok(HttpResponse::Ok().json(domain_view(&state.views, &d)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchDomain {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    site_id: Option<Option<String>>,
}

#[utoipa::path(
patch, path = "/api/v1/domains/{id}", tag = "domains", params(("id" = String, Path, description = "Domain id")), request_body = PatchDomain,
    responses((status = 200, description = "The domain", body = DomainView))
)]
async fn update(
    state: web::Data<AppState>,
    who: KeyOrUser<DomainsWrite>,
    id: web::Path<String>,
    body: web::Json<PatchDomain>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let mut d = find_domain(&state, &tenant, &id)?;
    if let Some(site_id) = &body.site_id {
        d.site_id = match site_id {
            Some(site_id) => Some(site_for(&state, &tenant, site_id, &d.user_id)?),
            None => None,
        };
        state.store.domains().save(&d)?;
    }
    Ok(HttpResponse::Ok().json(domain_view(&state.views, &d)?))
}

#[utoipa::path(
delete, path = "/api/v1/domains/{id}", tag = "domains", params(("id" = String, Path, description = "Domain id")),
    responses((status = 204, description = "Deleted; the edge stops serving it at once"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: KeyOrUser<DomainsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let d = find_domain(&state, &tenant, &id)?;
    let d = state.store.domains().delete(&tenant.reseller.id, &d.id)?;
    state.acme.forget_if_gone(d.name.as_str())?;
    Ok(no_content())
}

#[utoipa::path(
post, path = "/api/v1/domains/{id}/verify", tag = "domains", params(("id" = String, Path, description = "Domain id")),
    responses((status = 200, description = "The domain after a DNS check", body = DomainView))
)]
async fn verify(
    state: web::Data<AppState>,
    who: KeyOrUser<DomainsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let d = find_domain(&state, &tenant, &id)?;
    let d = state.verifier.check(&state.store, d).await?;
    Ok(HttpResponse::Ok().json(domain_view(&state.views, &d)?))
}

#[utoipa::path(
post, path = "/api/v1/domains/{id}/wordpress_key", tag = "domains", params(("id" = String, Path, description = "Domain id")),
    responses((status = 201, description = "A new WordPress plugin key; the old one stops working", body = WordpressKey))
)]
async fn rotate_wp_key(
    state: web::Data<AppState>,
    who: Key<DomainsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let (_, wp) = state.store.domains().rotate_wp_key(&reseller.id, &id)?;
    Ok(created(WordpressKey {
        wordpress_api_key: wp.expose().to_string(),
    }))
}

/// The WordPress plugin's view: its one domain's status and metrics, nothing else.
#[utoipa::path(
get, path = "/api/v1/plugin/domain", tag = "domains", security(("bearer" = [])),
    responses((status = 200, description = "The plugin key's domain: status and metrics", body = PluginDomain))
)]
async fn plugin_domain(state: web::Data<AppState>, who: Plugin) -> ApiResult<HttpResponse> {
    let domain = &who.domain;
    let d = state.store.domains().get(&domain.reseller_id, &domain.id)?;
    let traffic = state.store.traffic().get(&d.id)?;
    Ok(HttpResponse::Ok().json(PluginDomain {
        domain: d.name,
        verification_status: d.status,
        verified_at: d.verified_at,
        last_checked_at: d.last_checked_at,
        verification_error: state.store.domains().verification_error(&d.id)?,
        metrics: metrics_view(traffic),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Registration {
    domain: DomainName,
    email: Email,
    payment_method_id: Option<String>,
    #[serde(default)]
    site_id: Option<String>,
}

/// Domain registration, a paid action: the configured registrar registers the name, then the
/// domain is created already verified and the payment method is charged once.
#[utoipa::path(
post, path = "/api/v1/domains/register", tag = "domains", request_body = Registration,
    params(("Idempotency-Key" = Option<String>, Header, description = "Names this request: a retry with the same key gets the first answer (and no second charge); the key on another request is 422")),
    responses(
        (status = 201, description = "Registered, created verified, and charged", body = RegisteredDomain),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = crate::error::ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = crate::error::ErrorBody),
        (status = 402, description = "No usable payment method of this reseller", body = crate::error::ErrorBody),
    )
)]
async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<RegisterDomains>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let Registration {
        domain,
        email,
        payment_method_id,
        site_id,
    } = serde_json::from_slice(&raw).map_err(|e| crate::error::json_error(&e))?;
    let action = PaidAction::DomainRegistration;
    let claimed = match super::billing::idempotency(&req, &state, &reseller.id, action, &raw)? {
        super::billing::Idempotency::Replay(answer) => return Ok(answer),
        super::billing::Idempotency::Run(claimed) => claimed,
    };
    let billing = state.store.billing();
    let domains = state.store.domains();
    let registrar = state
        .registrar
        .clone()
        .ok_or_else(|| ApiError::invalid("domain registration is not configured on this server"))?;
    // Every name rule before the registrar hears of it: a registration makes the name served
    // at once, with no DNS proof.
    state
        .names
        .client_domain_allowed(&state.store, &reseller.id, domain.as_str())?;
    if domains.by_name(domain.as_str())?.is_some() {
        return Err(ApiError::Conflict(
            crate::error::Conflict::DomainTaken,
            format!("{domain} is already registered"),
        ));
    }
    let method = billing.require_method(&reseller.id, payment_method_id.as_deref())?;
    let now = Timestamp::now();
    let site_id = check_owner(&state, reseller, &domain, &email, site_id.as_deref())?;
    let request = crate::registrar::RegistrationRequest {
        domain: domain.to_string(),
        email: email.to_string(),
        reseller_id: reseller.id.clone(),
        request_id: match &claimed {
            Some(c) => super::billing::outside_request_id(&state, &reseller.id, action, &c.key),
            None => crate::model::new_id(),
        },
    };
    registrar
        .register(&request)
        .await
        .map_err(|why| ApiError::Conflict(crate::error::Conflict::RegistrationFailed, why))?;
    // The registrar has answered: the records are written under the gate (`GateMode::WaitsOnNetwork`).
    let _gate = super::write_gate(&req, &state).await;
    let user = owner(&state, reseller, &email, now)?;
    // Registered through us, it is verified at once: the pending limit does not apply.
    let (mut d, wp) = domains.create(
        &reseller.id,
        &user.id,
        domain,
        email,
        site_id,
        usize::MAX,
        now,
    )?;
    // Registered through us: the name is ours, no DNS proof needed.
    d.status = DomainStatus::Verified;
    d.verified_at = Some(now);
    domains.save(&d)?;
    let view = domain_view(&state.views, &d)?;
    // A retry gets the same answer without the WordPress key, which is shown once.
    let answer = |charge: &crate::store::billing::Charge| {
        let stored = RegisteredDomain {
            view: view.clone(),
            wordpress_api_key: None,
            charge_id: charge.id.clone(),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    };
    let charge = billing.charge(
        &reseller.id,
        &method,
        action,
        d.name.as_str(),
        claimed.as_ref().map(|c| c.answer(201, &answer)),
        now,
    )?;
    if let Some(claimed) = claimed {
        claimed.done();
    }
    Ok(created(RegisteredDomain {
        view,
        wordpress_api_key: Some(wp.expose().to_string()),
        charge_id: charge.id,
    }))
}
