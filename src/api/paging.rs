//! Paging for every list. Two ways in:
//!
//! - keyset (the default): `Link` `next`/`prev`/`first`/`last` carry an opaque `cursor=` that
//!   names a position in the list (an entity id, time-ordered) and is signed together with the
//!   list's path, the caller's tenant and its filters, so a cursor from another list, tenant or
//!   filter, or an altered one, is 400 `invalid_cursor`. Store-backed lists seek to it: a page
//!   costs O(per_page) at any depth, `last` included.
//! - `page=` (what Netlify's clients send): an offset, O(offset), with page-numbered links.
//!
//! `X-Total-Count` is sent either way.

use crate::error::{ApiError, ApiResult};
use crate::store::{Seek, Window};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt::Write;

pub use crate::model::MAX_PER_PAGE;

#[derive(Deserialize, Debug, Clone, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1 (Netlify's paging; costs O(offset): prefer `cursor`).
    #[serde(default, deserialize_with = "number_in_query")]
    pub page: Option<usize>,
    /// Items per page, 1 to 100 (default 100).
    #[serde(default, deserialize_with = "number_in_query")]
    pub per_page: Option<usize>,
    /// An opaque position from a `Link` header (`next`, `prev`, `first`, `last`).
    pub cursor: Option<String>,
}

/// A number from a query string. Needed because `#[serde(flatten)]` (used to embed `PageQuery`
/// in filters) hands every query value over as a string.
pub fn number_in_query<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
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

pub use crate::store::Want;

const CURSOR_VERSION: u8 = 1;
const MAC_LEN: usize = 16;

impl PageQuery {
    pub fn per_page(&self) -> ApiResult<usize> {
        let per_page = self.per_page.unwrap_or(MAX_PER_PAGE);
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(ApiError::invalid(format!(
                "per_page is 1 to {MAX_PER_PAGE}"
            )));
        }
        Ok(per_page)
    }

    /// What to fetch for this request by `tenant` (who is listing: the cursor is bound to it).
    pub fn want(&self, req: &HttpRequest, tenant: &str) -> ApiResult<Want> {
        let limit = self.per_page()?;
        match (self.page, &self.cursor) {
            (Some(_), Some(_)) => Err(ApiError::invalid("give either page or cursor, not both")),
            (Some(0), None) => Err(ApiError::invalid("page starts at 1")),
            (Some(page), None) => Ok(Want::Offset {
                offset: (page - 1).saturating_mul(limit),
                limit,
            }),
            (None, None) => Ok(Want::Keyset {
                seek: Seek::First,
                limit,
            }),
            (None, Some(cursor)) => Ok(Want::Keyset {
                seek: Signer::new(req, tenant)?.decode(cursor)?,
                limit,
            }),
        }
    }
}

/// Signs and checks cursors for one request: an HMAC keyed with the edge secret that has
/// already taken in what a cursor is bound to, the list (path), the tenant and the filters
/// (every query parameter but the paging ones, in a canonical order). Built once per request.
struct Signer(ring::hmac::Context);

impl Signer {
    fn new(req: &HttpRequest, tenant: &str) -> ApiResult<Signer> {
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| ApiError::internal("no app state"))?;
        let mut mac = state.secret.keyed();
        for part in [
            b"cursor".as_slice(),
            req.path().as_bytes(),
            tenant.as_bytes(),
        ] {
            mac.update(part);
            mac.update(b"\0");
        }
        let query = req.query_string();
        if !query.is_empty() {
            let mut filters: Vec<_> = form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| !matches!(k.as_ref(), "page" | "per_page" | "cursor"))
                .collect();
            filters.sort();
            for (k, v) in filters {
                mac.update(k.as_bytes());
                mac.update(b"=");
                mac.update(v.as_bytes());
                mac.update(b"\0");
            }
        }
        Ok(Signer(mac))
    }

    fn tag(&self, payload: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(payload);
        crate::signing::tag_bytes(mac.sign())
    }

    fn encode(&self, seek: &Seek) -> String {
        let (dir, key): (u8, &[u8]) = match seek {
            Seek::First => (0, &[]),
            Seek::After(k) => (1, k),
            Seek::Before(k) => (2, k),
            Seek::Last => (3, &[]),
        };
        let mut payload = Vec::with_capacity(2 + key.len() + MAC_LEN);
        payload.extend_from_slice(&[CURSOR_VERSION, dir]);
        payload.extend_from_slice(key);
        let tag = self.tag(&payload);
        payload.extend_from_slice(&tag[..MAC_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
    }

    fn decode(&self, cursor: &str) -> ApiResult<Seek> {
        use subtle::ConstantTimeEq;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor.as_bytes())
            .map_err(|_| ApiError::InvalidCursor)?;
        if raw.len() < 2 + MAC_LEN || raw.len() > 512 {
            return Err(ApiError::InvalidCursor);
        }
        let (payload, tag) = raw.split_at(raw.len() - MAC_LEN);
        let want = self.tag(payload);
        if !bool::from(want[..MAC_LEN].ct_eq(tag)) || payload[0] != CURSOR_VERSION {
            return Err(ApiError::InvalidCursor);
        }
        let key = payload[2..].to_vec();
        match payload[1] {
            0 => Ok(Seek::First),
            1 => Ok(Seek::After(key)),
            2 => Ok(Seek::Before(key)),
            3 => Ok(Seek::Last),
            _ => Err(ApiError::InvalidCursor),
        }
    }
}

