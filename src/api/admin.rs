//! Operator endpoints: `/admin/resellers` create/list/get/patch/delete.

use super::keys::CreatedKey;
use super::{created, no_content, nullable, PageQuery};
use crate::auth::guard::Operator;
use crate::error::ApiResult;
use crate::model::{DomainName, Email, IpAllowList, Timestamp};
use crate::store::plans::{Limits, ResellerLimits};
use crate::store::resellers::{Reseller, ResellerPatch};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    "/admin/resellers" {
        post create;
        get list;
    }
    "/admin/resellers/{id}" {
        get get;
        patch update;
        delete delete;
    }
    "/admin/resellers/{id}/certificate" {
        put put_certificate;
        delete delete_certificate;
    }
    "/admin/backup" {
        get backup;
    }
}

/// `GET /admin/backup`: a consistent snapshot of the whole instance as a tar stream (what
/// `resellerd backup` saves while the server runs).
#[utoipa::path(
get, path = "/api/v1/admin/backup", tag = "operator", security(("bearer" = [])),
    responses((status = 200, description = "A consistent snapshot of the instance as a tar stream", content_type = "application/x-tar", body = Vec<u8>))
)]
async fn backup(state: web::Data<AppState>, _: Operator) -> ApiResult<HttpResponse> {
    state.store.check_dump()?;
    let gate = Some(state.store.write_gate());
    let store = state.store.clone();
    let data_dir = state.settings.data_dir();
    // The archive goes straight from the database's snapshot to the client, a few chunks ahead
    // at most: no copy of it on the server's disk (whose writes would compete with the fsyncs of
    // every acknowledged write). A client that goes away, or reads nothing for a minute, ends
    // the dump at its next chunk.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let sender = crate::backup::ChunkSender::new(
        tx.clone(),
        crate::backup::IDLE_CLIENT,
        tokio::runtime::Handle::current(),
    );
    tokio::task::spawn_blocking(move || {
        let sent = crate::backup::write(&store, &data_dir, sender, gate)
            .and_then(|mut out| std::io::Write::flush(&mut out));
        if let Err(e) = sent {
            tracing::warn!(error = %e, "backup failed");
            // The response is cut short (no final chunk), so a client cannot take it as whole.
            let _ = tx.blocking_send(Err(e));
        }
    });
    // Until the first chunk, a failure can still be a JSON error instead of a cut-off archive.
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(crate::error::ApiError::internal_in("backup failed", e)),
        None => {
            return Err(crate::error::ApiError::internal(
                "backup ended without data",
            ))
        }
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let chunks = futures_util::stream::once(async { Ok(first) }).chain(rest);
    let name = format!(
        "resellerd-backup-{}.tar",
        Timestamp::now().to_rfc3339().replace(':', "")
    );
    Ok(HttpResponse::Ok()
        .content_type("application/x-tar")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .streaming(chunks))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateReseller {
    name: String,
    email: Email,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CreatedReseller {
    reseller: Reseller,
    key: CreatedKey,
}

#[utoipa::path(
post, path = "/api/v1/admin/resellers", tag = "operator", security(("bearer" = [])),
    request_body = CreateReseller,
    responses((status = 201, description = "The reseller and its first API key", body = CreatedReseller))
)]
async fn create(
    state: web::Data<AppState>,
    _: Operator,
    body: web::Json<CreateReseller>,
) -> ApiResult<HttpResponse> {
    let (reseller, key) =
        state
            .store
            .resellers()
            .create(&body.name, body.email.clone(), Timestamp::now())?;
    tracing::info!(reseller_id = %reseller.id, "reseller created");
    Ok(created(CreatedReseller {
        reseller,
        key: key.into(),
    }))
}

#[utoipa::path(
get, path = "/api/v1/admin/resellers", tag = "operator", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "One page of resellers; `Link` header", body = Vec<Reseller>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Operator,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.scope();
    let want = q.want(&req, &tenant)?;
    let resellers = state.store.resellers();
    let window = resellers.page(&want)?;
    let total = resellers.count();
    super::respond(&req, &tenant, &want, window, |r| r.id.as_bytes(), total)
}

#[utoipa::path(
get, path = "/api/v1/admin/resellers/{id}", tag = "operator", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reseller id")),
    responses((status = 200, description = "The reseller, with the operator's limits on it", body = AdminReseller))
)]
async fn get(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = state.store.resellers().get(&id)?;
    Ok(HttpResponse::Ok().json(with_limits(&state, reseller)?))
}

/// A reseller as the operator sees it: with its limits.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminReseller {
    #[serde(flatten)]
    reseller: Reseller,
    limits: LimitsView,
}

/// What the operator allows a reseller: `max_users`, and per client user the plan limits (each
/// user gets the tighter of its plan's and these); null is unlimited.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitsView {
    #[serde(default)]
    max_users: Option<u64>,
    #[serde(flatten)]
    per_user: Limits,
}

