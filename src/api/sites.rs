//! Sites and Netlify accounts: `POST/GET /sites`, `GET/PATCH/DELETE /sites/{id_or_name}`,
//! `POST/GET /{account_slug}/sites`, `GET /accounts`, `GET /accounts/{slug}/env`.

use super::{created, no_content, nullable, paginate, Order, PageQuery};
use crate::auth::guard::{KeyOrUser, SitesRead, SitesWrite};
use crate::auth::{Principal, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::model::{DomainName, SiteName, Timestamp};
use crate::store::resellers::Reseller;
use crate::store::sites::{PasswordHash, Site, SitePatch};
use crate::store::users::User;
use crate::views::sites::site_view;
use crate::views::SiteView;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

super::endpoints! { ENDPOINTS:
    "/sites" {
        get list;
        post create;
    }
    "/sites/{site_id}" {
        get get;
        patch update;
        put update;
        delete delete;
    }
}

// Registered last, so the `{account_slug}` pattern never takes a path a fixed route owns.
super::endpoints! { ACCOUNT_SITES:
    "/{account_slug}/sites" {
        get list_for_account;
        post create_in_account;
    }
}

/// A site of the tenant by id or name; anything else is "not found".
pub fn find_site(state: &AppState, tenant: &Tenant, id_or_name: &str) -> ApiResult<Site> {
    let sites = state.store.sites();
    let site = match sites.get(id_or_name)? {
        Some(s) => Some(s),
        None => match sites.by_name(&id_or_name.to_ascii_lowercase())? {
            Some(s) => Some(s),
            None => crate::hosts::resolve_host(
                &state.store,
                &state.views.links.default_domain,
                id_or_name,
            )?
            .map(|t| t.site),
        },
    };
    match site {
        Some(s) if tenant.owns(&s.reseller_id, &s.user_id) => Ok(s),
        _ => Err(ApiError::NotFound("site")),
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct CreateSite {
    name: Option<String>,
    #[serde(default)]
    custom_domain: Option<DomainName>,
    #[serde(default)]
    password: Option<String>,
    user_id: Option<String>,
}

/// A site name given in a request: valid, and not one that would spell an instance name.
fn allowed_name(
    state: &AppState,
    reseller: &Reseller,
    raw: Option<&str>,
) -> ApiResult<Option<SiteName>> {
    let name = parse_name(raw)?;
    if let Some(name) = &name {
        state.names.site_name_allowed(reseller, name.as_str())?;
    }
    Ok(name)
}

fn parse_name(raw: Option<&str>) -> ApiResult<Option<SiteName>> {
    raw.filter(|n| !n.trim().is_empty())
        .map(SiteName::parse)
        .transpose()
        .map_err(ApiError::InvalidRequest)
}

fn check_password(p: &str) -> ApiResult<()> {
    if p.is_empty() || p.len() > 200 {
        return Err(ApiError::invalid("password must be 1 to 200 bytes"));
    }
    Ok(())
}

/// The user a new site belongs to: the caller, or for a reseller key the named user.
fn owner_for<N>(state: &AppState, who: &KeyOrUser<N>, user_id: Option<&str>) -> ApiResult<User> {
    match &**who {
        Principal::User { user, .. } => match user_id {
            Some(id) if id != user.id => Err(ApiError::NotFound("user")),
            _ => Ok(user.clone()),
        },
        _ => {
            let reseller = who.tenant().reseller;
            let id = user_id.ok_or_else(|| {
                ApiError::invalid("a reseller key must pass the user_id the site belongs to")
            })?;
            Ok(state.store.users().get(&reseller.id, id)?)
        }
    }
}

async fn create_for(
    state: &AppState,
    who: &KeyOrUser<SitesWrite>,
    owner: User,
    body: CreateSite,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let name = allowed_name(state, &tenant.reseller, body.name.as_deref())?;
    if let Some(p) = &body.password {
        check_password(p)?;
    }
    let password = match body.password {
        Some(p) => Some(PasswordHash::off_workers(p).await?),
        None => None,
    };
    let site = state.store.sites().create(
        &tenant.reseller.id,
        &owner.id,
        name,
        body.custom_domain,
        password,
        Timestamp::now(),
    )?;
    state.store.domains().attach_custom_domain(&site)?;
    Ok(created(site_view(&state.views, &tenant.reseller, &site)?))
}

#[utoipa::path(
post, path = "/api/v1/sites", tag = "sites", request_body = CreateSite,
    responses((status = 201, description = "The new site", body = SiteView))
)]
async fn create(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    body: web::Json<CreateSite>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let owner = owner_for(&state, &who, body.user_id.as_deref())?;
    create_for(&state, &who, owner, body).await
}

/// The user an account slug names: a user's own id, or for a reseller key one of its users (or
/// the reseller itself, with `user_id` in the body).
fn account_owner<N>(
    state: &AppState,
    who: &KeyOrUser<N>,
    slug: &str,
    user_id: Option<&str>,
) -> ApiResult<User> {
    match &**who {
        Principal::Reseller { reseller, .. } if slug == reseller.id => {
            owner_for(state, who, user_id)
        }
        Principal::Reseller { .. } => {
            let reseller = who.tenant().reseller;
            state
                .store
                .users()
                .get(&reseller.id, slug)
                .map_err(|_| ApiError::NotFound("account"))
        }
        _ if who_user_id(who) == Some(slug) => owner_for(state, who, user_id),
        _ => Err(ApiError::NotFound("account")),
    }
}

fn who_user_id(who: &Principal) -> Option<&str> {
    match who {
        Principal::User { user, .. } => Some(&user.id),
        _ => None,
    }
}

#[utoipa::path(
post, path = "/api/v1/{account_slug}/sites", tag = "sites", params(("account_slug" = String, Path, description = "Account slug: a user id, or the reseller id")),
    request_body(content = Option<CreateSite>, description = "May be empty"),
    responses((status = 201, description = "The new site", body = SiteView))
)]
async fn create_in_account(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    slug: web::Path<String>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    // (A credential that may not create sites was refused by the guard, before the slug is
    // looked at.)
    // The body is optional here (Netlify's createSiteInTeam).
    let s = &state.settings;
    let bytes = crate::http::read_body(payload, s.max_body(), s.body_timeout()).await?;
    let body: CreateSite = super::json_or_default(&bytes)?;
    let owner = account_owner(&state, &who, &slug, body.user_id.as_deref())?;
    create_for(&state, &who, owner, body).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SiteFilter {
    name: Option<String>,
    #[allow(dead_code)] // Netlify's all/owner/guest: every site here has one owner
    filter: Option<String>,
    user_id: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageQuery,
}

fn list_views(
    state: &AppState,
    tenant: &Tenant,
    user_id: Option<&str>,
    name: Option<&str>,
) -> ApiResult<Vec<SiteView>> {
    let user = tenant.user.as_ref().map(|u| u.id.as_str()).or(user_id);
    let name = name.map(str::to_ascii_lowercase).filter(|n| !n.is_empty());
    state
        .store
        .sites()
        .list(&tenant.reseller.id, user)?
        .into_iter()
        .filter(|s| name.as_deref().is_none_or(|n| s.name.as_str().contains(n)))
        .map(|s| Ok(site_view(&state.views, &tenant.reseller, &s)?))
        .collect()
}

#[utoipa::path(
get, path = "/api/v1/sites", tag = "sites", params(SiteFilter, PageQuery),
    responses((status = 200, description = "One page of the tenant's sites; `Link` header", body = Vec<SiteView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    q: web::Query<SiteFilter>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let views = list_views(&state, &tenant, q.user_id.as_deref(), q.name.as_deref())?;
    paginate(
        &req,
        &who.scope(),
        views,
        |s| &s.id,
        Order::OldestFirst,
        &q.page,
    )
}

#[utoipa::path(
get, path = "/api/v1/{account_slug}/sites", tag = "sites", params(("account_slug" = String, Path, description = "Account slug: a user id, or the reseller id"), SiteFilter, PageQuery),
    responses((status = 200, description = "One page of the account's sites; `Link` header", body = Vec<SiteView>))
)]
async fn list_for_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    slug: web::Path<String>,
    q: web::Query<SiteFilter>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let user = if slug.as_str() == tenant.reseller.id {
        None
    } else {
        Some(account_owner(&state, &who, &slug, None)?.id)
    };
    let views = list_views(&state, &tenant, user.as_deref(), q.name.as_deref())?;
    paginate(
        &req,
        &who.scope(),
        views,
        |s| &s.id,
        Order::OldestFirst,
        &q.page,
    )
}

