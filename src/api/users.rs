//! Client users and their access tokens: `POST /access_tokens`, `DELETE /access_tokens/{id}`,
//! `GET /users`, `GET/DELETE /users/{id}`, `GET /user`.

use super::{created, no_content, page_response, PageQuery};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::{Email, Permission, Timestamp};
use crate::store::users::{validate_uid, Listed};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Fixed paths first: each `{param}` pattern tried on the way costs a regex match.
    cfg.service(web::resource("/users").route(web::get().to(list)))
        .service(web::resource("/access_tokens").route(web::post().to(create_token)))
        .service(web::resource("/user").route(web::get().to(current)))
        .service(
            web::resource("/users/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(web::resource("/access_tokens/{id}").route(web::delete().to(revoke_token)));
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub uid: Option<String>,
    pub email: Email,
    pub full_name: Option<String>,
    pub avatar_url: Option<String>,
    pub created_at: Timestamp,
    pub token_count: usize,
}

impl UserView {
    fn new(listed: Listed) -> UserView {
        let Listed { user: u, tokens } = listed;
        UserView {
            id: u.id,
            uid: u.uid,
            email: u.email,
            full_name: None,
            avatar_url: None,
            created_at: u.created_at,
            token_count: tokens as usize,
        }
    }
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
}

#[derive(Serialize, utoipa::ToSchema)]
struct CreatedToken {
    id: String,
    access_token: String,
    user_id: String,
    user_email: Email,
    email: Email,
    created_at: Timestamp,
}

#[utoipa::path(
post, path = "/api/v1/access_tokens", tag = "users",
    request_body = CreateToken,
    responses((status = 201, description = "A new access token (the user is created if the email is new)", body = CreatedToken))
)]
async fn create_token(
    state: web::Data<AppState>,
    who: Principal,
    body: web::Json<CreateToken>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::UsersWrite)?;
    let TokenUser { email, uid } = body.into_inner().user;
    // Netlify's docs show uid as a string; CRMs often send their numeric ids.
    let uid = match uid {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(validate_uid(&s)?),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(ApiError::invalid("user.uid must be a string or a number")),
    };
    let now = Timestamp::now();
    let (user, token, secret) = state
        .store
        .users()
        .issue_token(&reseller.id, &email, uid.as_deref(), now)
        .await?;
    Ok(created(CreatedToken {
        id: token.id,
        access_token: secret.expose().to_string(),
        user_id: user.id,
        user_email: user.email.clone(),
        email: user.email,
        created_at: token.created_at,
    }))
}

#[utoipa::path(
delete, path = "/api/v1/access_tokens/{id}", tag = "users",
    params(("id" = String, Path, description = "Access token id")),
    responses((status = 204, description = "Revoked"))
)]
async fn revoke_token(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::UsersWrite)?;
    state.store.users().revoke_token(&reseller.id, &id)?;
    Ok(no_content())
}

/// `GET /users` filters and page, read in one pass over the query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UsersQuery {
    /// Users whose email contains this text (case-insensitive).
    email: Option<String>,
    /// The user with this uid.
    uid: Option<String>,
    /// Page number, from 1.
    #[serde(default, deserialize_with = "super::number_in_query")]
    page: Option<usize>,
    /// Items per page, 1 to 100 (default 100).
    #[serde(default, deserialize_with = "super::number_in_query")]
    per_page: Option<usize>,
}

#[utoipa::path(
get, path = "/api/v1/users", tag = "users",
    params(UsersQuery),
    responses((status = 200, description = "One page of the reseller's users; `Link` header", body = Vec<UserView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<UsersQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::UsersRead)?;
    let page = PageQuery {
        page: q.page,
        per_page: q.per_page,
    };
    let email = q
        .email
        .as_deref()
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty());
    let uid = q.uid.as_deref().filter(|u| !u.is_empty());
    let users = state.store.users();
    let (found, total) = if email.is_none() && uid.is_none() {
        let (_, per_page) = page.bounds()?;
        let found = users.page(&reseller.id, page.offset()?, per_page)?;
        (found, users.count(&reseller.id))
    } else {
        // A uid is looked up in its index; an email filter alone reads the email index.
        let candidates = match (uid, email.as_deref()) {
            (Some(uid), _) => users.with_uid(&reseller.id, uid)?,
            (None, Some(email)) => users.email_contains(&reseller.id, email)?,
            (None, None) => users.list(&reseller.id)?,
        };
        let matching: Vec<Listed> = candidates
            .into_iter()
            .filter(|l| {
                email
                    .as_deref()
                    .is_none_or(|e| l.user.email.as_str().contains(e))
            })
            .filter(|l| uid.is_none_or(|id| l.user.uid.as_deref() == Some(id)))
            .collect();
        let (_, per_page) = page.bounds()?;
        let total = matching.len();
        let found = matching
            .into_iter()
            .skip(page.offset()?)
            .take(per_page)
            .collect();
        (found, total)
    };
    let views: Vec<UserView> = found.into_iter().map(UserView::new).collect();
    page_response(&req, views, total, page)
}

#[utoipa::path(
get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView))
)]
async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::UsersRead)?;
    let user = state.store.users().get_listed(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(UserView::new(user)))
}

#[utoipa::path(
delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted with its tokens and sites"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller(Permission::UsersWrite)?;
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
    web::block(move || store.users().delete(&reseller_id, &user_id))
        .await
        .map_err(ApiError::internal)??;
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
}

/// The caller as a Netlify user object; a reseller key is shown as a user-shaped reseller.
#[utoipa::path(
get, path = "/api/v1/user", tag = "users",
    responses((status = 200, description = "The caller: the user, or a reseller as a user-shaped object", body = CurrentUser))
)]
async fn current(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let body = match &who {
        Principal::User { user, .. } => {
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
            }
        }
        Principal::Reseller { reseller, .. } => CurrentUser {
            id: reseller.id.clone(),
            uid: None,
            email: reseller.email.clone(),
            full_name: Some(reseller.name.clone()),
            avatar_url: None,
            created_at: reseller.created_at,
            kind: "reseller",
            login_providers: Vec::new(),
            last_login: None,
        },
        Principal::Operator | Principal::Plugin { .. } => {
            return Err(ApiError::Forbidden("this credential is not a user".into()))
        }
    };
    Ok(HttpResponse::Ok().json(body))
}
