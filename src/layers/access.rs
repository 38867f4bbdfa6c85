//! The outermost layer: the client's address (worked out once, from the trusted-proxy rules),
//! the request metrics and the access line (`telemetry::access`).

use crate::{http, telemetry, AppState};
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

/// What the access line needs of the request, taken before it is handed on.
struct Seen {
    method: Method,
    host: String,
    port: u16,
    path: String,
    query: String,
    version: actix_web::http::Version,
    referer: Option<String>,
    user_agent: Option<String>,
}

pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = std::time::Instant::now();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.trusted_proxies.as_slice())
        .unwrap_or_default();
    let ip = http::client_ip(req.request(), trusted);
    if let Some(ip) = ip {
        req.extensions_mut().insert(http::ClientIp(ip));
    }
    // Only pay for the line's strings when access lines are written, and only for those its
    // format writes.
    let seen = telemetry::access_format().map(|format| {
        let combined = format == telemetry::AccessFormat::Combined;
        // As sent, whatever bytes it holds: the line escapes them.
        let text = |name| {
            req.headers()
                .get(name)
                .filter(|_| combined)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Seen {
            method: req.method().clone(),
            host: http::host(req.request()),
            port: http::listener(req.request()).local.port(),
            path: req.path().to_string(),
            query: if combined {
                req.query_string().to_string()
            } else {
                String::new()
            },
            version: req.version(),
            referer: text(header::REFERER),
            user_agent: text(header::USER_AGENT),
        }
    });
    let res = next.call(req).await?;
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        state.metrics.observe(&res, start.elapsed());
    }
    if let Some(seen) = seen {
        // A HEAD answer sends no body, whatever its length says.
        let bytes = match res.response().body().size() {
            _ if seen.method == Method::HEAD => Some(0),
            BodySize::Sized(n) => Some(n),
            BodySize::None => Some(0),
            BodySize::Stream => None,
        };
        let site = res
            .request()
            .extensions()
            .get::<http::ServedSite>()
            .map(|s| s.0.clone());
        telemetry::access(&telemetry::AccessLine {
            method: seen.method.as_str(),
            host: &seen.host,
            port: seen.port,
            path: &seen.path,
            query: &seen.query,
            version: version_name(seen.version),
            status: res.status().as_u16(),
            bytes,
            ms: start.elapsed().as_secs_f64() * 1000.0,
            client: ip,
            site: site.as_deref(),
            referer: seen.referer.as_deref(),
            user_agent: seen.user_agent.as_deref(),
        });
    }
    Ok(res)
}

fn version_name(v: actix_web::http::Version) -> &'static str {
    use actix_web::http::Version;
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
