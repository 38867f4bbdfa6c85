//! The HTTP API under `/api/v1`: one module per resource, plus the shared pieces every
//! handler uses (JSON body errors, pagination with `Link` headers, nullable patch fields).

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod billing;
pub mod deploys;
pub mod domains;
pub mod forms;
pub mod keys;
pub mod openapi;
pub mod ops;
pub mod paging;
pub mod reseller;
pub mod sites;
pub mod ssl;
pub mod users;

use crate::error::{json_error, ApiError, ApiResult};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer, Serialize};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Routes are tried in order and each pattern with a `{param}` costs a regex match, so the
    // paths a CRM calls most come first. No two modules' patterns overlap, except the last.
    cfg.configure(users::configure)
        .configure(admin::configure)
        .configure(audit::configure)
        .configure(billing::configure)
        .configure(domains::configure)
        .configure(ssl::configure)
        .configure(keys::configure)
        .configure(reseller::configure)
        .configure(sites::configure)
        .configure(accounts::configure)
        .configure(deploys::configure)
        .configure(forms::configure)
        // Last: `/{account_slug}/sites` must not shadow any fixed path.
        .configure(sites::configure_account_sites);
}

/// How a mutating API route holds the store's write gate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum GateMode {
    /// The write layer reads the body, then holds the gate through the handler.
    Layer,
    /// The handler streams its own (possibly large) body to disk and takes the gate for its
    /// record writes: deploy creation (a zip or a file map) and file uploads.
    StreamsBody,
    /// The handler waits on the network (a DNS check, the registrar, an ACME order: seconds to
    /// minutes) and takes the gate only around its writes, so a backup never waits behind it and
    /// no other write waits behind that backup.
    WaitsOnNetwork,
}

/// The gate mode of a request, by its route (never by its Content-Type).
pub fn gate_mode(req: &actix_web::dev::ServiceRequest) -> GateMode {
    use actix_web::http::Method;
    let path = req.path().strip_prefix("/api/v1").unwrap_or_default();
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    match (req.method(), segs.as_slice()) {
        (&Method::POST, ["sites", _, "deploys"]) | (&Method::PUT, ["deploys", _, "files", _]) => {
            GateMode::StreamsBody
        }
        (
            &Method::POST,
            ["domains", _, "verify"] | ["domains", "register"] | ["sites", _, "ssl"],
        ) => GateMode::WaitsOnNetwork,
        _ => GateMode::Layer,
    }
}

/// Marks a request whose write layer already holds the store's write gate.
#[derive(Clone, Copy)]
pub struct GateHeld;

/// The store's write gate for a handler that takes it itself (`GateMode`):
/// taken now, unless the write layer already holds it for this request (a tokio RwLock must not
/// be read-locked twice by one task: a backup waiting in between would deadlock both).
pub async fn write_gate(
    req: &HttpRequest,
    state: &crate::AppState,
) -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
    use actix_web::HttpMessage;
    if req.extensions().get::<GateHeld>().is_some() {
        return None;
    }
    Some(state.store.write_gate().read_owned().await)
}

/// Extractor configs that turn actix's own body, query and path errors into `ApiError`s.
pub fn extractor_configs(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body)
            .content_type_required(false)
            .error_handler(move |err, _| {
                use actix_web::error::JsonPayloadError as E;
                match err {
                    E::Overflow { .. } | E::OverflowKnownLength { .. } => {
                        ApiError::PayloadTooLarge(max_body)
                    }
                    E::Deserialize(e) => json_error(&e),
                    E::ContentType => ApiError::invalid("expected Content-Type: application/json"),
                    other => {
                        ApiError::InvalidJson(format!("cannot read the request body: {other}"))
                    }
                }
                .into()
            }),
    )
    .app_data(web::PayloadConfig::default().limit(max_body))
    .app_data(
        web::QueryConfig::default().error_handler(|err, _| {
            ApiError::invalid(format!("invalid query string: {err}")).into()
        }),
    )
    .app_data(
        web::PathConfig::default().error_handler(|_, _| ApiError::NotFound("resource").into()),
    );
}

/// A JSON body that may be empty (several Netlify operations make the body optional).
pub fn json_or_default<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| json_error(&e))
}

/// For PATCH bodies: absent -> None, `null` -> Some(None), value -> Some(Some(v)).
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub use paging::{paginate, respond, Order, PageQuery, Want};

/// 201 with a JSON body.
pub fn created<T: Serialize>(body: T) -> HttpResponse {
    HttpResponse::Created().json(body)
}

/// 204 with an empty body and no JSON content type (Netlify clients parse JSON only when told).
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
