//! Outbound targets (webhook endpoints, proxy origins): addresses that are loopback, private or
//! link-local are refused unless the operator allows them (`--allow-private-targets`), when a
//! target is saved and again at every connection, so DNS cannot be turned on us later.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// True for addresses an outbound request must not reach unless the operator allows it: loopback,
/// private, link-local, unique-local, carrier-grade NAT, unspecified, multicast, broadcast.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // 6to4 carries an IPv4 address in bits 16..48: it is what is reached.
            if s[0] == 0x2002 {
                return is_private(embedded(s[1], s[2]));
            }
            // IPv4-compatible (deprecated) `::a.b.c.d`.
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_private(embedded(s[6], s[7]));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, well-known and local-use
                || (s[0] == 0x2001 && s[1] == 0) // Teredo: tunnels to anywhere
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        }
    }
}

/// Why a target is refused, for a 400 `forbidden_target` or an attempt's error.
pub fn refused(host: &str) -> String {
    format!(
        "{host} resolves to a loopback, private or link-local address; the operator has not \
         allowed those (--allow-private-targets)"
    )
}

/// `check_target` as the API answers it: 400 `forbidden_target` or `invalid_request`.
pub async fn check(url: &str, allow_private: bool) -> crate::error::ApiResult<String> {
    use crate::error::ApiError;
    check_target(url, allow_private)
        .await
        .map_err(|(code, why)| match code {
            "forbidden_target" => ApiError::Conflict(crate::error::Conflict::ForbiddenTarget, why),
            _ => ApiError::invalid(why),
        })
}

/// Checks a target URL (a webhook's, a proxy profile's origin) when it is saved: http or https, a host, no credentials, and (unless
/// allowed) no address that is loopback, private or link-local. Err is (machine code, message).
pub async fn check_target(
    raw: &str,
    allow_private: bool,
) -> Result<String, (&'static str, String)> {
    let invalid = |why: &str| ("invalid_request", format!("url: {why}"));
    if raw.len() > 2048 {
        return Err(invalid("at most 2048 characters"));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    let Some(host) = url.host_str() else {
        return Err(invalid("needs a host"));
    };
    if allow_private {
        return Ok(url.to_string());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host_only.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host_only, port));
            tokio::time::timeout(Duration::from_secs(5), lookup)
                .await
                .map_err(|_| invalid(&format!("{host} did not resolve within 5 s")))?
                .map_err(|e| invalid(&format!("{host} does not resolve: {e}")))?
                .map(|a| a.ip())
                .collect()
        }
    };
    if addrs.is_empty() || addrs.iter().any(|ip| is_private(*ip)) {
        return Err(("forbidden_target", refused(host)));
    }
    Ok(url.to_string())
}

/// Resolves target hosts and drops private addresses (unless allowed) at connection time.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(refused(&host).into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// A literal private address in the URL is refused here; a name is checked by the resolver.
pub fn target_allowed(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) if is_private(ip) => Err(refused(&host)),
        _ => Ok(()),
    }
}

/// `scheme://host[:port]` of an http(s) URL without credentials (the port only when it is not
/// the scheme's default), or None.
pub fn origin_of(url: &reqwest::Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers a visitor may not hand an origin: client addresses the proxy works out itself
/// (`X-Forwarded-For` and `X-Real-IP` are set from the client address), and URL overrides some
/// origins (IIS, Symfony, Spring) obey over the request line.
pub const VISITOR_MAY_NOT_SEND: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-override-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Methods an origin is sent; anything else (TRACE, TRACK, CONNECT, WebDAV, made-up ones) is
/// answered 405 by the edge.
pub const PROXIED_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b:1::a00:1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
            "2002:5db8:d822::1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