/// Answers one page with `Link` and `X-Total-Count`. `key` gives an item's position (the key
/// the store seeks by: its id). For `page=`, `window.before`/`after` are not used: the links
/// are page numbers worked out from `total`.
pub fn respond<T: Serialize>(
    req: &HttpRequest,
    tenant: &str,
    want: &Want,
    window: Window<T>,
    key: impl Fn(&T) -> &[u8],
    total: usize,
) -> ApiResult<HttpResponse> {
    let per_page = want.limit();
    let state = req.app_data::<web::Data<AppState>>();
    let trusted = state
        .map(|s| s.trusted_proxies.as_slice())
        .unwrap_or_default();
    let (scheme, host) = crate::http::origin(req, trusted);
    let base = format!("{scheme}://{host}{}?", req.path());
    // The other query parameters (filters) carry over to every link, encoded once.
    let mut other = String::new();
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if !matches!(k.as_ref(), "page" | "per_page" | "cursor") {
            let _ = write!(other, "{}={}&", enc(&k), enc(&v));
        }
    }
    let mut links = String::with_capacity(4 * (base.len() + other.len() + 80));
    let mut link = |position: &str, rel: &str| {
        if !links.is_empty() {
            links.push_str(", ");
        }
        let _ = write!(
            links,
            "<{base}{other}{position}per_page={per_page}>; rel=\"{rel}\""
        );
    };
    match want {
        Want::Offset { offset, .. } => {
            let page = offset / per_page + 1;
            let last = total.div_ceil(per_page).max(1);
            if page < last {
                link(&format!("page={}&", page + 1), "next");
            }
            if page > 1 {
                link(&format!("page={}&", page - 1), "prev");
            }
            link("page=1&", "first");
            link(&format!("page={last}&"), "last");
        }
        Want::Keyset { .. } => {
            let signer = Signer::new(req, tenant)?;
            let at = |seek: Seek| format!("cursor={}&", signer.encode(&seek));
            if let (true, Some(last)) = (window.after, window.items.last()) {
                link(&at(Seek::After(key(last).to_vec())), "next");
            }
            if let (true, Some(first)) = (window.before, window.items.first()) {
                link(&at(Seek::Before(key(first).to_vec())), "prev");
            }
            link(&at(Seek::First), "first");
            link(&at(Seek::Last), "last");
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Link", links))
        .insert_header(("X-Total-Count", total))
        .json(window.items))
}

/// Pages a list held whole in memory (a tenant's sites, forms, keys…): sorted by id, which is
/// creation order (`Order::NewestFirst` reverses it), then cut by offset or cursor.
pub fn paginate<T: Serialize>(
    req: &HttpRequest,
    tenant: &str,
    mut items: Vec<T>,
    id: impl Fn(&T) -> &str,
    order: Order,
    q: &PageQuery,
) -> ApiResult<HttpResponse> {
    let want = q.want(req, tenant)?;
    let total = items.len();
    items.sort_by(|a, b| id(a).cmp(id(b)));
    let desc = order == Order::NewestFirst;
    if desc {
        items.reverse();
    }
    let key = as_key(&id);
    let window = match &want {
        Want::Offset { offset, limit } => Window {
            items: items.into_iter().skip(*offset).take(*limit).collect(),
            before: false,
            after: false,
        },
        Want::Keyset { seek, limit } => Window::of_sorted(items, &key, desc, seek, *limit),
    };
    respond(req, tenant, &want, window, key, total)
}

/// An item's id as its cursor position.
fn as_key<T, F: Fn(&T) -> &str>(id: &F) -> impl for<'a> Fn(&'a T) -> &'a [u8] + '_ {
    move |t| id(t).as_bytes()
}

/// The order of a list held in memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
