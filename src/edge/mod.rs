//! The edge: any request the API does not own is served from a site chosen by its Host header
//! (`NAME.<preview domain>`), with its files, redirects, headers, custom pages, password gate and forms.

pub mod pages;
pub mod rules;
pub mod serve;

use crate::error::ApiResult;
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use crate::store::Store;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use rand::RngCore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The preview host of a site: `NAME.<reseller preview domain>`, or the instance default domain.
pub fn site_host(reseller: &Reseller, default_domain: &str, name: &str) -> String {
    match &reseller.preview_domain {
        Some(d) => format!("{name}.{d}"),
        None => format!("{name}.{default_domain}"),
    }
}

/// The site a Host header names, with its reseller and, for a client's custom domain, the
/// domain's id (its traffic is counted). The one place host names map to sites (a write that
/// changes what a host serves must call `Store::changed` afterwards, which the edge's host
/// cache relies on).
pub fn resolve_host(
    store: &Store,
    default_domain: &str,
    host: &str,
) -> ApiResult<Option<(Site, Reseller, Option<String>)>> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    // A verified client domain (or www. + it) attached to a site.
    if let Some(domain) = store.domains().serving(&host)? {
        let site = match &domain.site_id {
            Some(id) => store.sites().get(id)?,
            None => None,
        };
        let reseller = store.resellers().get(&domain.reseller_id).ok();
        if let (Some(site), Some(reseller)) = (site, reseller) {
            if site.reseller_id == reseller.id {
                return Ok(Some((site, reseller, Some(domain.id))));
            }
        }
        return Ok(None);
    }
    let Some((name, domain)) = host.split_once('.') else {
        return Ok(None);
    };
    let Some(site) = store.sites().by_name(name)? else {
        return Ok(None);
    };
    let Ok(reseller) = store.resellers().get(&site.reseller_id) else {
        return Ok(None);
    };
    let matches = match &reseller.preview_domain {
        Some(d) => d.as_str() == domain,
        None => domain == default_domain,
    };
    Ok(matches.then_some((site, reseller, None)))
}

/// A deploy's permalink host, `DEPLOY_ID--NAME.<domain>`, when that still fits in a DNS label.
pub fn deploy_host(site_host: &str, deploy_id: &str) -> Option<String> {
    let (label, _) = site_host.split_once('.')?;
    (deploy_id.len() + 2 + label.len() <= 63).then(|| format!("{deploy_id}--{site_host}"))
}

/// A deploy permalink host: the site, its reseller and the ready deploy it names.
pub fn resolve_deploy_host(
    store: &Store,
    default_domain: &str,
    host: &str,
) -> ApiResult<Option<(Site, Reseller, String)>> {
    let Some((deploy_id, rest)) = host.split_once("--") else {
        return Ok(None);
    };
    let Some((site, reseller, _)) = resolve_host(store, default_domain, rest)? else {
        return Ok(None);
    };
    let ready = store.deploys().get(deploy_id)?.is_some_and(|d| {
        d.site_id == site.id && d.state == crate::store::deploys::DeployState::Ready
    });
    Ok(ready.then(|| (site, reseller, deploy_id.to_string())))
}

/// The host part of a Host header value (no port, no IPv6 brackets).
pub fn host_without_port(raw: &str) -> &str {
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    raw.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(raw, |(h, _)| h)
}

