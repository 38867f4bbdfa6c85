//! Operator endpoints: `/admin/resellers` create/list/get/patch/delete.

use super::keys::CreatedKey;
use super::{created, no_content, nullable, paginate, PageQuery};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::model::{DomainName, Email, IpAllowList, Timestamp};
use crate::store::resellers::{Reseller, ResellerPatch};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/resellers")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/admin/resellers/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

#[derive(Deserialize)]
struct CreateReseller {
    name: String,
    email: Email,
}

#[derive(Serialize)]
struct CreatedReseller {
    reseller: Reseller,
    key: CreatedKey,
}

async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: web::Json<CreateReseller>,
) -> ApiResult<HttpResponse> {
    who.require_operator()?;
    let (reseller, key) =
        state
            .store
            .resellers()
            .create(&body.name, body.email.clone(), Timestamp::now())?;
    state.store.flush().await?;
    tracing::info!(reseller_id = %reseller.id, "reseller created");
    Ok(created(CreatedReseller {
        reseller,
        key: key.into(),
    }))
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    who.require_operator()?;
    paginate(&req, state.store.resellers().list()?, *q)
}

async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    who.require_operator()?;
    Ok(HttpResponse::Ok().json(state.store.resellers().get(&id)?))
}

#[derive(Deserialize)]
struct PatchReseller {
    name: Option<String>,
    email: Option<Email>,
    suspended: Option<bool>,
    allowed_ips: Option<IpAllowList>,
    #[serde(default, deserialize_with = "nullable")]
    preview_domain: Option<Option<DomainName>>,
}

async fn update(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    body: web::Json<PatchReseller>,
) -> ApiResult<HttpResponse> {
    who.require_operator()?;
    let b = body.into_inner();
    let patch = ResellerPatch {
        name: b.name,
        email: b.email,
        suspended: b.suspended,
        allowed_ips: b.allowed_ips,
        preview_domain: b.preview_domain,
        ..Default::default()
    };
    let reseller = state
        .store
        .resellers()
        .update(&id, patch, Timestamp::now())?;
    state.store.flush().await?;
    Ok(HttpResponse::Ok().json(reseller))
}

async fn delete(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    who.require_operator()?;
    state.store.resellers().delete(&id)?;
    state.store.flush().await?;
    Ok(no_content())
}
