//! Reseller signing keys (TokenEx "RSA keys"): `POST/GET /signing_keys`,
//! `POST /signing_keys/{id}/activate`, `DELETE /signing_keys/{id}`, and the public
//! `GET /resellers/{reseller_id}/jwks.json`. The private key never leaves the server.

use super::{created, no_content, paginate, Order, PageQuery};
use crate::auth::guard::{Key, KeysManage, Public};
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::signing::{Alg, SigningKey};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

super::endpoints! { ENDPOINTS:
    "/signing_keys" {
        post create;
        get list;
    }
    "/signing_keys/{id}" {
        delete delete;
    }
    "/signing_keys/{id}/activate" {
        post activate;
    }
    "/resellers/{reseller_id}/jwks.json" {
        get jwks;
    }
}

/// A signing key as the API shows it: never the private part.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SigningKeyView {
    pub id: String,
    /// The JWK thumbprint (RFC 7638): the `kid` of signatures made with this key.
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
    /// The public key as a JWK.
    #[schema(value_type = Object)]
    pub public_jwk: Value,
    pub created_at: Timestamp,
    /// The key of its algorithm that signs: EdDSA signs webhooks (`v1a`), RS256 signs mail (DKIM).
    pub active: bool,
}

impl From<SigningKey> for SigningKeyView {
    fn from(k: SigningKey) -> Self {
        SigningKeyView {
            public_jwk: crate::signing::public_jwk(&k),
            id: k.id,
            kid: k.kid,
            alg: k.alg.as_str(),
            created_at: k.created_at,
            active: k.active,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSigningKey {
    /// `EdDSA` (Ed25519) or `RS256` (RSA 2048).
    #[schema(example = "EdDSA")]
    alg: String,
}

#[utoipa::path(
post, path = "/api/v1/signing_keys", tag = "signing keys",
    request_body = CreateSigningKey,
    responses((status = 201, description = "The new key (active if no other key of its algorithm is); at most 6", body = SigningKeyView))
)]
async fn create(
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    body: web::Json<CreateSigningKey>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let alg = match body.alg.as_str() {
        "EdDSA" => Alg::EdDSA,
        "RS256" => Alg::RS256,
        other => {
            return Err(ApiError::invalid(format!(
                "alg {other:?} is not EdDSA or RS256"
            )))
        }
    };
    // Checked first, so a reseller at the limit cannot make the server generate RSA keys.
    if state.store.signing_keys().list(&reseller.id)?.len()
        >= crate::store::signing::MAX_SIGNING_KEYS
    {
        return Err(limit_reached());
    }
    let reseller_id = reseller.id.clone();
    let key = web::block(move || crate::signing::generate(&reseller_id, alg, Timestamp::now()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let key = state.store.signing_keys().add(key)?;
    Ok(created(SigningKeyView::from(key)))
}

fn limit_reached() -> ApiError {
    ApiError::Conflict(
        crate::error::Conflict::SigningKeyLimitReached,
        format!(
            "a reseller has at most {} signing keys; delete one first",
            crate::store::signing::MAX_SIGNING_KEYS
        ),
    )
}

#[utoipa::path(
get, path = "/api/v1/signing_keys", tag = "signing keys",
    params(PageQuery),
    responses((status = 200, description = "The reseller's signing keys, oldest first; `Link` header", body = Vec<SigningKeyView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let keys: Vec<SigningKeyView> = state
        .store
        .signing_keys()
        .list(&reseller.id)?
        .into_iter()
        .map(SigningKeyView::from)
        .collect();
    paginate(&req, &who.scope(), keys, |k| &k.id, Order::OldestFirst, &q)
}

#[utoipa::path(
post, path = "/api/v1/signing_keys/{id}/activate", tag = "signing keys",
    params(("id" = String, Path, description = "Signing key id")),
    responses((status = 200, description = "The key, now the active one of its algorithm; the one it replaces stays in the JWKS", body = SigningKeyView))
)]
async fn activate(
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let key = state.store.signing_keys().activate(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(SigningKeyView::from(key)))
}

#[utoipa::path(
delete, path = "/api/v1/signing_keys/{id}", tag = "signing keys",
    params(("id" = String, Path, description = "Signing key id")),
    responses((status = 204, description = "Deleted; it leaves the JWKS at once"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.signing_keys().delete(&reseller.id, &id)?;
    Ok(no_content())
}

/// A JSON Web Key Set.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Jwks {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<Value>,
}

#[utoipa::path(
get, path = "/api/v1/resellers/{reseller_id}/jwks.json", tag = "signing keys",
    security(()),
    params(("reseller_id" = String, Path, description = "Reseller id")),
    responses((status = 200, description = "Every signing key of the reseller that is not deleted, active or not, so rotation never breaks a verifier. An unknown reseller has no keys.", body = Jwks))
)]
async fn jwks(
    state: web::Data<AppState>,
    reseller_id: web::Path<String>,
    _public: Public,
) -> ApiResult<HttpResponse> {
    let keys = state
        .store
        .signing_keys()
        .list(&reseller_id)?
        .iter()
        .map(crate::signing::public_jwk)
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(Jwks { keys }))
}
