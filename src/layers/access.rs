//! The outermost layer: the client's address (worked out once, from the trusted-proxy rules),
//! the request metrics and the access line.

use crate::{http, telemetry, AppState};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

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
    // Only pay for the log line's strings when access logging is on.
    let info = tracing::enabled!(target: "access", tracing::Level::INFO).then(|| {
        let host = http::host(req.request());
        (req.method().to_string(), host, req.path().to_string())
    });
    let res = next.call(req).await?;
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        state.metrics.observe(&res, start.elapsed());
    }
    if let Some((method, host, path)) = info {
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        telemetry::access(&method, &host, &path, res.status().as_u16(), ms, ip);
    }
    Ok(res)
}
