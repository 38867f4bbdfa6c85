//! Client users and their access tokens: `POST /access_tokens`, `DELETE /access_tokens/{id}`,
//! `GET /users`, `GET/DELETE /users/{id}`, `GET /user`.

use super::{created, no_content, PageQuery};
use crate::auth::guard::{AnyKey, Key, KeyOrUser, UsersRead, UsersWrite};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::{Email, Timestamp};
use crate::store::resellers::Reseller;
use crate::store::users::{validate_uid, AccessToken, Listed, TokenTerms};
use crate::views::{Lookups, UserView};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    // Fixed paths first: each `{param}` pattern tried on the way costs a regex match.
    "/users" {
        get list;
    }
    "/access_tokens" {
        post create_token;
    }
    "/user" {
        get current;
    }
    "/users/{id}" {
        get get;
        patch update;
        delete delete;
    }
    "/users/{id}/suspend" {
        post suspend;
    }
    "/users/{id}/unsuspend" {
        post unsuspend;
    }
    "/users/{id}/access_tokens" {
        get list_tokens;
        delete revoke_all_tokens;
    }
    "/access_tokens/{id}" {
        delete revoke_token;
    }
}

/// An access token as listed: never the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    /// `rt_…a1b2`: the prefix and the last four characters (`rt_…` for tokens issued before
    /// masks were kept).
    pub masked: String,
    pub user_id: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// `null`: never expires.
    pub expires_at: Option<Timestamp>,
}

impl From<AccessToken> for TokenView {
    fn from(t: AccessToken) -> Self {
        TokenView {
            id: t.id,
            masked: t.masked,
            user_id: t.user_id,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            expires_at: t.expires_at,
        }
    }
}

/// Whose tokens the caller may manage: a reseller key any of its users', a user token its own
/// only. Returns the reseller id and, for a user, the user id.
fn token_scope<N>(who: &KeyOrUser<N>) -> (String, Option<String>) {
    let tenant = who.tenant();
    (tenant.reseller.id, tenant.user.map(|u| u.id))
}

/// The user `id` if the caller may manage its tokens; anyone else is "not found".
fn token_user<N>(who: &KeyOrUser<N>, id: &str) -> ApiResult<String> {
    let (reseller_id, own) = token_scope(who);
    if own.is_some_and(|own| own != id) {
        return Err(ApiError::NotFound("user"));
    }
    Ok(reseller_id)
}

#[utoipa::path(
get, path = "/api/v1/users/{id}/access_tokens", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user's live tokens, oldest first (masked)", body = Vec<TokenView>))
)]
async fn list_tokens(
    state: web::Data<AppState>,
    who: KeyOrUser<UsersRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller_id = token_user(&who, &id)?;
    let now = Timestamp::now();
    let tokens: Vec<TokenView> = state
        .store
        .users()
        .tokens_of(&reseller_id, &id)?
        .into_iter()
        .filter(|t| !t.is_expired(now))
        .map(TokenView::from)
        .collect();
    Ok(HttpResponse::Ok().json(tokens))
}

