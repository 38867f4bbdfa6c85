//! Plans (`settings:write`): `POST/GET /plans`, `GET/PATCH/DELETE /plans/{id}`; a user's plan
//! is set with `PATCH /users/{id}` (`users.rs`), the default plan with `PATCH /reseller`.

use super::{created, no_content, nullable, paginate, Order, PageQuery};
use crate::auth::guard::{Key, SettingsWrite};
use crate::error::ApiResult;
use crate::model::Timestamp;
use crate::store::plans::{Limits, Overuse, Plan};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    "/plans" {
        post create;
        get list;
    }
    "/plans/{id}" {
        get get;
        patch update;
        delete delete;
    }
}

/// A plan, and whether it is the reseller's default. Null limits are unlimited.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PlanView {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub limits: Limits,
    pub overuse: Overuse,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Users without a plan of their own are on this one.
    pub default: bool,
}

fn view(state: &AppState, reseller_id: &str, plan: Plan) -> ApiResult<PlanView> {
    let default = state.store.plans().default_plan_id(reseller_id)?.as_deref() == Some(&plan.id);
    Ok(PlanView {
        id: plan.id,
        name: plan.name,
        limits: plan.limits,
        overuse: plan.overuse,
        created_at: plan.created_at,
        updated_at: plan.updated_at,
        default,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreatePlan {
    name: String,
    max_sites: Option<u64>,
    max_storage_mb: Option<u64>,
    max_bandwidth_mb_month: Option<u64>,
    max_domains: Option<u64>,
    max_submissions_month: Option<u64>,
    max_build_minutes_month: Option<u64>,
    /// `block` (the default) or `notify`.
    #[serde(default)]
    overuse: Overuse,
}

#[utoipa::path(
post, path = "/api/v1/plans", tag = "plans",
    request_body = CreatePlan,
    responses((status = 201, description = "The plan (null limits are unlimited); at most 100 per reseller", body = PlanView))
)]
async fn create(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    body: web::Json<CreatePlan>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let b = body.into_inner();
    let limits = Limits {
        max_sites: b.max_sites,
        max_storage_mb: b.max_storage_mb,
        max_bandwidth_mb_month: b.max_bandwidth_mb_month,
        max_domains: b.max_domains,
        max_submissions_month: b.max_submissions_month,
        max_build_minutes_month: b.max_build_minutes_month,
    };
    let plan =
        state
            .store
            .plans()
            .create(&reseller.id, b.name, limits, b.overuse, Timestamp::now())?;
    Ok(created(view(&state, &reseller.id, plan)?))
}

#[utoipa::path(
get, path = "/api/v1/plans", tag = "plans",
    params(PageQuery),
    responses((status = 200, description = "The reseller's plans, oldest first; `Link` header", body = Vec<PlanView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let plans = state
        .store
        .plans()
        .list(&reseller.id)?
        .into_iter()
        .map(|p| view(&state, &reseller.id, p))
        .collect::<ApiResult<Vec<_>>>()?;
    paginate(&req, &who.scope(), plans, |p| &p.id, Order::OldestFirst, &q)
}

#[utoipa::path(
get, path = "/api/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, description = "The plan", body = PlanView))
)]
async fn get(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let plan = state.store.plans().get(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(view(&state, &reseller.id, plan)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdatePlan {
    name: Option<String>,
    /// `null` makes a limit unlimited; left out, it stays.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    max_sites: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    max_storage_mb: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    max_bandwidth_mb_month: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    max_domains: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    max_submissions_month: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable, value_type = Option<u64>)]
    max_build_minutes_month: Option<Option<u64>>,
    overuse: Option<Overuse>,
}

#[utoipa::path(
patch, path = "/api/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    request_body = UpdatePlan,
    responses((status = 200, description = "The plan as changed; its users have the new limits at once", body = PlanView))
)]
async fn update(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
    body: web::Json<UpdatePlan>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let b = body.into_inner();
    let mut plan = state.store.plans().get(&reseller.id, &id)?;
    if let Some(name) = b.name {
        plan.name = crate::model::Name::parse(&name)
            .map_err(crate::error::ApiError::invalid)?
            .into_string();
    }
    let l = &mut plan.limits;
    for (field, value) in [
        (&mut l.max_sites, b.max_sites),
        (&mut l.max_storage_mb, b.max_storage_mb),
        (&mut l.max_bandwidth_mb_month, b.max_bandwidth_mb_month),
        (&mut l.max_domains, b.max_domains),
        (&mut l.max_submissions_month, b.max_submissions_month),
        (&mut l.max_build_minutes_month, b.max_build_minutes_month),
    ] {
        if let Some(value) = value {
            *field = value;
        }
    }
    if let Some(overuse) = b.overuse {
        plan.overuse = overuse;
    }
    plan.updated_at = Timestamp::now();
    state.store.plans().put(&reseller.id, &plan)?;
    Ok(HttpResponse::Ok().json(view(&state, &reseller.id, plan)?))
}

#[utoipa::path(
delete, path = "/api/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 204, description = "Deleted; its users fall back to the default plan (or none)"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.plans().delete(&reseller.id, &id)?;
    Ok(no_content())
}
