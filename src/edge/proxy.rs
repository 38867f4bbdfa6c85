//! Proxy rewrites: a `_redirects` (or `netlify.toml`) rule with status 200 to an absolute URL
//! whose origin is one of the reseller's proxy profiles is proxied: the request streams to the
//! origin with the profile's headers and `X-Forwarded-*`, hop-by-hop headers stripped both ways,
//! no redirect followed, and the answer streams back, counted toward the site's bandwidth. The
//! origin has the profile's `timeout_ms` to start answering (504 otherwise) and between two chunks
//! of its body; a refused or failed connection is 502. Addresses that are loopback, private or
//! link-local are refused at every connection unless the operator allows them.

use super::builtin::builtin;
use crate::hosts::HostTarget;
use crate::store::proxy::ProxyProfile;
use crate::AppState;
use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderName};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The proxy's shared parts: the slots in flight, and how each worker's HTTP client is built (no
/// redirects, no proxy from the environment (it would reach what the resolver refuses), the
/// guarded resolver, a connect timeout).
pub struct Proxy {
    allow_private: bool,
    /// Proxied requests in flight per reseller and per client address: one reseller's slow
    /// origin cannot hold every connection the server has, nor one visitor (a slow reader holds
    /// its slot while its answer waits) every slot of a reseller.
    in_flight: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// Proxied requests one reseller may have in flight at once.
pub const PER_RESELLER: usize = 256;
/// Proxied requests one client address (an IPv6 /64) may have in flight at once.
pub const PER_CLIENT: usize = 32;

/// Slots of `Proxy::in_flight` (the reseller's and the client's), given back when dropped (the
/// answer's body sent or abandoned).
struct Slot {
    in_flight: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    keys: Vec<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

impl Proxy {
    fn claim(&self, reseller_id: &str, client: Option<std::net::IpAddr>) -> Option<Slot> {
        let mut keys = vec![format!("r/{reseller_id}")];
        if let Some(ip) = client {
            keys.push(format!("c/{}", crate::http::ip_key(ip)));
        }
        let limits = [PER_RESELLER, PER_CLIENT];
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for (key, limit) in keys.iter().zip(limits) {
            if map.get(key).copied().unwrap_or(0) >= limit {
                return None;
            }
        }
        for key in &keys {
            *map.entry(key.clone()).or_default() += 1;
        }
        Some(Slot {
            in_flight: self.in_flight.clone(),
            keys,
        })
    }
}

fn build_client(allow_private: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        // Idle connections kept per origin: fewer than the requests in flight means connections
        // closed and opened again all the time (`bench/proxy.sh`: 0.47x nginx at 16, 0.70x at 256).
        .pool_max_idle_per_host(256)
        .dns_resolver(Arc::new(crate::targets::GuardedResolver { allow_private }))
        .build()
        .map_err(|e| format!("cannot build the proxy client: {e}"))
}

thread_local! {
    /// Each worker has its own client, so its pooled connections are driven by its own
    /// runtime and a request does not wait on another worker's thread (`bench/proxy.sh`: 26k/s
    /// against 22k/s with one client shared by all workers, on a small file).
    static CLIENT: std::cell::RefCell<Option<reqwest::Client>> = const { std::cell::RefCell::new(None) };
}

impl Proxy {
    pub fn new(allow_private: bool) -> Result<Proxy, String> {
        build_client(allow_private)?;
        Ok(Proxy {
            allow_private,
            in_flight: Default::default(),
        })
    }

    /// This worker's client.
    fn client(&self) -> Result<reqwest::Client, String> {
        CLIENT.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(client) = &*c {
                return Ok(client.clone());
            }
            let client = build_client(self.allow_private)?;
            *c = Some(client.clone());
            Ok(client)
        })
    }
}

/// The URL to proxy to and the reseller's profile for its origin, if the rule's target is on
/// one. The origin is taken from the URL as expanded (a splat cannot move it to another host
/// unnoticed); the request's query string is passed on when the target has none.
pub fn target(
    state: &AppState,
    site: &crate::store::sites::Site,
    to: &str,
    req: &HttpRequest,
) -> crate::error::ApiResult<Option<(reqwest::Url, ProxyProfile)>> {
    let Ok(mut url) = reqwest::Url::parse(to) else {
        return Ok(None);
    };
    let Some(origin) = crate::targets::origin_of(&url) else {
        return Ok(None);
    };
    let Some(profile) =
        state
            .store
            .proxy_profiles()
            .for_origin(&site.reseller_id, &site.user_id, &origin)?
    else {
        return Ok(None);
    };
    if url.query().is_none() && !req.query_string().is_empty() {
        url.set_query(Some(req.query_string()));
    }
    Ok(Some((url, profile)))
}

/// What this server adds to `Via` on the requests it proxies.
const VIA: &str = "1.1 resellerd";

/// `targets::HOP_BY_HOP` and the headers the `Connection` header values (`connection`) name.
fn hop_by_hop<'a>(connection: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    let mut names: Vec<String> = crate::targets::HOP_BY_HOP
        .iter()
        .map(|s| s.to_string())
        .collect();
    for value in connection {
        for name in String::from_utf8_lossy(value).split(',') {
            names.push(name.trim().to_ascii_lowercase());
        }
    }
    names
}