#[utoipa::path(
delete, path = "/api/v1/users/{id}/access_tokens", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Every token of the user revoked (log out everywhere)"))
)]
async fn revoke_all_tokens(
    state: web::Data<AppState>,
    who: KeyOrUser<UsersWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller_id = token_user(&who, &id)?;
    state.store.users().revoke_all_tokens(&reseller_id, &id)?;
    Ok(no_content())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct TokenUser {
    email: Email,
    /// The CRM's id for the user: a string or a number.
    #[schema(value_type = Option<String>)]
    uid: Option<serde_json::Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateToken {
    user: TokenUser,
    /// Seconds the token lives (60 s to 10 years); absent, the reseller's `access_token_ttl`.
    expires_in: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CreatedToken {
    id: String,
    access_token: String,
    user_id: String,
    user_email: Email,
    email: Email,
    created_at: Timestamp,
    /// `null`: never expires.
    expires_at: Option<Timestamp>,
}

/// A new token's terms: `expires_in` if given, else the reseller's lifetime; never later than
/// the expiry of the key that mints it (an explicit later one is refused).
fn token_terms(
    who: &Principal,
    reseller: &Reseller,
    expires_in: Option<u64>,
    now: Timestamp,
) -> ApiResult<TokenTerms> {
    let ttl = match expires_in {
        Some(secs) => Some(super::reseller::token_ttl(secs)?),
        None => reseller.access_token_ttl,
    };
    let mut expires_at = ttl.map(|secs| now.plus_secs(secs as i64));
    if let Principal::Reseller { key, .. } = who {
        if let Some(limit) = key.expires_at {
            if expires_in.is_some() && expires_at.is_none_or(|at| at > limit) {
                return Err(ApiError::Forbidden(format!(
                    "this key expires at {}; a token it issues must expire no later",
                    limit.to_rfc3339()
                )));
            }
            expires_at = Some(expires_at.map_or(limit, |at| at.min(limit)));
        }
    }
    Ok(TokenTerms {
        expires_at,
        max_per_user: reseller.max_tokens_per_user,
    })
}

#[utoipa::path(
post, path = "/api/v1/access_tokens", tag = "users",
    request_body = CreateToken,
    responses((status = 201, description = "A new access token (the user is created if the email is new)", body = CreatedToken))
)]
async fn create_token(
    state: web::Data<AppState>,
    who: Key<UsersWrite>,
    body: web::Json<CreateToken>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let CreateToken { user, expires_in } = body.into_inner();
    let TokenUser { email, uid } = user;
    // Netlify's docs show uid as a string; CRMs often send their numeric ids.
    let uid = match uid {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(validate_uid(&s)?),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(ApiError::invalid("user.uid must be a string or a number")),
    };
    let now = Timestamp::now();
    let terms = token_terms(&who, reseller, expires_in, now)?;
    let (user, token, secret) = state
        .store
        .users()
        .issue_token(&reseller.id, &email, uid.as_deref(), now, terms)
        .await?;
    Ok(created(CreatedToken {
        id: token.id,
        access_token: secret.expose().to_string(),
        user_id: user.id,
        user_email: user.email.clone(),
        email: user.email,
        created_at: token.created_at,
        expires_at: token.expires_at,
    }))
}

#[utoipa::path(
delete, path = "/api/v1/access_tokens/{id}", tag = "users",
    params(("id" = String, Path, description = "Access token id")),
    responses((status = 204, description = "Revoked (a user may revoke its own tokens)"))
)]
async fn revoke_token(
    state: web::Data<AppState>,
    who: KeyOrUser<UsersWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (reseller_id, own) = token_scope(&who);
    state
        .store
        .users()
        .revoke_token(&reseller_id, own.as_deref(), &id)?;
    Ok(no_content())
}

/// `GET /users` filters and page, read in one pass over the query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UsersQuery {
    /// The user with exactly this email (case-insensitive): an index lookup.
    email: Option<String>,
    /// The users with exactly this uid: an index lookup.
    uid: Option<String>,
}

#[utoipa::path(
get, path = "/api/v1/users", tag = "users",
    params(UsersQuery, PageQuery),
    responses((status = 200, description = "One page of the reseller's users, oldest first; `Link` header", body = Vec<UserView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<UsersRead>,
    filter: web::Query<UsersQuery>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let email = filter
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let uid = filter.uid.as_deref().filter(|u| !u.is_empty());
    let users = state.store.users();
    let tenant = who.scope();
    if email.is_none() && uid.is_none() {
        let want = q.want(&req, &tenant)?;
        let lookups = Lookups::of(&state.store, &reseller.id);
        let window = users
            .window(&reseller.id, &want)?
            .map(|l| UserView::read_some(&state.store, l, lookups));
        let total = users.count(&reseller.id);
        return super::respond(&req, &tenant, &want, window, |u| u.id.as_bytes(), total);
    }
    // Both filters are exact index lookups: a handful of users at most.
    let mut matching: Vec<Listed> = match (uid, email) {
        (Some(uid), _) => users.with_uid(&reseller.id, uid)?,
        (None, Some(email)) => users.with_email(&reseller.id, email)?.into_iter().collect(),
        (None, None) => Vec::new(),
    };
    if let (Some(_), Some(email)) = (uid, email) {
        matching.retain(|l| l.user.email.as_str().eq_ignore_ascii_case(email));
    }
    let lookups = Lookups::of(&state.store, &reseller.id);
    let views: Vec<UserView> = matching
        .into_iter()
        .map(|l| UserView::read_some(&state.store, l, lookups))
        .collect();
    super::paginate(
        &req,
        &tenant,
        views,
        |u| &u.id,
        super::Order::OldestFirst,
        &q,
    )
}

#[utoipa::path(
get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView))
)]
async fn get(
    state: web::Data<AppState>,
    who: Key<UsersRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let user = state.store.users().get_listed(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(UserView::read(&state.store, user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    /// The user's plan; `null` puts it back on the reseller's default plan.
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(nullable, value_type = Option<String>)]
    plan_id: Option<Option<String>>,
}

#[utoipa::path(
patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = UpdateUser,
    responses((status = 200, description = "The user as changed", body = UserView))
)]
async fn update(
    state: web::Data<AppState>,
    who: Key<UsersWrite>,
    id: web::Path<String>,
    body: web::Json<UpdateUser>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    if let Some(plan_id) = body.into_inner().plan_id {
        state
            .store
            .plans()
            .assign(&reseller.id, &id, plan_id.as_deref())?;
    }
    let user = state.store.users().get_listed(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(UserView::read(&state.store, user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SuspendUser {
    /// Why, for the reseller's records and the `user_suspended` mail (at most 500 characters).
    reason: String,
}

#[utoipa::path(
post, path = "/api/v1/users/{id}/suspend", tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = SuspendUser,
    responses((status = 200, description = "The user, suspended: its tokens are refused with 403 `user_suspended`, its sites show the `suspended` page; nothing is deleted", body = UserView))
)]
async fn suspend(
    state: web::Data<AppState>,
    who: Key<UsersWrite>,
    id: web::Path<String>,
    body: web::Json<SuspendUser>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let reason = body.into_inner().reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "reason is 1 to 500 characters, without control characters",
        ));
    }
    state
        .store
        .suspensions()
        .suspend(&reseller.id, &id, reason, Timestamp::now())?;
    let user = state.store.users().get_listed(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(UserView::read(&state.store, user)))
}

