//! The edge: any request the API does not own is served from a site chosen by its Host header
//! (`NAME.<preview domain>`), with its files, redirects, headers, custom pages, password gate and forms.

mod builtin;
mod forms;
mod password;
pub mod proxy;
pub mod serve;
pub mod site;
pub mod variants;

use crate::error::ApiResult;
use crate::hosts::HostTarget;
use crate::store::Store;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Edge state shared by all workers: the cookie-signing secret, caches of immutable things
/// (ready deploys' indexes, blobs by digest).
pub struct Edge {
    /// Ready deploys' indexes and the bytes they hold in all.
    deploys: RwLock<(HashMap<String, Arc<serve::DeployIndex>>, usize)>,
    blobs: RwLock<HashMap<String, Bytes>>,
    blob_bytes: AtomicUsize,
    /// Site password checks (argon2, ~19 MiB and tens of ms each) running at once.
    pub password_checks: tokio::sync::Semaphore,
    /// The client for proxied paths (`proxy::forward`).
    pub proxy: proxy::Proxy,
}

/// Blobs up to this size are read whole and kept in memory (content addressing means never
/// stale); larger ones are streamed from disk.
const CACHE_BLOB_MAX: usize = 1 << 20;
const CACHE_TOTAL_MAX: usize = 64 << 20;
/// Byte budget of the deploy index cache (a deploy of 25,000 files or 10,000 rules is a few MiB).
const CACHE_DEPLOYS_BYTES: usize = 64 << 20;

impl Edge {
    /// Empty caches; `allow_private` lets proxied paths reach private addresses
    /// (`--allow-private-targets`).
    pub fn new(allow_private: bool) -> Result<Edge, String> {
        Ok(Edge {
            deploys: RwLock::default(),
            blobs: RwLock::default(),
            blob_bytes: AtomicUsize::new(0),
            password_checks: tokio::sync::Semaphore::new(2),
            proxy: proxy::Proxy::new(allow_private)?,
        })
    }

    /// The index of a ready deploy, built once (off the worker: it reads the deploy's rules
    /// files, which a remote blob store may have to send first).
    pub async fn deploy_index(
        &self,
        store: &Store,
        deploy_id: &str,
    ) -> ApiResult<Option<Arc<serve::DeployIndex>>> {
        if let Some(ix) = self
            .deploys
            .read()
            .ok()
            .and_then(|m| m.0.get(deploy_id).cloned())
        {
            // Built while the deploy's variants were being made: once they are, built again.
            if !ix.encoding || store.encodings().is_queued(deploy_id)? {
                return Ok(Some(ix));
            }
        }
        let Some(deploy) = store.deploys().get(deploy_id)? else {
            return Ok(None);
        };
        let store = store.clone();
        let ix = Arc::new(
            actix_web::web::block(move || serve::DeployIndex::build(&store, &deploy))
                .await
                .map_err(crate::error::ApiError::internal)??,
        );
        if let Ok(mut m) = self.deploys.write() {
            keep_within(&mut m, deploy_id, ix.clone(), CACHE_DEPLOYS_BYTES);
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
}

/// Caches a deploy's index within `budget` bytes in all: when it would not fit, the cache starts
/// over; one index over the whole budget is served without being kept.
fn keep_within(
    cache: &mut (HashMap<String, Arc<serve::DeployIndex>>, usize),
    deploy_id: &str,
    ix: Arc<serve::DeployIndex>,
    budget: usize,
) {
    let (map, bytes) = cache;
    if *bytes + ix.bytes > budget {
        map.clear();
        *bytes = 0;
    }
    if ix.bytes <= budget {
        if let Some(old) = map.insert(deploy_id.to_string(), ix.clone()) {
            *bytes -= old.bytes;
        }
        *bytes += ix.bytes;
    }
}

fn error_page(e: crate::error::ApiError) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(&e);
    if status.is_client_error() {
        return builtin::builtin(status, "Request not accepted", &e.to_string());
    }
    if matches!(e, crate::error::ApiError::Internal(_)) {
        tracing::error!(error = %e.cause_chain(), "edge error");
    }
    builtin::builtin(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again later.",
    )
}

/// Serves a request to a host that names a site, on every path.
pub async fn serve(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    edge: &Edge,
    target: &HostTarget,
) -> HttpResponse {
    let deploy = target
        .deploy_id
        .as_deref()
        .or(target.site.published_deploy.as_deref());
    let resp = match site::serve_site(req, payload, state, edge, target, deploy).await {
        Ok(resp) => resp,
        Err(e) => return error_page(e),
    };
    // A HEAD answer sends no body: counting its length would let anyone spend a site's
    // bandwidth quota (and get it blocked) without downloading anything.
    let bytes = match actix_web::body::MessageBody::size(resp.body()) {
        _ if req.method() == actix_web::http::Method::HEAD => 0,
        actix_web::body::BodySize::Sized(n) => n,
        _ => 0,
    };
    let now = crate::model::Timestamp::now();
    state.traffic.record_site(&target.site, bytes, now);
    if let Some(domain_id) = &target.domain_id {
        state.traffic.record(domain_id, bytes, now);
    }
    resp
}

/// A host that is neither an instance name nor a site's: a plain page, and for an API path a
/// JSON 404 (a client that called the API on a name the operator did not configure).
pub fn no_site(req: &HttpRequest) -> HttpResponse {
    let path = req.path();
    if path == "/api" || path.starts_with("/api/") {
        return actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound("path"));
    }
    builtin::builtin(
        StatusCode::NOT_FOUND,
        "No site here",
        "This address does not belong to any site on this server.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(bytes: usize) -> Arc<serve::DeployIndex> {
        Arc::new(serve::DeployIndex {
            files: HashMap::new(),
            redirects: Default::default(),
            headers: Default::default(),
            modified: std::time::UNIX_EPOCH,
            last_modified: serve::http_date(std::time::UNIX_EPOCH),
            bytes,
            encoding: false,
        })
    }

    #[test]
    fn the_deploy_cache_holds_a_byte_budget_not_a_count() {
        let mut cache = (HashMap::new(), 0);
        for i in 0..10 {
            keep_within(&mut cache, &format!("d{i}"), index(30), 100);
            assert!(cache.1 <= 100 && cache.0.len() <= 3, "{} bytes", cache.1);
        }
        keep_within(&mut cache, "huge", index(101), 100);
        assert!(
            !cache.0.contains_key("huge"),
            "over the budget alone: not kept"
        );
        keep_within(&mut cache, "a", index(40), 100);
        keep_within(&mut cache, "a", index(40), 100);
        assert_eq!(cache.1, 40, "a deploy cached twice counts once");
    }
}
