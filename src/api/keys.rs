//! Reseller API keys: `POST/GET /keys`, `DELETE /keys/{id}`.

use super::{created, no_content, paginate, Order, PageQuery};
use crate::auth::guard::{Key, KeysManage};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::{IpAllowList, Permissions, Timestamp};
use crate::store::keys::{ApiKey, NewKey};
use crate::views::KeyView;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    "/keys" {
        post create;
        get list;
    }
    "/keys/{id}" {
        delete delete;
    }
}

/// A key as created: the one response that carries the secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub view: KeyView,
}

impl From<NewKey> for CreatedKey {
    fn from(n: NewKey) -> Self {
        CreatedKey {
            key: n.secret.expose().to_string(),
            view: n.key.into(),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    #[serde(default = "Permissions::all")]
    #[schema(default = json!(["*"]))]
    permissions: Permissions,
    #[serde(default)]
    allowed_ips: IpAllowList,
    #[serde(default)]
    expires_at: Option<Timestamp>,
}

#[utoipa::path(
post, path = "/api/v1/keys", tag = "keys",
    request_body = CreateKey,
    responses((status = 201, description = "The key, with its secret shown this once", body = CreatedKey))
)]
async fn create(
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    body: web::Json<CreateKey>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let b = body.into_inner();
    if let Principal::Reseller { key, .. } = &*who {
        no_wider_than(key, &b)?;
    }
    let new = state.store.keys().create(
        &reseller.id,
        b.name,
        b.permissions,
        b.allowed_ips,
        b.expires_at,
        Timestamp::now(),
    )?;
    Ok(created(CreatedKey::from(new)))
}

/// A key can only mint keys it could itself stand in for: no permission it lacks, no later
/// expiry, no wider IP allowlist.
fn no_wider_than(creator: &ApiKey, new: &CreateKey) -> ApiResult<()> {
    let missing = creator.permissions.missing_from(&new.permissions);
    if !missing.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "a key cannot grant permissions it does not hold: {}",
            missing.join(", ")
        )));
    }
    if let Some(limit) = creator.expires_at {
        if new.expires_at.is_none_or(|e| e > limit) {
            return Err(ApiError::Forbidden(format!(
                "this key expires at {}; a key it creates must expire no later",
                limit.to_rfc3339()
            )));
        }
    }
    if !creator.allowed_ips.covers(&new.allowed_ips) {
        return Err(ApiError::Forbidden(
            "a key cannot allow addresses its own allowed_ips do not".into(),
        ));
    }
    Ok(())
}

#[utoipa::path(
get, path = "/api/v1/keys", tag = "keys",
    params(PageQuery),
    responses((status = 200, description = "The reseller's keys, without secrets; `Link` header", body = Vec<KeyView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let keys: Vec<KeyView> = state
        .store
        .keys()
        .list(&reseller.id)?
        .into_iter()
        .map(KeyView::from)
        .collect();
    paginate(&req, &who.scope(), keys, |k| &k.id, Order::OldestFirst, &q)
}

#[utoipa::path(
delete, path = "/api/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked; the key stops working at once"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.keys().delete(&reseller.id, &id)?;
    Ok(no_content())
}
