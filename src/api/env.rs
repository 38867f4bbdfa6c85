//! Environment variables of builds, through Netlify's API: `GET|POST /accounts/{account_id}/env`,
//! `GET|PUT|PATCH|DELETE /accounts/{account_id}/env/{key}`, each with `?site_id=` for one site's
//! variables. A user's account holds its own; a secret's values are never shown again.

use super::accounts::account_list;
use super::sites::find_site;
use super::{created, no_content};
use crate::auth::guard::{KeyOrUser, SitesRead, SitesWrite};
use crate::error::{ApiError, ApiResult};
use crate::model::{new_id, Timestamp};
use crate::store::env::{EnvValue, EnvVar};
use crate::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    "/accounts/{account_id}/env" {
        get list;
        post create;
    }
    "/accounts/{account_id}/env/{key}" {
        get get;
        put replace;
        patch set_value;
        delete delete;
    }
    "/accounts/{account_id}/env/{key}/value/{value_id}" {
        delete delete_value;
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
struct Scope {
    site_id: Option<String>,
}

/// Where a request's variables live: (reseller, user, site).
struct Owner {
    reseller_id: String,
    user_id: String,
    site_id: Option<String>,
}

fn owner<N>(
    state: &AppState,
    who: &KeyOrUser<N>,
    account: &str,
    scope: &Scope,
) -> ApiResult<Owner> {
    let accounts = account_list(state, who)?;
    let Some(a) = accounts.iter().find(|a| a.slug == account) else {
        return Err(ApiError::NotFound("account"));
    };
    let tenant = who.tenant();
    if let Some(site_id) = &scope.site_id {
        let site = find_site(state, &tenant, site_id)?;
        if a.kind == "PERSONAL" && site.user_id != account {
            return Err(ApiError::NotFound("site"));
        }
        return Ok(Owner {
            reseller_id: site.reseller_id,
            user_id: site.user_id,
            site_id: Some(site.id),
        });
    }
    if a.kind != "PERSONAL" {
        return Err(ApiError::invalid(
            "environment variables belong to a user's account or to a site (?site_id=): the reseller's own account has none",
        ));
    }
    Ok(Owner {
        reseller_id: tenant.reseller.id,
        user_id: account.to_string(),
        site_id: None,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
struct ValueView {
    id: String,
    /// Left out for a secret variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    context: String,
    context_parameter: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EnvView {
    key: String,
    scopes: Vec<String>,
    values: Vec<ValueView>,
    is_secret: bool,
    updated_at: Timestamp,
}

fn view(v: &EnvVar) -> EnvView {
    EnvView {
        key: v.key.clone(),
        scopes: if v.scopes.is_empty() {
            vec![
                "builds".into(),
                "functions".into(),
                "runtime".into(),
                "post-processing".into(),
            ]
        } else {
            v.scopes.clone()
        },
        values: v
            .values
            .iter()
            .map(|x| ValueView {
                id: x.id.clone(),
                value: (!v.is_secret).then(|| x.value.clone()),
                context: x.context.clone(),
                context_parameter: x.context_parameter.clone(),
            })
            .collect(),
        is_secret: v.is_secret,
        updated_at: v.updated_at,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ValueBody {
    value: String,
    #[serde(default = "all")]
    context: String,
    context_parameter: Option<String>,
}

fn all() -> String {
    "all".into()
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EnvBody {
    key: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    values: Vec<ValueBody>,
    #[serde(default)]
    is_secret: bool,
}

fn record(body: EnvBody, site_id: Option<String>) -> EnvVar {
    EnvVar {
        key: body.key,
        site_id,
        scopes: body.scopes,
        values: body
            .values
            .into_iter()
            .map(|v| EnvValue {
                id: new_id(),
                value: v.value,
                context: v.context,
                context_parameter: v.context_parameter,
            })
            .collect(),
        is_secret: body.is_secret,
        updated_at: Timestamp::now(),
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/env", tag = "builds", params(("account_id" = String, Path), Scope),
    responses((status = 200, description = "The account's (or the site's) variables", body = Vec<EnvView>)))]
async fn list(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    account: web::Path<String>,
    scope: web::Query<Scope>,
) -> ApiResult<HttpResponse> {
    let o = owner(&state, &who, &account, &scope)?;
    let vars = state
        .store
        .env()
        .list(&o.reseller_id, &o.user_id, o.site_id.as_deref())?;
    Ok(HttpResponse::Ok().json(vars.iter().map(view).collect::<Vec<_>>()))
}

#[utoipa::path(post, path = "/api/v1/accounts/{account_id}/env", tag = "builds", params(("account_id" = String, Path), Scope),
    request_body = Vec<EnvBody>,
    responses((status = 201, description = "The variables created", body = Vec<EnvView>)))]
async fn create(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    account: web::Path<String>,
    scope: web::Query<Scope>,
    body: web::Json<Vec<EnvBody>>,
) -> ApiResult<HttpResponse> {
    let o = owner(&state, &who, &account, &scope)?;
    let env = state.store.env();
    let vars: Vec<EnvVar> = body
        .into_inner()
        .into_iter()
        .map(|b| record(b, o.site_id.clone()))
        .collect();
    // All are checked before any is written: a refusal changes nothing.
    for v in &vars {
        crate::store::env::valid_key(&v.key)?;
        if env
            .get(&o.reseller_id, &o.user_id, o.site_id.as_deref(), &v.key)?
            .is_some()
        {
            return Err(ApiError::invalid(format!(
                "{} exists already: PUT /accounts/{}/env/{} replaces it",
                v.key, account, v.key
            )));
        }
    }
    for v in &vars {
        env.put(&o.reseller_id, &o.user_id, v)?;
    }
    Ok(created(vars.iter().map(view).collect::<Vec<_>>()))
}

fn find(state: &AppState, o: &Owner, key: &str) -> ApiResult<EnvVar> {
    state
        .store
        .env()
        .get(&o.reseller_id, &o.user_id, o.site_id.as_deref(), key)?
        .ok_or(ApiError::NotFound("environment variable"))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account_id}/env/{key}", tag = "builds", params(("account_id" = String, Path), ("key" = String, Path), Scope),
    responses((status = 200, description = "One variable", body = EnvView)))]
async fn get(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    path: web::Path<(String, String)>,
    scope: web::Query<Scope>,
) -> ApiResult<HttpResponse> {
    let o = owner(&state, &who, &path.0, &scope)?;
    Ok(HttpResponse::Ok().json(view(&find(&state, &o, &path.1)?)))
}

#[utoipa::path(put, path = "/api/v1/accounts/{account_id}/env/{key}", tag = "builds", params(("account_id" = String, Path), ("key" = String, Path), Scope),
    request_body = EnvBody,
    responses((status = 200, description = "The variable, replaced", body = EnvView)))]
async fn replace(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String)>,
    scope: web::Query<Scope>,
    body: web::Json<EnvBody>,
) -> ApiResult<HttpResponse> {
    let o = owner(&state, &who, &path.0, &scope)?;
    find(&state, &o, &path.1)?;
    let mut b = body.into_inner();
    b.key = path.1.clone();
    let var = record(b, o.site_id.clone());
    state.store.env().put(&o.reseller_id, &o.user_id, &var)?;
    Ok(HttpResponse::Ok().json(view(&var)))
}

#[utoipa::path(patch, path = "/api/v1/accounts/{account_id}/env/{key}", tag = "builds", params(("account_id" = String, Path), ("key" = String, Path), Scope),
    request_body = ValueBody,
    responses((status = 200, description = "The variable with this context's value set", body = EnvView)))]
