//! Paid actions' bookkeeping: `POST/GET/DELETE /payment_methods`, `GET /charges`, and the
//! operator's per-reseller prices at `GET/PUT /admin/resellers/{id}/prices`.

use super::{created, no_content, paginate, Order, PageQuery};
use crate::auth::guard::{BillingWrite, Key, Operator};
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::billing::{Charge, Claim, PaidAction, PaymentKind, PaymentMethod, Prices};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

super::endpoints! { ENDPOINTS:
    "/payment_methods" {
        post add;
        get list;
    }
    "/payment_methods/{id}" {
        delete delete;
    }
    "/charges" {
        get charges;
    }
    "/admin/resellers/{id}/prices" {
        get get_prices;
        put put_prices;
    }
}

/// The client's `Idempotency-Key` header, if any: retries carrying it are charged once.
pub fn idempotency_key(req: &HttpRequest) -> ApiResult<Option<String>> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.trim().is_empty() && s.len() <= 255 => Ok(Some(s.trim().to_string())),
        _ => Err(ApiError::invalid(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// A paid action's idempotency key, claimed for this run: dropped before `done`, the claim is
/// let go (the action failed and charged nothing), so a retry runs again.
pub struct Claimed {
    state: web::Data<AppState>,
    reseller_id: String,
    action: PaidAction,
    pub key: String,
    /// This run's id under the key (see `Billing::claim`).
    run: [u8; 16],
    done: bool,
}

impl Claimed {
    /// What `Billing::charge` stores under this claim with the charge: `status` and the body
    /// `body` makes from the charge.
    pub fn answer<'a>(
        &'a self,
        status: u16,
        body: &'a dyn Fn(&Charge) -> Vec<u8>,
    ) -> crate::store::billing::Answer<'a> {
        (self.key.as_str(), self.run, status, body)
    }

    /// The charge was recorded with the answer: the key keeps it for good.
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let billing = self.state.store.billing();
        if let Err(e) = billing.release(&self.reseller_id, self.action, &self.key, self.run) {
            tracing::warn!(error = %e, "cannot let go of an idempotency key; it frees itself in 15 minutes");
        }
    }
}

/// What a paid action does with its `Idempotency-Key`: run (claimed, or with no key), or
/// answer at once with what the same request got before.
pub enum Idempotency {
    Run(Option<Claimed>),
    Replay(HttpResponse),
}

/// Claims the request's `Idempotency-Key` for `action` (scoped to the reseller, bound to the
/// method, path and body): the same key on another request is 422 `idempotency_key_reused`,
/// while the first still runs 409 `idempotency_key_in_use`.
pub fn idempotency(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    reseller_id: &str,
    action: PaidAction,
    body: &[u8],
) -> ApiResult<Idempotency> {
    let Some(key) = idempotency_key(req)? else {
        return Ok(Idempotency::Run(None));
    };
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        req.method().as_str().as_bytes(),
        req.path().as_bytes(),
        body,
    ] {
        digest.update(&(part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    let mut request = [0u8; 32];
    request.copy_from_slice(digest.finish().as_ref());
    let billing = state.store.billing();
    match billing.claim(reseller_id, action, &key, request, Timestamp::now())? {
        Claim::Run(run) => Ok(Idempotency::Run(Some(Claimed {
            state: state.clone(),
            reseller_id: reseller_id.to_string(),
            action,
            key,
            run,
            done: false,
        }))),
        Claim::Replay { status, body } => {
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::OK);
            Ok(Idempotency::Replay(
                HttpResponse::build(status)
                    .content_type("application/json")
                    .insert_header(("idempotent-replayed", "true"))
                    .body(body),
            ))
        }
        Claim::Running => Err(ApiError::IdempotencyKeyInUse),
        Claim::Reused => Err(ApiError::IdempotencyKeyReused),
    }
}

/// The request id a registrar or CA is given for a client's idempotency key: stable across the
/// client's retries, and no other reseller (nor action) can produce it.
pub fn outside_request_id(
    state: &AppState,
    reseller_id: &str,
    action: PaidAction,
    key: &str,
) -> String {
    let msg = format!("outside-request\0{reseller_id}\0{}\0{key}", action.name());
    hex::encode(state.secret.sign(msg.as_bytes()))
}

fn text_field(name: &str, value: &str) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 200 || v.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{name} must be 1 to 200 characters"
        )));
    }
    Ok(v.to_string())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMethod {
    label: String,
    #[serde(rename = "type")]
    kind: PaymentKind,
    reference: String,
}

#[utoipa::path(
post, path = "/api/v1/payment_methods", tag = "billing", request_body = NewMethod,
    responses((status = 201, description = "The payment method", body = PaymentMethod))
)]
async fn add(
    state: web::Data<AppState>,
    who: Key<BillingWrite>,
    body: web::Json<NewMethod>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let label = text_field("label", &body.label)?;
    let reference = text_field("reference", &body.reference)?;
    let pm = state.store.billing().add_method(
        &reseller.id,
        label,
        body.kind,
        reference,
        Timestamp::now(),
    )?;
    Ok(created(pm))
}

#[utoipa::path(
get, path = "/api/v1/payment_methods", tag = "billing",
    params(PageQuery),
    responses((status = 200, description = "The reseller's payment methods; `Link` header", body = Vec<PaymentMethod>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<BillingWrite>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let methods = state.store.billing().methods(&reseller.id)?;
    paginate(
        &req,
        &who.scope(),
        methods,
        |m| &m.id,
        Order::OldestFirst,
        &q,
    )
}

#[utoipa::path(
delete, path = "/api/v1/payment_methods/{id}", tag = "billing",
    params(("id" = String, Path, description = "Payment method id")),
    responses((status = 204, description = "Removed"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: Key<BillingWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.billing().delete_method(&reseller.id, &id)?;
    Ok(no_content())
}

#[utoipa::path(
get, path = "/api/v1/charges", tag = "billing",
    params(PageQuery),
    responses((status = 200, description = "The reseller's charges ledger, oldest first; `Link` header", body = Vec<Charge>))
)]
async fn charges(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<BillingWrite>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let tenant = who.scope();
    let want = q.want(&req, &tenant)?;
    let (window, total) = state.store.billing().charges_window(&reseller.id, &want)?;
    super::respond(&req, &tenant, &want, window, |c| c.id.as_bytes(), total)
}

#[utoipa::path(
get, path = "/api/v1/admin/resellers/{id}/prices", tag = "operator", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reseller id")),
    responses((status = 200, description = "What the reseller is charged", body = Prices))
)]
async fn get_prices(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = state.store.resellers().get(&id)?;
    Ok(HttpResponse::Ok().json(state.store.billing().prices(&reseller.id)?))
}

#[utoipa::path(
put, path = "/api/v1/admin/resellers/{id}/prices", tag = "operator", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reseller id")), request_body = Prices,
    responses((status = 200, description = "The stored prices", body = Prices))
)]
async fn put_prices(
    state: web::Data<AppState>,
    _: Operator,
    id: web::Path<String>,
    body: web::Json<Prices>,
) -> ApiResult<HttpResponse> {
    let reseller = state.store.resellers().get(&id)?;
    let currency = body.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::invalid(
            "currency is a three-letter ISO 4217 code, e.g. USD",
        ));
    }
    let prices = Prices {
        currency,
        ..body.into_inner()
    };
    state.store.billing().set_prices(&reseller.id, &prices)?;
    Ok(HttpResponse::Ok().json(prices))
}
