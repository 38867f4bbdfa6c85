//! The HTTP API under `/api/v1`: one module per resource, plus the shared pieces every
//! handler uses (JSON body errors, pagination with `Link` headers, nullable patch fields).

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod billing;
pub mod builds;
pub mod deploys;
pub mod domains;
pub mod env;
pub mod forms;
pub mod keys;
pub mod mail;
pub mod openapi;
pub mod ops;
pub mod paging;
pub mod plans;
pub mod proxy_profiles;
pub mod reseller;
pub mod signing_keys;
pub mod sites;
pub mod ssl;
pub mod usage;
pub mod users;
pub mod webhooks;

use crate::error::{json_error, ApiError, ApiResult};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer, Serialize};

/// Every endpoint module, in registration order. Routes are tried in order and each pattern with
/// a `{param}` costs a regex match, so the paths a CRM calls most come first. No two modules'
/// patterns overlap, except the last.
pub const ENDPOINTS: &[Endpoints] = &[
    users::ENDPOINTS,
    usage::ENDPOINTS,
    admin::ENDPOINTS,
    audit::ENDPOINTS,
    billing::ENDPOINTS,
    domains::ENDPOINTS,
    ssl::ENDPOINTS,
    keys::ENDPOINTS,
    reseller::ENDPOINTS,
    mail::ENDPOINTS,
    plans::ENDPOINTS,
    proxy_profiles::ENDPOINTS,
    signing_keys::ENDPOINTS,
    sites::ENDPOINTS,
    accounts::ENDPOINTS,
    deploys::ENDPOINTS,
    builds::ENDPOINTS,
    env::ENDPOINTS,
    forms::ENDPOINTS,
    webhooks::ENDPOINTS,
    // Last: `/{account_slug}/sites` must not shadow any fixed path.
    sites::ACCOUNT_SITES,
];

/// Registers every endpoint under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for endpoints in ENDPOINTS {
        (endpoints.configure)(cfg);
    }
}

/// Every endpoint under `/api/v1`, as `configure` registers it.
pub fn routes() -> impl Iterator<Item = &'static Route> {
    ENDPOINTS.iter().flat_map(|e| e.routes)
}

/// One module's endpoints, declared once with `endpoints!`: the route registration, and the
/// table the OpenAPI document, its access rules and the isolation test read.
pub struct Endpoints {
    pub configure: fn(&mut web::ServiceConfig),
    pub routes: &'static [Route],
}

/// One endpoint: a method (lower case, as in OpenAPI), a path under `/api/v1`, who may call it,
/// and the OpenAPI document of its handler (from its `#[utoipa::path]`).
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub who: Who,
    /// How the write layer holds the store's write gate for it (`Layer` unless the table says).
    pub gate: GateMode,
    pub doc: fn() -> utoipa::openapi::OpenApi,
}

pub use crate::auth::guard::Who;

/// Declares a module's endpoints once:
///
/// ```text
/// endpoints! { ENDPOINTS:
///     "/keys" {
///         post create;
///         get list;
///     }
///     "/domains/{id}/verify" {
///         post verify, WaitsOnNetwork;
///     }
/// }
/// ```
///
/// (a `GateMode` after the handler, when it is not `Layer`)
/// becomes a `pub const ENDPOINTS: Endpoints` whose `configure` registers each path as one
/// `web::resource` with a route per method (so a wrong method on a known path is 405) and whose
/// `routes` lists them with who may call each, read from the handler's access guard
/// (`auth::guard::who_of`: the one place the rule is stated), and the handler's OpenAPI document
/// (from its `#[utoipa::path]`; a unit test checks that each names the route's own method and
/// path).
macro_rules! endpoints {
    ($name:ident: $( $path:literal { $( $method:ident $handler:ident $(, $gate:ident)?; )+ } )+) => {
        pub const $name: $crate::api::Endpoints = $crate::api::Endpoints {
            configure: |cfg| {
                $(
                    cfg.service(
                        actix_web::web::resource($path)
                            $( .route(actix_web::web::$method().to($handler)) )+
                    );
                )+
            },
            routes: &[
                $( $(
                    $crate::api::Route {
                        method: stringify!($method),
                        path: $path,
                        who: $crate::auth::guard::who_of(&$handler),
                        gate: $crate::api::gate_or_layer!($($gate)?),
                        doc: {
                            #[derive(utoipa::OpenApi)]
                            #[openapi(paths($handler))]
                            struct Doc;
                            <Doc as utoipa::OpenApi>::openapi
                        },
                    },
                )+ )+
            ],
        };
    };
}
pub(crate) use endpoints;