#[utoipa::path(
post, path = "/api/v1/users/{id}/unsuspend", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user, no longer suspended", body = UserView))
)]
async fn unsuspend(
    state: web::Data<AppState>,
    who: Key<UsersWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.suspensions().unsuspend(&reseller.id, &id)?;
    let user = state.store.users().get_listed(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(UserView::read(&state.store, user)))
}

#[utoipa::path(
delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted with its tokens and sites"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Key<UsersWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let names: Vec<String> = state
        .store
        .domains()
        .list(&reseller.id)?
        .into_iter()
        .filter(|d| d.user_id == *id)
        .map(|d| d.name.to_string())
        .collect();
    // Deleting sites sweeps unreferenced blobs: disk work, off the async workers.
    let (store, reseller_id, user_id) = (state.store.clone(), reseller.id.clone(), id.clone());
    super::off_worker(move || store.users().delete(&reseller_id, &user_id)).await?;
    // The store dropped their certificates; the TLS listener drops its copies.
    for name in names {
        state.acme.forget_if_gone(&name)?;
    }
    Ok(no_content())
}

/// `GET /user`: the caller as a Netlify user object.
#[derive(Serialize, utoipa::ToSchema)]
struct CurrentUser {
    id: String,
    uid: Option<String>,
    email: Email,
    full_name: Option<String>,
    avatar_url: Option<String>,
    created_at: Timestamp,
    /// `user` or `reseller`
    #[serde(rename = "type")]
    kind: &'static str,
    login_providers: Vec<String>,
    last_login: Option<Timestamp>,
    /// When the credential of this call expires (`null`: never).
    expires_at: Option<Timestamp>,
}

/// The caller as a Netlify user object; a reseller key is shown as a user-shaped reseller.
#[utoipa::path(
get, path = "/api/v1/user", tag = "users",
    responses((status = 200, description = "The caller: the user, or a reseller as a user-shaped object", body = CurrentUser))
)]
async fn current(state: web::Data<AppState>, who: KeyOrUser<AnyKey>) -> ApiResult<HttpResponse> {
    let body = match &*who {
        Principal::User { user, token, .. } => {
            let v = UserView::new(
                state
                    .store
                    .users()
                    .get_listed(&user.reseller_id, &user.id)?,
            );
            CurrentUser {
                id: v.id,
                uid: v.uid,
                email: v.email,
                full_name: v.full_name,
                avatar_url: v.avatar_url,
                created_at: v.created_at,
                kind: "user",
                login_providers: Vec::new(),
                last_login: None,
                expires_at: token.expires_at,
            }
        }
        Principal::Reseller { reseller, key } => CurrentUser {
            id: reseller.id.clone(),
            uid: None,
            email: reseller.email.clone(),
            full_name: Some(reseller.name.clone()),
            avatar_url: None,
            created_at: reseller.created_at,
            kind: "reseller",
            login_providers: Vec::new(),
            last_login: None,
            expires_at: key.expires_at,
        },
        Principal::Operator | Principal::Plugin { .. } => {
            return Err(ApiError::Forbidden("this credential is not a user".into()))
        }
    };
    Ok(HttpResponse::Ok().json(body))
}
