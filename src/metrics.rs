//! Prometheus metrics (served at `GET /metrics` by `api::ops`): requests by route and status, a
//! latency histogram, edge bytes, store flushes, free space, verification results and certificate
//! expiry.

use crate::disk::Disk;
use crate::error::ApiResult;
use crate::mail::Mailer;
use crate::store::Store;
use crate::webhooks::{Outbox, LATENCY_BUCKETS};
use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What one route pattern has seen: answers by (method, status), and its latency.
#[derive(Default)]
struct RouteStats {
    answers: BTreeMap<(&'static str, u16), u64>,
    latency: Histogram,
}

/// The method as a label: the standard ones by name, anything else as `OTHER`, so a client
/// inventing methods cannot add series.
fn method_label(m: &actix_web::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// Counters shared by every worker. Cheap to update: one lock per request, and no allocation
/// once a route, method and status have been seen.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
    edge_bytes: AtomicU64,
}

/// Domain verification checks by outcome.
pub static VERIFY_FOUND: AtomicU64 = AtomicU64::new(0);
pub static VERIFY_MISSED: AtomicU64 = AtomicU64::new(0);

impl Metrics {
    /// Counts one answered request under its route pattern (`edge` for site traffic).
    pub fn observe<B: MessageBody>(&self, res: &ServiceResponse<B>, took: Duration) {
        let req = res.request();
        let pattern = req.match_pattern();
        let route = pattern.as_deref().unwrap_or("edge");
        if pattern.is_none() && req.method() != actix_web::http::Method::HEAD {
            if let actix_web::body::BodySize::Sized(n) = res.response().body().size() {
                self.edge_bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
        let (method, status) = (method_label(req.method()), res.status().as_u16());
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), RouteStats::default());
        }
        let Some(stats) = routes.get_mut(route) else {
            return;
        };
        *stats.answers.entry((method, status)).or_default() += 1;
        let secs = took.as_secs_f64();
        let h = &mut stats.latency;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn render(
        &self,
        store: &Store,
        disk: &Disk,
        outbox: &Outbox,
        mailer: &Mailer,
    ) -> ApiResult<String> {
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP resellerd_http_requests_total Requests answered, by route pattern, method and status.\n");
        out.push_str("# TYPE resellerd_http_requests_total counter\n");
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for (route, stats) in routes.iter() {
            for ((method, status), n) in &stats.answers {
                let _ = writeln!(
                    out,
                    "resellerd_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    esc(route)
                );
            }
        }
        out.push_str(
            "# HELP resellerd_http_request_duration_seconds Time to answer, by route pattern.\n",
        );
        out.push_str("# TYPE resellerd_http_request_duration_seconds histogram\n");
        for (route, stats) in routes.iter() {
            let (r, h) = (esc(route), &stats.latency);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "resellerd_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{bound}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(
                out,
                "resellerd_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "resellerd_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "resellerd_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
        drop(routes);
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "resellerd_edge_bytes_sent_total",
            "Body bytes the edge sent.",
            "counter",
            self.edge_bytes.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "resellerd_store_flushes_total",
            "Database flushes (group commits).",
            "counter",
            crate::store::FLUSHES.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "resellerd_store_flush_seconds_total",
            "Time spent in database flushes.",
            "counter",
            (crate::store::FLUSH_MICROS.load(Ordering::Relaxed) as f64 / 1e6).to_string(),
        );
        gauge(
            &mut out,
            "resellerd_data_dir_free_bytes",
            "Free bytes on the data dir's filesystem (sampled each second).",
            "gauge",
            disk.free().to_string(),
        );
        gauge(
            &mut out,
            "resellerd_data_dir_reserve_bytes",
            "Free bytes kept in reserve: below it writes are refused with 507.",
            "gauge",
            disk.reserve().to_string(),
        );
        gauge(
            &mut out,
            "resellerd_cluster_leader",
            "1 while this node runs the background work (always on an embedded database; on PostgreSQL, the node holding the leader lease).",
            "gauge",
            u8::from(store.is_leader()).to_string(),
        );
        gauge(
            &mut out,
            "resellerd_store_failed",
            "1 while the store cannot write (a flush failed), else 0.",
            "gauge",
            u8::from(store.is_failed()).to_string(),
        );
        out.push_str("# HELP resellerd_domain_verifications_total Domain TXT checks, by result.\n");
        out.push_str("# TYPE resellerd_domain_verifications_total counter\n");
        let _ = writeln!(
            out,
            "resellerd_domain_verifications_total{{result=\"found\"}} {}",
            VERIFY_FOUND.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "resellerd_domain_verifications_total{{result=\"missing\"}} {}",
            VERIFY_MISSED.load(Ordering::Relaxed)
        );
        gauge(
            &mut out,
            "resellerd_webhook_outbox_depth",
            "Webhook deliveries waiting to be sent or retried.",
            "gauge",
            store.webhooks().pending_count().to_string(),
        );
        gauge(
            &mut out,
            "resellerd_webhook_events_dropped_total",
            "Webhook events not queued because their endpoint's outbox was full.",
            "counter",
            outbox.metrics.dropped.load(Ordering::Relaxed).to_string(),
        );
        let m = &outbox.metrics;
        out.push_str("# HELP resellerd_webhook_attempts_total Webhook delivery attempts, by result (delivered: a 2xx; rejected: another status; failed: no answer).\n");
        out.push_str("# TYPE resellerd_webhook_attempts_total counter\n");
        for (result, n) in [
            ("delivered", &m.delivered),
            ("rejected", &m.rejected),
            ("failed", &m.failed),
        ] {
            let _ = writeln!(
                out,
                "resellerd_webhook_attempts_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP resellerd_webhook_attempt_duration_seconds Time a webhook attempt took.\n",
        );
        out.push_str("# TYPE resellerd_webhook_attempt_duration_seconds histogram\n");
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "resellerd_webhook_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                m.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = m.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "resellerd_webhook_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "resellerd_webhook_attempt_duration_seconds_sum {}",
            m.latency_ms_sum.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "resellerd_webhook_attempt_duration_seconds_count {count}"
        );
        gauge(
            &mut out,
            "resellerd_mail_outbox_depth",
            "Notification mails waiting to be sent or retried.",
            "gauge",
            store.mail().pending_count().to_string(),
        );
        out.push_str("# HELP resellerd_mail_attempts_total Attempts to hand a mail to the relay, by result.\n");
        out.push_str("# TYPE resellerd_mail_attempts_total counter\n");
        for (result, n) in [("sent", &mailer.sent), ("failed", &mailer.failed)] {
            let _ = writeln!(
                out,
                "resellerd_mail_attempts_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP resellerd_certificate_expiry_seconds Unix time each served certificate expires.\n");
        out.push_str("# TYPE resellerd_certificate_expiry_seconds gauge\n");
        for cert in store.certs().all()? {
            if let Some(t) = cert.not_after {
                let _ = writeln!(
                    out,
                    "resellerd_certificate_expiry_seconds{{domain=\"{}\"}} {}",
                    esc(&cert.domain),
                    t.0 / 1000
                );
            }
        }
        Ok(out)
    }
}
