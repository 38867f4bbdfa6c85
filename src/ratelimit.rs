//! Rate limits for the API: token buckets per client IP and per credential, and a stricter one
//! for failed authentication per IP. Over a limit the answer is 429 with `Retry-After` and
//! `X-RateLimit-*` headers, which @netlify/api waits for before retrying.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Keys a limiter holds before those whose bucket is full again are dropped; if a flood of
/// distinct keys keeps more than that partly drained, the limiter starts over empty (a reset
/// of everyone's buckets, which only a flood from that many addresses can cause), so random
/// addresses cannot grow memory without bound.
const MAX_BUCKETS: usize = 100_000;
/// Takes between two looks at the number of keys.
const COUNT_EVERY: u32 = 256;

type Keyed<C> = RateLimiter<String, Shared, C, StateInformationMiddleware>;

/// governor's DashMap of buckets, shared with the limiter that owns it, so a flood can be
/// answered by starting over (governor itself only drops full buckets).
#[derive(Clone, Default)]
struct Shared(Arc<DashMapStateStore<String>>);

impl StateStore for Shared {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<String> for Shared {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below)
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One family of token buckets (governor's GCRA, keyed): `rate` tokens a second up to `burst`.
/// A rate of 0 disables it.
pub struct Limiter<C: Clock = DefaultClock> {
    rate: f64,
    burst: u32,
    keyed: Option<Keyed<C>>,
    buckets: Shared,
    takes: AtomicU32,
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

impl Verdict {
    pub const UNLIMITED: Verdict = Verdict {
        allowed: true,
        limit: 0,
        remaining: 0,
        wait_secs: 0,
    };
}

impl Limiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> Limiter {
        Limiter::with_clock(rate_per_sec, burst, DefaultClock::default())
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter on `clock` (tests move a fake one).
    pub fn with_clock(rate_per_sec: f64, burst: f64, clock: C) -> Limiter<C> {
        let burst = burst.clamp(1.0, f64::from(u32::MAX)) as u32;
        let quota = (rate_per_sec > 0.0)
            .then(|| Quota::with_period(std::time::Duration::from_secs_f64(1.0 / rate_per_sec)))
            .flatten();
        let buckets = Shared::default();
        let keyed = quota.map(|q| {
            let q = q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            Keyed::new(q, buckets.clone(), clock)
        });
        Limiter {
            rate: rate_per_sec.max(0.0),
            burst,
            keyed,
            buckets,
            takes: AtomicU32::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.keyed.is_some()
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub fn take(&self, key: &str) -> Verdict {
        let Some(keyed) = &self.keyed else {
            return Verdict::UNLIMITED;
        };
        if self
            .takes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(COUNT_EVERY)
            && keyed.len() >= MAX_BUCKETS
        {
            keyed.retain_recent();
            if keyed.len() >= MAX_BUCKETS {
                tracing::warn!(
                    keys = keyed.len(),
                    "a flood of distinct clients: a rate limiter starts over"
                );
                self.buckets.0.clear();
                keyed.shrink_to_fit();
            }
        }
        let limit = u64::from(self.burst);
        match keyed.check_key(&key.to_string()) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let missing = f64::from(self.burst.saturating_sub(remaining));
                Verdict {
                    allowed: true,
                    limit,
                    remaining: u64::from(remaining),
                    wait_secs: (missing / self.rate).ceil() as u64,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(keyed.clock().now());
                Verdict {
                    allowed: false,
                    limit,
                    remaining: 0,
                    wait_secs: (wait.as_secs_f64().ceil() as u64).max(1),
                }
            }
        }
    }

    /// Keys held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keyed.as_ref().map_or(0, |k| k.len())
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

    /// Counts a failed authentication from `ip`: Some(seconds to wait) if `ip` failed too often
    /// (the failure is then answered 429 instead of 401, and not counted).
    pub fn auth_failed(&self, ip: Option<IpAddr>) -> Option<u64> {
        let verdict = self.auth_failures.take(&crate::http::ip_key(ip?));
        (!verdict.allowed).then_some(verdict.wait_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn the_table_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(1.0, 10.0, clock.clone());
        for i in 0..(3 * MAX_BUCKETS) {
            l.take(&i.to_string());
            clock.advance(Duration::from_micros(1));
        }
        assert!(
            l.len() <= MAX_BUCKETS + COUNT_EVERY as usize,
            "{} keys",
            l.len()
        );
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(1.0, 2.0, clock.clone());
        let first = l.take("a");
        assert!(first.allowed);
        assert_eq!((first.limit, first.remaining), (2, 1));
        assert!(l.take("a").allowed);
        let refused = l.take("a");
        assert!(!refused.allowed);
        assert_eq!(refused.wait_secs, 1);
        assert!(l.take("b").allowed, "buckets are per key");
        clock.advance(Duration::from_millis(1100));
        assert!(l.take("a").allowed);
        assert!(!Limiter::new(0.0, 1.0).enabled(), "rate 0 disables");
        assert!(Limiter::new(0.0, 1.0).take("a").allowed);
    }

    /// Failed authentications: the first `burst` are counted, the next are refused (429)
    /// until a token comes back.
    #[test]
    fn failures_past_the_limit_are_refused_until_a_token_returns() {
        let limits = RateLimits::new(
            0.0,
            0.0,
            PerMinute {
                auth_failures: 3.0,
                forms_per_ip: 0.0,
                forms_per_site: 0.0,
            },
        );
        let ip = Some("192.0.2.7".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limits.auth_failed(ip), None);
        }
        let wait = limits.auth_failed(ip).expect("refused");
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limits.auth_failed(Some("192.0.2.8".parse().unwrap())), None);
    }
}