fn page(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    builtin(status, title, text)
}

fn bad_gateway() -> HttpResponse {
    page(
        StatusCode::BAD_GATEWAY,
        "Bad gateway",
        "The service behind this address could not be reached or did not answer properly.",
    )
}

/// Proxies the request to `url` with `profile`'s headers.
pub async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    proxy: &Proxy,
    state: &AppState,
    target: &HostTarget,
    url: reqwest::Url,
    profile: &ProxyProfile,
) -> HttpResponse {
    if crate::targets::target_allowed(url.as_str(), proxy.allow_private).is_err() {
        return bad_gateway();
    }
    // A request this server already proxied (an origin that is one of its own sites) would
    // come back again and again.
    let looped = req
        .headers()
        .get_all(header::VIA)
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(VIA));
    if looped {
        return page(
            StatusCode::LOOP_DETECTED,
            "Loop detected",
            "This address proxies to itself.",
        );
    }
    let client = crate::http::client_ip(req, &state.trusted_proxies);
    let Some(slot) = proxy.claim(&profile.reseller_id, client) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many requests to the service behind this address are under way. Try again shortly.",
        );
    };
    use reqwest::header::{HeaderName as Name, HeaderValue as Value};
    let mut headers = reqwest::header::HeaderMap::new();
    let skip = hop_by_hop(
        req.headers()
            .get_all(header::CONNECTION)
            .map(|v| v.as_bytes()),
    );
    for (name, value) in req.headers() {
        let n = name.as_str();
        // `Expect: 100-continue` was answered here (actix asks for the body when it is read).
        let drop = skip.iter().any(|s| s == n)
            || name == header::HOST
            || name == header::EXPECT
            || n.starts_with("x-forwarded-")
            || crate::targets::VISITOR_MAY_NOT_SEND.contains(&n)
            || profile.headers.iter().any(|(p, _)| p == n);
        if drop {
            continue;
        }
        let value = if name == header::COOKIE {
            // The site's password cookie is this server's, not the origin's.
            match super::password::without_pass_cookie(value.as_bytes()) {
                Some(kept) => kept,
                None => continue,
            }
        } else {
            value.as_bytes().to_vec()
        };
        if let (Ok(n), Ok(v)) = (Name::from_bytes(n.as_bytes()), Value::from_bytes(&value)) {
            headers.append(n, v);
        }
    }
    if let Some(ip) = client.and_then(|ip| Value::from_str(&ip.to_string()).ok()) {
        headers.insert("x-forwarded-for", ip.clone());
        headers.insert("x-real-ip", ip);
    }
    headers.append("via", Value::from_static(VIA));
    let (scheme, host) = crate::http::origin(req, &state.trusted_proxies);
    if let Ok(v) = scheme.parse() {
        headers.insert("x-forwarded-proto", v);
    }
    if let Ok(v) = host.parse() {
        headers.insert("x-forwarded-host", v);
    }
    for (name, value) in &profile.headers {
        if let (Ok(n), Ok(v)) = (Name::from_bytes(name.as_bytes()), Value::from_str(value)) {
            headers.insert(n, v);
        }
    }
    let method = match reqwest::Method::from_bytes(req.method().as_str().as_bytes()) {
        Ok(m) => m,
        Err(_) => return bad_gateway(),
    };
    let Ok(client) = proxy.client() else {
        return bad_gateway();
    };
    let mut request = client.request(method, url).headers(headers);
    let too_large = Arc::new(AtomicBool::new(false));
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if has_body {
        request = request.body(reqwest::Body::wrap_stream(pump(
            payload,
            state.settings.max_upload(),
            too_large.clone(),
        )));
    }
    let wait = Duration::from_millis(profile.timeout_ms);
    let upstream = match tokio::time::timeout(wait, request.send()).await {
        Err(_) => {
            return page(
                StatusCode::GATEWAY_TIMEOUT,
                "Gateway timeout",
                "The service behind this address did not answer in time.",
            )
        }
        Ok(Err(_)) if too_large.load(Ordering::Relaxed) => {
            return page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request too large",
                "The request body is larger than this server passes on.",
            )
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, origin = %profile.origin, "proxy: no answer");
            return bad_gateway();
        }
        Ok(Ok(r)) => r,
    };
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = HttpResponse::build(status);
    let skip = hop_by_hop(
        upstream
            .headers()
            .get_all(reqwest::header::CONNECTION)
            .iter()
            .map(|v| v.as_bytes()),
    );
    for (name, value) in upstream.headers() {
        let n = name.as_str();
        if skip.iter().any(|s| s == n) || n == "content-length" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            resp.append_header((n, v));
        }
    }
    // For HEAD the client's length is that of the empty body it read: the header says more.
    let length = if req.method() == actix_web::http::Method::HEAD {
        upstream
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    } else {
        upstream.content_length()
    };
    let body = relay(upstream, wait, slot);
    match length {
        // A known length is counted by the edge like any answer's.
        Some(n) if req.method() != actix_web::http::Method::HEAD => {
            resp.body(SizedStream::new(n, body))
        }
        // A HEAD answer keeps the length the origin gave; actix sends no body for HEAD.
        Some(n) => resp.body(SizedStream::new(
            n,
            futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
        )),
        None => {
            let (traffic, site, domain) = (
                state.traffic.clone(),
                target.site.clone(),
                target.domain_id.clone(),
            );
            resp.body(BodyStream::new(Counted {
                inner: Box::pin(body),
                bytes: 0,
                done: Some(Box::new(move |n| {
                    traffic.streamed(&site, domain.as_deref(), n, crate::model::Timestamp::now())
                })),
            }))
        }
    }
}