/// The `GateMode` an `endpoints!` row names, `Layer` when it names none.
macro_rules! gate_or_layer {
    () => {
        $crate::api::GateMode::Layer
    };
    ($gate:ident) => {
        $crate::api::GateMode::$gate
    };
}
pub(crate) use gate_or_layer;

/// How a mutating API route holds the store's write gate (stated in its `endpoints!` row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The gate mode of a request, by the route its path and method match in the endpoint tables
/// (never by its Content-Type); `Layer` for anything else.
pub fn gate_mode(req: &actix_web::dev::ServiceRequest) -> GateMode {
    use std::sync::OnceLock;
    // The few routes that are not `Layer`, by method and full pattern.
    static MODES: OnceLock<Vec<(&'static str, String, GateMode)>> = OnceLock::new();
    let modes = MODES.get_or_init(|| {
        routes()
            .filter(|r| r.gate != GateMode::Layer)
            .map(|r| (r.method, format!("/api/v1{}", r.path), r.gate))
            .collect()
    });
    let Some(pattern) = req.match_pattern() else {
        return GateMode::Layer;
    };
    let method = req.method().as_str();
    modes
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == pattern)
        .map_or(GateMode::Layer, |(_, _, mode)| *mode)
}

/// True for a request to a route anyone may call (`Public`): a build hook or a git host's push,
/// whose credential is in its URL or its signature, not in `Authorization`.
pub fn is_public(req: &actix_web::dev::ServiceRequest) -> bool {
    use std::sync::OnceLock;
    static PUBLIC: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let public = PUBLIC.get_or_init(|| {
        routes()
            .filter(|r| r.who == crate::auth::guard::Who::Public)
            .map(|r| (r.method, format!("/api/v1{}", r.path)))
            .collect()
    });
    let Some(pattern) = req.match_pattern() else {
        return false;
    };
    let method = req.method().as_str();
    public
        .iter()
        .any(|(m, p)| m.eq_ignore_ascii_case(method) && *p == pattern)
}

/// Runs `work` on a blocking thread, off the async workers: disk or network work that can take
/// long (a file map of 25,000 files, a zip, a deletion that sweeps blobs, a blob store's answer).
pub async fn off_worker<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> ApiResult<T>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    web::block(work)
        .await
        .map_err(ApiError::internal)?
        .map_err(Into::into)
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

/// An HTML body sent as `text/html` (of `what`, for the messages): UTF-8, not empty, at most
/// `limit` bytes.
pub async fn html_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
    what: &str,
) -> ApiResult<String> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("text/html")
    {
        return Err(ApiError::invalid(format!(
            "{what} are sent with Content-Type: text/html"
        )));
    }
    let body = crate::http::read_body(payload, limit, timeout).await?;
    let html = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::invalid(format!("{what} must be UTF-8 HTML")))?;
    if html.trim().is_empty() {
        return Err(ApiError::invalid("the body is empty"));
    }
    Ok(html)
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

#[cfg(test)]
mod tests {
    use super::openapi::shape;
    use super::*;

    #[test]
    fn each_route_documents_its_own_method_and_path() {
        let mut seen = std::collections::BTreeSet::new();
        for route in routes() {
            let doc = (route.doc)();
            let paths: Vec<&String> = doc.paths.paths.keys().collect();
            assert_eq!(paths.len(), 1, "{} {}: {paths:?}", route.method, route.path);
            assert_eq!(
                shape(paths[0]),
                format!("/api/v1{}", shape(route.path)),
                "the handler of {} {} documents another path",
                route.method,
                route.path
            );
            let value = serde_json::to_value(&doc.paths.paths[paths[0]]).unwrap();
            assert!(
                value.get(route.method).is_some(),
                "the handler of {} {} documents only {:?}",
                route.method,
                route.path,
                value.as_object().map(|o| o.keys().collect::<Vec<_>>())
            );
            assert!(
                seen.insert((route.method, shape(route.path))),
                "{} {} is declared twice",
                route.method,
                route.path
            );
        }
        assert!(seen.len() >= 70, "only {} routes", seen.len());
    }
}
