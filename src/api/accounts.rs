//! Netlify accounts: `GET /accounts`, `GET /accounts/{slug}` (their environment variables: `env.rs`). A user
//! token sees its own account; a reseller key sees its own and one per user.

use crate::auth::guard::{KeyOrUser, SitesRead};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;

super::endpoints! { ENDPOINTS:
    "/accounts" {
        get accounts;
    }
    "/accounts/{slug}" {
        get account;
    }
}

/// A Netlify account: the reseller's own or one per user.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Account {
    id: String,
    name: String,
    pub(super) slug: String,
    /// RESELLER or PERSONAL
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    type_name: &'static str,
    owner_ids: Vec<String>,
    roles_allowed: Vec<&'static str>,
    /// `{"sites": {"included": "unlimited", "used": 0}}`
    #[schema(value_type = Object)]
    capabilities: AccountCapabilities,
    default: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

#[derive(Serialize)]
struct AccountCapabilities {
    sites: Capability,
}

#[derive(Serialize)]
struct Capability {
    included: &'static str,
    used: u64,
}

fn account_of(id: &str, name: &str, kind: &'static str, created_at: Timestamp) -> Account {
    Account {
        id: id.to_string(),
        name: name.to_string(),
        slug: id.to_string(),
        kind,
        type_name: kind,
        owner_ids: vec![id.to_string()],
        roles_allowed: vec!["Owner"],
        capabilities: AccountCapabilities {
            sites: Capability {
                included: "unlimited",
                used: 0,
            },
        },
        default: true,
        created_at,
        updated_at: created_at,
    }
}

/// Netlify accounts: a user token sees its own account; a reseller key sees its own and one per user.
pub(super) fn account_list<N>(state: &AppState, who: &KeyOrUser<N>) -> ApiResult<Vec<Account>> {
    match &**who {
        Principal::User { user, .. } => Ok(vec![account_of(
            &user.id,
            user.email.as_str(),
            "PERSONAL",
            user.created_at,
        )]),
        _ => {
            let reseller = who.tenant().reseller;
            let mut out = vec![account_of(
                &reseller.id,
                &reseller.name,
                "RESELLER",
                reseller.created_at,
            )];
            for listed in state.store.users().list(&reseller.id)? {
                let u = listed.user;
                out.push(account_of(
                    &u.id,
                    u.email.as_str(),
                    "PERSONAL",
                    u.created_at,
                ));
            }
            Ok(out)
        }
    }
}

#[utoipa::path(
get, path = "/api/v1/accounts", tag = "sites",
    responses((status = 200, description = "The caller's Netlify accounts", body = Vec<Account>))
)]
async fn accounts(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(account_list(&state, &who)?))
}

#[utoipa::path(
get, path = "/api/v1/accounts/{slug}", tag = "sites", params(("slug" = String, Path, description = "Account slug: a user id, or the reseller id")),
    responses((status = 200, description = "One account", body = Account))
)]
async fn account(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    slug: web::Path<String>,
) -> ApiResult<HttpResponse> {
    account_list(&state, &who)?
        .into_iter()
        .find(|a| a.slug == slug.as_str())
        .map(|a| HttpResponse::Ok().json(a))
        .ok_or(ApiError::NotFound("account"))
}
