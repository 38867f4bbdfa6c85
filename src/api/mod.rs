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

#[derive(Deserialize, Debug, Clone, Copy, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1.
    #[serde(default, deserialize_with = "number_in_query")]
    pub page: Option<usize>,
    /// Items per page, 1 to 100 (default 100).
    #[serde(default, deserialize_with = "number_in_query")]
    pub per_page: Option<usize>,
}

/// A number from a query string. Needed because `#[serde(flatten)]` (used to embed `PageQuery`
/// in filters) hands every query value over as a string.
fn number_in_query<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(usize),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a whole number"))),
    }
}

pub use crate::model::MAX_PER_PAGE;

impl PageQuery {
    /// (page, per_page), validated: page starts at 1, per_page is 1 to 100 (default 100).
    pub fn bounds(self) -> ApiResult<(usize, usize)> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(MAX_PER_PAGE);
        if page == 0 || per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(ApiError::invalid(format!(
                "page starts at 1 and per_page is 1 to {MAX_PER_PAGE}"
            )));
        }
        Ok((page, per_page))
    }

    /// How many items come before this page.
    pub fn offset(self) -> ApiResult<usize> {
        let (page, per_page) = self.bounds()?;
        Ok((page - 1).saturating_mul(per_page))
    }
}

/// Answers one page of `items` as JSON with a Netlify-style `Link` header (next/prev/last).
pub fn paginate<T: Serialize>(
    req: &HttpRequest,
    items: Vec<T>,
    q: PageQuery,
) -> ApiResult<HttpResponse> {
    let (_, per_page) = q.bounds()?;
    let total = items.len();
    let start = q.offset()?.min(total);
    let slice: Vec<T> = items.into_iter().skip(start).take(per_page).collect();
    page_response(req, slice, total, q)
}

/// Answers an already cut page of a list of `total` items, with the `Link` header.
pub fn page_response<T: Serialize>(
    req: &HttpRequest,
    slice: Vec<T>,
    total: usize,
    q: PageQuery,
) -> ApiResult<HttpResponse> {
    use std::fmt::Write;
    let (page, per_page) = q.bounds()?;
    let last = total.div_ceil(per_page).max(1);
    let state = req.app_data::<web::Data<crate::AppState>>();
    let trusted = state
        .map(|s| s.trusted_proxies.as_slice())
        .unwrap_or_default();
    let (scheme, host) = crate::http::origin(req, trusted);
    let base = format!("{scheme}://{host}{}?", req.path());
    // The other query parameters (filters) carry over to every link, encoded once.
    let mut other = String::new();
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k != "page" && k != "per_page" {
            let _ = write!(other, "{}={}&", enc(&k), enc(&v));
        }
    }
    let mut links = String::with_capacity(3 * (base.len() + other.len() + 40));
    let mut link = |p: usize, rel: &str| {
        if !links.is_empty() {
            links.push_str(", ");
        }
        let _ = write!(
            links,
            "<{base}{other}page={p}&per_page={per_page}>; rel=\"{rel}\""
        );
    };
    if page < last {
        link(page + 1, "next");
    }
    if page > 1 {
        link(page - 1, "prev");
    }
    link(last, "last");
    Ok(HttpResponse::Ok()
        .insert_header(("Link", links))
        .insert_header(("X-Total-Count", total))
        .json(slice))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// 201 with a JSON body.
pub fn created<T: Serialize>(body: T) -> HttpResponse {
    HttpResponse::Created().json(body)
}

/// 204 with an empty body and no JSON content type (Netlify clients parse JSON only when told).
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