async fn set_value(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String)>,
    scope: web::Query<Scope>,
    body: web::Json<ValueBody>,
) -> ApiResult<HttpResponse> {
    let o = owner(&state, &who, &path.0, &scope)?;
    let mut var = find(&state, &o, &path.1)?;
    let b = body.into_inner();
    var.values.retain(|v| v.context != b.context);
    var.values.push(EnvValue {
        id: new_id(),
        value: b.value,
        context: b.context,
        context_parameter: b.context_parameter,
    });
    var.updated_at = Timestamp::now();
    state.store.env().put(&o.reseller_id, &o.user_id, &var)?;
    Ok(HttpResponse::Ok().json(view(&var)))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{account_id}/env/{key}", tag = "builds", params(("account_id" = String, Path), ("key" = String, Path), Scope),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String)>,
    scope: web::Query<Scope>,
) -> ApiResult<HttpResponse> {
    let o = owner(&state, &who, &path.0, &scope)?;
    find(&state, &o, &path.1)?;
    state
        .store
        .env()
        .delete(&o.reseller_id, &o.user_id, o.site_id.as_deref(), &path.1)?;
    Ok(no_content())
}

#[utoipa::path(delete, path = "/api/v1/accounts/{account_id}/env/{key}/value/{value_id}", tag = "builds", params(("account_id" = String, Path), ("key" = String, Path), ("value_id" = String, Path), Scope),
    responses((status = 204, description = "The value is deleted (the variable stays)")))]
async fn delete_value(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String, String)>,
    scope: web::Query<Scope>,
) -> ApiResult<HttpResponse> {
    let o = owner(&state, &who, &path.0, &scope)?;
    let mut var = find(&state, &o, &path.1)?;
    let before = var.values.len();
    var.values.retain(|v| v.id != path.2);
    if var.values.len() == before {
        return Err(ApiError::NotFound("environment variable value"));
    }
    var.updated_at = Timestamp::now();
    state.store.env().put(&o.reseller_id, &o.user_id, &var)?;
    Ok(no_content())
}
