//! The API's rate limits: a token from the client IP's bucket and one from the credential's
//! (`ratelimit::RateLimits`), with the `x-ratelimit-*` headers.

use crate::error::ApiError;
use crate::ratelimit::{RateLimits, Verdict};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use sha2::{Digest, Sha256};

fn set_headers<B>(res: &mut ServiceResponse<B>, v: Verdict) {
    if v.limit == 0 {
        return;
    }
    let reset = (crate::model::Timestamp::now().0 / 1000) as u64 + v.wait_secs;
    let headers = res.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", v.limit),
        ("x-ratelimit-remaining", v.remaining),
        ("x-ratelimit-reset", reset),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Middleware for `/api/v1`: one token from the client IP's bucket and one from the
/// credential's (keyed by a hash of the Authorization header, never the secret itself).
pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(limits) = req.app_data::<web::Data<RateLimits>>().cloned() else {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    };
    let unlimited = Verdict::UNLIMITED;
    let by_ip = if limits.per_ip.enabled() {
        let ip = crate::http::known_client_ip(req.request());
        limits
            .per_ip
            .take(&ip.map(crate::http::ip_key).unwrap_or_default())
    } else {
        unlimited
    };
    let by_credential = match req.headers().get("authorization") {
        Some(v) if limits.per_credential.enabled() => limits
            .per_credential
            .take(&hex::encode(&Sha256::digest(v.as_bytes())[..16])),
        _ => unlimited,
    };
    let tightest = [by_ip, by_credential]
        .into_iter()
        .filter(|v| v.limit > 0)
        .min_by_key(|v| v.remaining);
    for v in [by_ip, by_credential] {
        if !v.allowed {
            let (http_req, _) = req.into_parts();
            let mut res = ServiceResponse::new(
                http_req,
                ApiError::RateLimited(v.wait_secs).error_response(),
            );
            set_headers(&mut res, v);
            return Ok(res);
        }
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    if let Some(v) = tightest {
        set_headers(&mut res, v);
    }
    Ok(res)
}
