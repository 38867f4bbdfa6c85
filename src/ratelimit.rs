//! Rate limits for the API: token buckets per client IP and per credential, and a stricter one
//! for failed authentication per IP. Over a limit the answer is 429 with `Retry-After` and
//! `X-RateLimit-*` headers, which @netlify/api waits for before retrying.

use crate::error::ApiError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets held before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One family of token buckets: `rate` tokens a second up to `burst`. A rate of 0 disables it.
pub struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until a token is available (when refused) or the bucket is full (when allowed).
    pub wait_secs: u64,
}

impl Limiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> Limiter {
        Limiter {
            rate: rate_per_sec.max(0.0),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
    }

    /// Takes `cost` tokens from `key`'s bucket if it has them.
    pub fn take(&self, key: &str, cost: f64, now: Instant) -> Verdict {
        if !self.enabled() {
            return Verdict {
                allowed: true,
                limit: 0,
                remaining: 0,
                wait_secs: 0,
            };
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            // Full buckets hold nothing worth keeping...
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            // ...and if an attacker keeps that many partly drained, the least recently used
            // half goes, so the table never grows past its bound.
            if map.len() >= MAX_BUCKETS / 2 {
                let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
                let middle = ages.len() / 2;
                let (_, cutoff, _) = ages.select_nth_unstable(middle);
                let cutoff = *cutoff;
                map.retain(|_, b| b.at > cutoff);
            }
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(b, now);
        let allowed = b.tokens >= cost;
        if allowed {
            b.tokens -= cost;
        }
        let missing = if allowed {
            self.burst - b.tokens
        } else {
            cost - b.tokens
        };
        Verdict {
            allowed,
            limit: self.burst as u64,
            remaining: b.tokens.max(0.0) as u64,
            wait_secs: (missing / self.rate)
                .ceil()
                .max(if allowed { 0.0 } else { 1.0 }) as u64,
        }
    }

    /// True if `key` has no token left (without taking one).
    pub fn exhausted(&self, key: &str, now: Instant) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.get_mut(key)?;
        self.refill(b, now);
        (b.tokens < 1.0).then(|| ((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64)
    }
}

pub struct RateLimits {
    pub per_ip: Limiter,
    pub per_credential: Limiter,
    pub auth_failures: Limiter,
    /// Edge form submissions per client IP and per site.
    pub forms_per_ip: Limiter,
    pub forms_per_site: Limiter,
    /// Edge password attempts per client IP: 10 per 5 minutes.
    pub password_attempts: Limiter,
}

/// Per-minute rates as the settings give them.
pub struct PerMinute {
    pub auth_failures: f64,
    pub forms_per_ip: f64,
    pub forms_per_site: f64,
}

impl RateLimits {
    pub fn new(ip_rps: f64, credential_rps: f64, per_minute: PerMinute) -> RateLimits {
        let minute = |n: f64| Limiter::new(n / 60.0, n);
        RateLimits {
            per_ip: Limiter::new(ip_rps, ip_rps * 2.0),
            per_credential: Limiter::new(credential_rps, credential_rps * 2.0),
            auth_failures: minute(per_minute.auth_failures),
            forms_per_ip: minute(per_minute.forms_per_ip),
            forms_per_site: minute(per_minute.forms_per_site),
            password_attempts: Limiter::new(10.0 / 300.0, 10.0),
        }
    }

    /// Counts a failed authentication from `ip`.
    pub fn auth_failed(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.auth_failures
                .take(&crate::http::ip_key(ip), 1.0, Instant::now());
        }
    }

    /// Some(seconds to wait) if `ip` failed authentication too often.
    pub fn auth_blocked(&self, ip: Option<IpAddr>) -> Option<u64> {
        ip.and_then(|ip| {
            self.auth_failures
                .exhausted(&crate::http::ip_key(ip), Instant::now())
        })
    }
}

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
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(limits) = req.app_data::<web::Data<RateLimits>>().cloned() else {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    };
    let now = Instant::now();
    let unlimited = Verdict {
        allowed: true,
        limit: 0,
        remaining: 0,
        wait_secs: 0,
    };
    let by_ip = if limits.per_ip.enabled() {
        let ip = crate::http::known_client_ip(req.request());
        limits
            .per_ip
            .take(&ip.map(crate::http::ip_key).unwrap_or_default(), 1.0, now)
    } else {
        unlimited
    };
    let by_credential = match req.headers().get("authorization") {
        Some(v) if limits.per_credential.enabled() => {
            limits
                .per_credential
                .take(&hex::encode(&Sha256::digest(v.as_bytes())[..16]), 1.0, now)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_table_stays_bounded() {
        let l = Limiter::new(1.0, 10.0);
        let t0 = Instant::now();
        for i in 0..(3 * MAX_BUCKETS) {
            l.take(&i.to_string(), 1.0, t0 + Duration::from_micros(i as u64));
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_BUCKETS);
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let l = Limiter::new(1.0, 2.0);
        let t0 = Instant::now();
        assert!(l.take("a", 1.0, t0).allowed);
        assert!(l.take("a", 1.0, t0).allowed);
        let refused = l.take("a", 1.0, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.wait_secs, 1);
        assert!(l.take("b", 1.0, t0).allowed, "buckets are per key");
        assert!(l.take("a", 1.0, t0 + Duration::from_millis(1100)).allowed);
        assert!(
            Limiter::new(0.0, 1.0).take("a", 1e9, t0).allowed,
            "rate 0 disables"
        );
    }
}
