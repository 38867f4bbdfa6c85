//! Reading the audit log: `GET /audit` (a reseller's own) and `GET /admin/audit` (everyone's),
//! newest first; and the middleware hook that records mutating calls.

use super::PageQuery;
use crate::auth::guard::{Key, KeysManage, Operator};
use crate::auth::{Actor, Principal};
use crate::error::ApiResult;
use crate::model::Timestamp;
use crate::store::audit::AuditEntry;
use crate::AppState;
use actix_web::dev::ServiceResponse;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

super::endpoints! { ENDPOINTS:
    "/audit" {
        get reseller_log;
    }
    "/admin/audit" {
        get operator_log;
    }
}

#[utoipa::path(
get, path = "/api/v1/audit", tag = "audit", params(PageQuery),
    responses((status = 200, description = "The reseller's audit log, newest first; `Link` header", body = Vec<AuditEntry>))
)]
async fn reseller_log(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<KeysManage>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    list(&req, &state, &who, Some(&reseller.id), &q)
}

#[utoipa::path(
get, path = "/api/v1/admin/audit", tag = "operator", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, description = "The whole audit log, newest first; `Link` header", body = Vec<AuditEntry>))
)]
async fn operator_log(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Operator,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    list(&req, &state, &who, None, &q)
}

/// One page of a view of the log, newest first, sought in the store.
fn list(
    req: &HttpRequest,
    state: &AppState,
    who: &Principal,
    reseller_id: Option<&str>,
    q: &PageQuery,
) -> ApiResult<HttpResponse> {
    let tenant = who.scope();
    let want = q.want(req, &tenant)?;
    let (window, total) = state.store.audit().window(reseller_id, &want)?;
    super::respond(req, &tenant, &want, window, |e| &e.position, total)
}

/// Queues the audit entry of an authenticated mutating call once its response is known; the
/// write layer's flush (`lib.rs`, `write_gate`) makes it durable with the call's own writes.
pub fn record<B>(res: &ServiceResponse<B>, ip: Option<std::net::IpAddr>) {
    let req = res.request();
    if matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS") {
        return;
    }
    let Some(actor) = req.extensions().get::<Actor>().cloned() else {
        return;
    };
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return;
    };
    let entry = AuditEntry {
        id: String::new(),
        at: Timestamp::now(),
        actor_kind: actor.kind.to_string(),
        actor_id: actor.id,
        reseller_id: actor.reseller_id,
        method: req.method().to_string(),
        route: req
            .match_pattern()
            .unwrap_or_else(|| req.path().to_string()),
        path: req.path().to_string(),
        status: res.status().as_u16(),
        ip: ip.map(|i| i.to_string()),
    };
    state.store.audit().record(entry);
}
