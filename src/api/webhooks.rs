//! Webhook endpoints (`settings:write`): `POST/GET /webhooks`, `GET/PATCH/DELETE /webhooks/{id}`,
//! `GET /webhooks/{id}/deliveries`, `POST /webhooks/{id}/deliveries/{delivery_id}/retry`.
//! Sending is `crate::webhooks`.

use super::{created, no_content, paginate, Order, PageQuery};
use crate::auth::guard::{Key, SettingsWrite};
use crate::error::ApiResult;
use crate::model::Timestamp;
use crate::store::webhooks::{Attempt, Delivery, Endpoint, EndpointPatch};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    "/webhooks" {
        post create, WaitsOnNetwork;
        get list;
    }
    "/webhooks/{id}" {
        get get;
        patch update, WaitsOnNetwork;
        delete delete;
    }
    "/webhooks/{id}/deliveries" {
        get deliveries;
    }
    "/webhooks/{id}/deliveries/{delivery_id}/retry" {
        post retry;
    }
}

/// An endpoint as the API shows it: never its secret (but when it is created).
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    /// Event types it receives, or `["*"]`.
    pub events: Vec<String>,
    /// False once disabled, by the reseller or by the server after 3 days of failures.
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed, if they do.
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Endpoint> for WebhookView {
    fn from(e: Endpoint) -> Self {
        WebhookView {
            id: e.id,
            url: e.url,
            events: e.events,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint as created: the one answer that carries its signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    /// `whsec_…`: the Standard Webhooks secret the `v1` signature is made with. Shown once.
    pub secret: String,
    #[serde(flatten)]
    pub view: WebhookView,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    #[schema(example = "https://crm.example/hook")]
    url: String,
    /// Event types (see the API notes), or `["*"]` for all.
    #[schema(example = json!(["deploy.ready", "domain.verified"]))]
    events: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateWebhook {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// True re-enables an endpoint the server disabled, and clears its failing streak.
    enabled: Option<bool>,
}

/// One attempt to deliver.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub at: Timestamp,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why no answer came, if none did.
    pub error: Option<String>,
    /// The first KiB of the receiver's answer.
    pub response_excerpt: String,
}

/// A delivery: one event to one endpoint, with every attempt.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Also the `webhook-id` header of every attempt.
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: &'static str,
    pub created_at: Timestamp,
    pub next_attempt_at: Option<Timestamp>,
    pub attempt_count: u32,
    /// The newest attempts (up to 30), oldest first.
    pub attempts: Vec<AttemptView>,
    /// The body sent, `{"type", "timestamp", "data"}`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            payload: serde_json::from_slice(&d.body).unwrap_or(serde_json::Value::Null),
            id: d.id,
            webhook_id: d.webhook_id,
            event_type: d.kind,
            state: d.state.name(),
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            attempt_count: d.attempt_count,
            attempts: d.attempts.into_iter().map(AttemptView::from).collect(),
        }
    }
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            at: a.at,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            response_excerpt: a.excerpt,
        }
    }
}

/// A URL the sender may post to (see `targets::check_target`).
async fn target(state: &AppState, url: &str) -> ApiResult<String> {
    crate::targets::check(url, state.settings.allow_private_targets()).await
}

#[utoipa::path(
post, path = "/api/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhook,
    responses((status = 201, description = "The endpoint, with its secret shown this once; at most 10 per reseller", body = CreatedWebhook))
)]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    body: web::Json<CreateWebhook>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let CreateWebhook { url, events } = body.into_inner();
    crate::store::webhooks::Webhooks::valid_events(&events)?;
    let url = target(&state, &url).await?;
    // The name is resolved: the record is written under the gate (`GateMode::WaitsOnNetwork`).
    let _gate = super::write_gate(&req, &state).await;
    let endpoint = state
        .store
        .webhooks()
        .create(&reseller.id, url, events, Timestamp::now())?;
    Ok(created(CreatedWebhook {
        secret: endpoint.secret.0.clone(),
        view: endpoint.into(),
    }))
}

#[utoipa::path(
get, path = "/api/v1/webhooks", tag = "webhooks",
    params(PageQuery),
    responses((status = 200, description = "The reseller's endpoints, oldest first, without secrets; `Link` header", body = Vec<WebhookView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let endpoints: Vec<WebhookView> = state
        .store
        .webhooks()
        .list(&reseller.id)?
        .into_iter()
        .map(WebhookView::from)
        .collect();
    paginate(
        &req,
        &who.scope(),
        endpoints,
        |e| &e.id,
        Order::OldestFirst,
        &q,
    )
}

#[utoipa::path(
get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The endpoint, without its secret", body = WebhookView))
)]
async fn get(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let endpoint = state.store.webhooks().get(&reseller.id, &id)?;
    Ok(HttpResponse::Ok().json(WebhookView::from(endpoint)))
}

#[utoipa::path(
patch, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhook,
    responses((status = 200, description = "The endpoint as changed", body = WebhookView))
)]
async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
    body: web::Json<UpdateWebhook>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let UpdateWebhook {
        url,
        events,
        enabled,
    } = body.into_inner();
    // A foreign id is "not found" before anything is resolved.
    state.store.webhooks().get(&reseller.id, &id)?;
    if let Some(events) = &events {
        crate::store::webhooks::Webhooks::valid_events(events)?;
    }
    let url = match url {
        Some(url) => Some(target(&state, &url).await?),
        None => None,
    };
    let _gate = super::write_gate(&req, &state).await;
    let patch = EndpointPatch {
        url,
        events,
        enabled,
    };
    let endpoint = state
        .store
        .webhooks()
        .update(&reseller.id, &id, patch, Timestamp::now())?;
    Ok(HttpResponse::Ok().json(WebhookView::from(endpoint)))
}

#[utoipa::path(
delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted; its pending deliveries fail"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.webhooks().delete(&reseller.id, &id)?;
    Ok(no_content())
}

#[utoipa::path(
get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id"), PageQuery),
    responses((status = 200, description = "The endpoint's deliveries, newest first, each with its attempts; kept 30 days; `Link` header", body = Vec<DeliveryView>))
)]
async fn deliveries(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let scope = who.scope();
    let want = q.want(&req, &scope)?;
    let (window, total) = state
        .store
        .webhooks()
        .deliveries(&reseller.id, &id, &want)?;
    let window = window.map(DeliveryView::from);
    super::respond(&req, &scope, &want, window, |d| d.id.as_bytes(), total)
}

#[utoipa::path(
post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(
        ("id" = String, Path, description = "Webhook id"),
        ("delivery_id" = String, Path, description = "Delivery id"),
    ),
    responses((status = 202, description = "The delivery, due now (also one that had failed)", body = DeliveryView))
)]
async fn retry(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let (id, delivery_id) = path.into_inner();
    let delivery =
        state
            .store
            .webhooks()
            .retry(&reseller.id, &id, &delivery_id, Timestamp::now())?;
    state.outbox.wake.notify_one();
    Ok(HttpResponse::Accepted().json(DeliveryView::from(delivery)))
}
