//! What every request path needs of HTTP itself, below the API and the edge: the Host a
//! request names, the URL origin it was sent to, and bodies read within a size and a deadline.

use crate::error::{ApiError, ApiResult};
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest};
use std::net::IpAddr;
use std::time::Duration;

/// The site the edge answered a request for (its id), for the access line.
#[derive(Clone)]
pub struct ServedSite(pub String);

/// The host a request names, lowercased, without port or IPv6 brackets.
pub fn host(req: &HttpRequest) -> String {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    host_without_port(raw)
        .trim_end_matches('.')
        .to_ascii_lowercase()
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

/// Which listener a request came in on: every connection carries one (`listen`).
#[derive(Clone, Copy, Debug)]
pub struct Listener {
    pub secure: bool,
    pub local: std::net::SocketAddr,
}

/// The listener of `req`'s connection (HTTP/1.1 keeps it with the connection, HTTP/2 with each
/// request); a request made in a test without a listener is plain HTTP on an unknown port.
pub fn listener(req: &HttpRequest) -> Listener {
    req.conn_data::<Listener>()
        .copied()
        .or_else(|| req.extensions().get::<Listener>().copied())
        .unwrap_or(Listener {
            secure: false,
            local: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        })
}

/// The client address of a request, as `client_ip` worked it out (see there).
#[derive(Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The client address: the socket peer, or the first untrusted hop of X-Forwarded-For when the
/// peer is a trusted proxy. Worked out once per request by the outermost layer (`lib.rs`), which
/// keeps it as a `ClientIp`; later calls read that.
pub fn client_ip(req: &HttpRequest, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    if let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>() {
        return Some(*ip);
    }
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let hops: Vec<IpAddr> = forwarded
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !trusted.iter().any(|n| n.contains(ip)))
            .unwrap_or(peer),
    )
}

/// The client address the outermost layer worked out for this request (`client_ip`), for the
/// layers below it that do not know the trusted proxies (auth, rate limits); the socket peer
/// if no layer did.
pub fn known_client_ip(req: &HttpRequest) -> Option<IpAddr> {
    match req.extensions().get::<ClientIp>() {
        Some(ClientIp(ip)) => Some(*ip),
        None => req.peer_addr().map(|a| a.ip()),
    }
}

/// The scheme and host (with port) a request was sent to: the listener's scheme and the Host
/// header, or what `Forwarded`/`X-Forwarded-*` say when the peer is a trusted proxy. An untrusted
/// client cannot make links, stored URLs or cookie flags name another origin.
pub fn origin(req: &HttpRequest, trusted: &[ipnet::IpNet]) -> (String, String) {
    let from_proxy = req
        .peer_addr()
        .is_some_and(|p| trusted.iter().any(|n| n.contains(&p.ip())));
    let listener = listener(req);
    let scheme = if listener.secure { "https" } else { "http" };
    if from_proxy {
        let info = req.connection_info();
        // A proxy that does not say which scheme it was reached by: the listener's.
        let said = ["forwarded", "x-forwarded-proto", "x-forwarded-scheme"]
            .iter()
            .any(|h| req.headers().contains_key(*h));
        let scheme = if said { info.scheme() } else { scheme };
        return (scheme.to_string(), info.host().to_string());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| listener.local.to_string());
    (scheme.to_string(), host)
}

/// True if the request reached a TLS listener (or a trusted proxy says it did).
pub fn is_https(req: &HttpRequest, trusted: &[ipnet::IpNet]) -> bool {
    origin(req, trusted).0 == "https"
}

/// The key rate limits count an address under: IPv4 as is, IPv6 by its /64 (one subscriber's
/// prefix), so rotating through a prefix's addresses gains nothing.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Reads a whole body of at most `limit` bytes within `deadline`: 413 past the size, 408 past
/// the time, so a client trickling its body holds only its own connection, and not for long.
pub async fn read_body<S, E>(
    mut payload: S,
    limit: usize,
    deadline: Duration,
) -> ApiResult<web::BytesMut>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| ApiError::BodyTimeout(deadline.as_secs()))?
}

/// Bytes of a refused request's body read and dropped before the answer (see `drain`).
const DRAIN_BYTES: usize = 64 << 20;
/// How long a refused request's body is read before the answer.
const DRAIN_TIME: Duration = Duration::from_secs(3);

/// Reads and drops what is left of a refused request's body, up to `DRAIN_BYTES` and for at most
/// `DRAIN_TIME`, before the refusal is sent. A server that answers while the client is still
/// sending and then closes leaves unread bytes in its socket, and the reset that follows reaches
/// the client before it reads the answer: it sees a broken pipe instead of the 507 or 401 that
/// says what to do. (nginx's lingering close does the same.) A body past the bounds is cut.
pub async fn drain<S, E>(mut payload: S)
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt;
    let read = async {
        let mut read = 0;
        while let Some(Ok(chunk)) = payload.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// A request body that a handler streams and its caller can still reach afterwards: the
/// request reads it through one handle (`into_payload`), and the write gate keeps another to
/// drain what a refusing handler left unread. (A worker's request never leaves its thread.)
#[derive(Clone)]
pub struct SharedPayload(std::rc::Rc<std::cell::RefCell<actix_web::dev::Payload>>);

impl SharedPayload {
    pub fn new(payload: actix_web::dev::Payload) -> SharedPayload {
        SharedPayload(std::rc::Rc::new(std::cell::RefCell::new(payload)))
    }

    /// This body as a request's payload.
    pub fn into_payload(self) -> actix_web::dev::Payload {
        let stream: std::pin::Pin<
            Box<
                dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>,
            >,
        > = Box::pin(self);
        actix_web::dev::Payload::from(stream)
    }
}

impl futures_util::Stream for SharedPayload {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        // One reader at a time: the handler while it runs, the gate after it (one thread).
        std::pin::Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_v6_groups_by_64() {
        assert_eq!(host_without_port("a.example:8080"), "a.example");
        assert_eq!(host_without_port("a.example"), "a.example");
        assert_eq!(host_without_port("[::1]:8443"), "::1");
        assert_eq!(host_without_port("[::1]"), "::1");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_key("10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