/// The visitor's body as a `Send` stream for the client: actix's payload is not `Send`, so a
/// local task reads it into a channel, stopping past `limit` bytes.
fn pump(
    mut payload: web::Payload,
    limit: usize,
    too_large: Arc<AtomicBool>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    actix_web::rt::spawn(async move {
        let mut sent = 0usize;
        while let Some(chunk) = payload.next().await {
            let item = match chunk {
                Ok(chunk) => {
                    sent += chunk.len();
                    if sent > limit {
                        too_large.store(true, Ordering::Relaxed);
                        Err(std::io::Error::other("the request body is over the limit"))
                    } else {
                        Ok(chunk)
                    }
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// The origin's body, ending with an error when a chunk takes longer than `wait`.
/// The slot is held until the body ends or is dropped.
fn relay(
    upstream: reqwest::Response,
    wait: Duration,
    slot: Slot,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    let chunks = Box::pin(upstream.bytes_stream());
    futures_util::stream::unfold(Some((chunks, slot)), move |state| async move {
        let (mut chunks, slot) = state?;
        match tokio::time::timeout(wait, chunks.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some((chunks, slot)))),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e.to_string())), None)),
            Err(_) => Some((
                Err(std::io::Error::other("the origin stopped sending")),
                None,
            )),
        }
    })
}

type Stream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>>>>;

/// A body of unknown length that reports how many bytes it sent when it ends or is dropped.
struct Counted {
    inner: Stream,
    bytes: u64,
    done: Option<Box<dyn FnOnce(u64)>>,
}

impl futures_util::Stream for Counted {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(bytes))) = &next {
            self.bytes += bytes.len() as u64;
        }
        next
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reseller whose origin never answers cannot hold more than its share of requests.
    #[test]
    fn proxied_requests_in_flight_are_bounded_per_reseller_and_per_client() {
        let proxy = Proxy::new(false).unwrap();
        let ip = |i: usize| {
            Some(std::net::IpAddr::from([
                198,
                51,
                (i / 250) as u8,
                (i % 250) as u8,
            ]))
        };
        let held: Vec<Slot> = (0..PER_RESELLER)
            .map(|i| proxy.claim("hostile", ip(i)).unwrap())
            .collect();
        assert!(proxy.claim("hostile", ip(999)).is_none());
        assert!(
            proxy.claim("other", ip(1000)).is_some(),
            "another reseller still gets one"
        );
        drop(held);
        assert!(proxy.claim("hostile", ip(0)).is_some(), "slots come back");
        assert!(proxy.in_flight.lock().unwrap().is_empty());
        // One visitor holds at most its share of a reseller's slots.
        let mine: Vec<Slot> = (0..PER_CLIENT)
            .map(|_| proxy.claim("site", ip(7)).unwrap())
            .collect();
        assert!(proxy.claim("site", ip(7)).is_none());
        assert!(
            proxy.claim("site", ip(8)).is_some(),
            "another visitor still gets one"
        );
        drop(mine);
    }

    #[test]
    fn origins_are_scheme_host_and_a_port_other_than_the_default() {
        let o = |u: &str| crate::targets::origin_of(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            o("https://API.Example.com/x?y").as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(o("https://a.test:443/").as_deref(), Some("https://a.test"));
        assert_eq!(
            o("http://a.test:8080/").as_deref(),
            Some("http://a.test:8080")
        );
        assert_eq!(o("http://[::1]:81/").as_deref(), Some("http://[::1]:81"));
        assert_eq!(o("https://u@a.test/"), None);
        assert_eq!(o("ftp://a.test/"), None);
    }
}