fn with_limits(state: &AppState, reseller: Reseller) -> ApiResult<AdminReseller> {
    let ResellerLimits {
        max_users,
        per_user,
    } = state.store.plans().reseller_limits(&reseller.id)?;
    Ok(AdminReseller {
        reseller,
        limits: LimitsView {
            max_users,
            per_user,
        },
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchReseller {
    name: Option<String>,
    email: Option<Email>,
    suspended: Option<bool>,
    allowed_ips: Option<IpAllowList>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    preview_domain: Option<Option<DomainName>>,
    /// Replaces the reseller's limits (fields left out or null are unlimited).
    limits: Option<LimitsView>,
}

#[utoipa::path(
patch, path = "/api/v1/admin/resellers/{id}", tag = "operator", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reseller id")), request_body = PatchReseller,
    responses((status = 200, description = "The updated reseller, with its limits", body = AdminReseller))
)]
async fn update(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<String>,
    body: web::Json<PatchReseller>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    if let Some(Some(d)) = &b.preview_domain {
        state
            .names
            .preview_domain_allowed(&state.store, &id, d.as_str(), true)?;
    }
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
    if let Some(LimitsView {
        max_users,
        per_user,
    }) = b.limits
    {
        let limits = ResellerLimits {
            max_users,
            per_user,
        };
        state.store.plans().set_reseller_limits(&id, &limits)?;
    }
    Ok(HttpResponse::Ok().json(with_limits(&state, reseller)?))
}

#[utoipa::path(
delete, path = "/api/v1/admin/resellers/{id}", tag = "operator", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reseller id")),
    responses((status = 204, description = "Deleted"))
)]
async fn delete(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = state.store.resellers().get(&id)?;
    let names: Vec<String> = state
        .store
        .domains()
        .list(&id)?
        .into_iter()
        .map(|d| d.name.to_string())
        .collect();
    // Deleting sites sweeps unreferenced blobs: disk work, off the async workers.
    let (store, reseller_id) = (state.store.clone(), id.clone());
    super::off_worker(move || store.resellers().delete(&reseller_id)).await?;
    // Every certificate of the reseller goes: its domains' (the store dropped those it owned),
    // and the operator-installed one for its preview domain: records, keys, listener copies.
    for name in names {
        state.acme.forget_if_gone(&name)?;
    }
    if let Ok(wildcard) = wildcard_name(&reseller) {
        state.acme.forget(&wildcard)?;
    }
    Ok(no_content())
}

/// PEM certificate chain and private key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UploadCertificate {
    certificate: String,
    private_key: String,
}

/// An installed certificate.
#[derive(Serialize, utoipa::ToSchema)]
struct UploadedCertificate {
    domains: Vec<String>,
    issuer: Option<String>,
    expires_at: Option<Timestamp>,
    /// Always `uploaded`
    #[schema(value_type = String)]
    state: crate::store::certs::CertState,
}

/// The name a reseller's uploaded certificate serves: `*.<preview domain>`.
fn wildcard_name(reseller: &Reseller) -> ApiResult<String> {
    reseller
        .preview_domain
        .as_ref()
        .map(|d| format!("*.{d}"))
        .ok_or_else(|| {
            crate::error::ApiError::invalid(
                "the reseller has no preview_domain to serve a certificate for",
            )
        })
}

/// A certificate (e.g. a wildcard) for the reseller's preview domain, served by SNI at once.
#[utoipa::path(
put, path = "/api/v1/admin/resellers/{id}/certificate", tag = "operator", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reseller id")), request_body = UploadCertificate,
    responses((status = 200, description = "Installed for `*.<preview_domain>`", body = UploadedCertificate))
)]
async fn put_certificate(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<String>,
    body: web::Json<UploadCertificate>,
) -> ApiResult<HttpResponse> {
    let reseller = state.store.resellers().get(&id)?;
    let name = wildcard_name(&reseller)?;
    let rec = state
        .acme
        .install_uploaded(&name, &reseller.id, &body.certificate, &body.private_key)
        .await?;
    Ok(HttpResponse::Ok().json(UploadedCertificate {
        domains: vec![rec.domain],
        issuer: rec.issuer,
        expires_at: rec.not_after,
        state: rec.state,
    }))
}

#[utoipa::path(
delete, path = "/api/v1/admin/resellers/{id}/certificate", tag = "operator", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reseller id")),
    responses((status = 204, description = "Removed"))
)]
async fn delete_certificate(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = state.store.resellers().get(&id)?;
    let name = wildcard_name(&reseller)?;
    if state.store.certs().get(&name)?.is_none() {
        return Err(crate::error::ApiError::NotFound("certificate"));
    }
    state.acme.forget(&name)?;
    Ok(no_content())
}