/// Edge state shared by all workers: the cookie-signing secret, caches of immutable things
/// (ready deploys' indexes, blobs by digest) and the password rate limiter.
pub struct Edge {
    pub default_domain: String,
    secret: [u8; 32],
    hosts: RwLock<HashMap<String, (u64, Resolved)>>,
    deploys: RwLock<HashMap<String, Arc<serve::DeployIndex>>>,
    blobs: RwLock<HashMap<String, Bytes>>,
    blob_bytes: AtomicUsize,
    attempts: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

/// Blobs up to this size are read whole and kept in memory (content addressing means never
/// stale); larger ones are streamed from disk.
const CACHE_BLOB_MAX: usize = 1 << 20;
const CACHE_TOTAL_MAX: usize = 64 << 20;
const CACHE_DEPLOYS_MAX: usize = 1024;
const CACHE_HOSTS_MAX: usize = 10_000;

/// A host's site and reseller, or none.
type Resolved = Option<Arc<(Site, Reseller, Option<String>)>>;

impl Edge {
    /// Loads (or creates) the secret kept in the data dir.
    pub fn new(data_dir: &Path, default_domain: String) -> Result<Edge, String> {
        let path = data_dir.join("edge-secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    format!("{} is corrupt; delete it to make a new one", path.display())
                })?,
            Err(_) => {
                let mut s = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut s);
                crate::auth::operator::write_private(&path, hex::encode(s).as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                s
            }
        };
        Ok(Edge {
            default_domain,
            secret,
            hosts: RwLock::default(),
            deploys: RwLock::default(),
            blobs: RwLock::default(),
            blob_bytes: AtomicUsize::new(0),
            attempts: Mutex::default(),
        })
    }

    /// HMAC-SHA256 of `msg` with the edge secret.
    pub fn sign(&self, msg: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    /// `resolve_host`, cached until the store's generation moves (any site, publish or
    /// reseller change), so a 2xx from the API is visible at the edge on the next request.
    pub fn site_for_host(&self, store: &Store, host: &str) -> ApiResult<Resolved> {
        // Read the generation first: an entry built from data older than a write then carries
        // a generation that write already left behind.
        let generation = store.generation();
        if let Some((g, r)) = self.hosts.read().ok().and_then(|m| m.get(host).cloned()) {
            if g == generation {
                return Ok(r);
            }
        }
        let resolved = resolve_host(store, &self.default_domain, host)?.map(Arc::new);
        if let Ok(mut m) = self.hosts.write() {
            if m.len() >= CACHE_HOSTS_MAX {
                m.clear();
            }
            m.insert(host.to_string(), (generation, resolved.clone()));
        }
        Ok(resolved)
    }

    /// The index of a ready deploy, built once.
    pub fn deploy_index(
        &self,
        store: &Store,
        deploy_id: &str,
    ) -> ApiResult<Option<Arc<serve::DeployIndex>>> {
        if let Some(ix) = self
            .deploys
            .read()
            .ok()
            .and_then(|m| m.get(deploy_id).cloned())
        {
            return Ok(Some(ix));
        }
        let Some(deploy) = store.deploys().get(deploy_id)? else {
            return Ok(None);
        };
        let ix = Arc::new(serve::DeployIndex::build(store, &deploy)?);
        if let Ok(mut m) = self.deploys.write() {
            if m.len() >= CACHE_DEPLOYS_MAX {
                m.clear();
            }
            m.insert(deploy_id.to_string(), ix.clone());
        }
        Ok(Some(ix))
    }

    /// A blob's content: in memory for small files (cached by digest), an open file for
    /// large ones, which are streamed so a big download or range costs no big allocation.
    pub async fn blob(&self, store: &Store, sha: &str) -> ApiResult<serve::Content> {
        if let Some(b) = self.blobs.read().ok().and_then(|m| m.get(sha).cloned()) {
            return Ok(serve::Content::Memory(b));
        }
        let blobs = store.blobs.clone();
        let key = sha.to_string();
        let content = web::block(move || serve::Content::open(&blobs, &key, CACHE_BLOB_MAX))
            .await
            .map_err(crate::error::ApiError::internal)??;
        if let serve::Content::Memory(data) = &content {
            if self.blob_bytes.load(Ordering::Relaxed) + data.len() <= CACHE_TOTAL_MAX {
                if let Ok(mut m) = self.blobs.write() {
                    if m.insert(sha.to_string(), data.clone()).is_none() {
                        self.blob_bytes.fetch_add(data.len(), Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(content)
    }

    /// Counts a password attempt from `ip`; false once it made too many in the window.
    pub fn allow_attempt(&self, ip: Option<IpAddr>, now_secs: i64) -> bool {
        const WINDOW: i64 = 300;
        const MAX: u32 = 10;
        let Some(ip) = ip else { return true };
        let Ok(mut m) = self.attempts.lock() else {
            return true;
        };
        if m.len() > 100_000 {
            m.retain(|_, (start, _)| now_secs - *start < WINDOW);
        }
        let entry = m.entry(ip).or_insert((now_secs, 0));
        if now_secs - entry.0 >= WINDOW {
            *entry = (now_secs, 0);
        }
        entry.1 += 1;
        entry.1 <= MAX
    }
}

/// The default service: a site by Host, or a plain page for a host that names none.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match handle_inner(&req, payload, &state).await {
        Ok(resp) => resp,
        Err(e) => {
            if matches!(e, crate::error::ApiError::Internal(_)) {
                tracing::error!(error = %e, "edge error");
            }
            pages::builtin(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again later.",
            )
        }
    }
}

async fn handle_inner(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> ApiResult<HttpResponse> {
    let raw_host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    let host = &host_without_port(raw_host).to_ascii_lowercase();
    if let Some(found) = state.edge.site_for_host(&state.store, host)? {
        let (site, reseller, domain_id) = &*found;
        let deploy = site.published_deploy.as_deref();
        let resp = pages::serve_site(req, payload, state, site, reseller, deploy).await?;
        if let Some(domain_id) = domain_id {
            let bytes = match actix_web::body::MessageBody::size(resp.body()) {
                actix_web::body::BodySize::Sized(n) => n,
                _ => 0,
            };
            state
                .traffic
                .record(domain_id, bytes, crate::model::Timestamp::now());
        }
        return Ok(resp);
    }
    let domain = &state.edge.default_domain;
    if let Some((site, reseller, deploy)) = resolve_deploy_host(&state.store, domain, host)? {
        return pages::serve_site(req, payload, state, &site, &reseller, Some(&deploy)).await;
    }
    Ok(no_site(req))
}

/// A host that names no site: the API's JSON 404 under /api, the probes netlify-cli's build
/// makes at the root of its API URL, else a plain page.
fn no_site(req: &HttpRequest) -> HttpResponse {
    let path = req.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let integrations = matches!(
        segs.as_slice(),
        ["team", _, "integrations", "installations", "meta", _]
            | ["site", _, "integrations", "safe"]
    );
    if integrations && req.method() == actix_web::http::Method::GET {
        return HttpResponse::Ok().json(Vec::<()>::new());
    }
    if path == "/api" || path.starts_with("/api/") {
        return actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound("path"));
    }
    pages::builtin(
        StatusCode::NOT_FOUND,
        "No site here",
        "This address does not belong to any site on this server.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("a.example:8080"), "a.example");
        assert_eq!(host_without_port("a.example"), "a.example");
        assert_eq!(host_without_port("[::1]:8443"), "::1");
        assert_eq!(host_without_port("[::1]"), "::1");
        assert_eq!(
            deploy_host("docs.example.test", "abc").as_deref(),
            Some("abc--docs.example.test")
        );
        assert_eq!(
            deploy_host(&format!("{}.x.test", "n".repeat(40)), &"d".repeat(26)),
            None
        );
    }
}