#[utoipa::path(
get, path = "/api/v1/sites/{site_id}", tag = "sites", params(("site_id" = String, Path, description = "Site id, name or custom domain")),
    responses((status = 200, description = "The site", body = SiteView))
)]
async fn get(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &id)?;
    Ok(HttpResponse::Ok().json(site_view(&state.views, &tenant.reseller, &site)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PatchSite {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    custom_domain: Option<Option<DomainName>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    password: Option<Option<String>>,
    /// Links a git repository: builds run on pushes (`deploy_hook`), build hooks and
    /// `POST /sites/{id}/builds`
    repo: Option<super::builds::RepoBody>,
}

#[utoipa::path(
method(patch, put), path = "/api/v1/sites/{site_id}", tag = "sites", params(("site_id" = String, Path, description = "Site id, name or custom domain")),
    request_body = PatchSite,
    responses((status = 200, description = "The updated site", body = SiteView))
)]
async fn update(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
    body: web::Json<PatchSite>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &id)?;
    let b = body.into_inner();
    let name = allowed_name(&state, &tenant.reseller, b.name.as_deref())?;
    // Netlify clients clear a password with an empty string.
    let password = b.password.map(|p| p.filter(|s| !s.is_empty()));
    if let Some(Some(p)) = &password {
        check_password(p)?;
    }
    let password = match password {
        Some(Some(p)) => Some(Some(PasswordHash::off_workers(p).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let link = match b.repo {
        Some(repo) => Some(super::builds::repo_link(&state, &tenant, &site, repo)?),
        None => None,
    };
    let patch = SitePatch {
        name,
        custom_domain: b.custom_domain,
        password,
    };
    let site = state
        .store
        .sites()
        .update(&site.id, patch, Timestamp::now())?;
    state.store.domains().attach_custom_domain(&site)?;
    if let Some(link) = &link {
        state.store.builds().link(&site.id, link)?;
    }
    let mut view = site_view(&state.views, &tenant.reseller, &site)?;
    view.deploy_hook_secret = link.map(|l| l.hook_secret);
    Ok(HttpResponse::Ok().json(view))
}

#[utoipa::path(
delete, path = "/api/v1/sites/{site_id}", tag = "sites", params(("site_id" = String, Path, description = "Site id, name or custom domain")),
    responses((status = 204, description = "Deleted with its deploys"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &id)?;
    let store = state.store.clone();
    let id = site.id.clone();
    super::off_worker(move || store.sites().delete(&id)).await?;
    state.builds.forget_site(&site.id);
    Ok(no_content())
}
