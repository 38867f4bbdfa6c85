//! Prometheus metrics (served at `GET /metrics` by `api::ops`), through `prometheus-client`. A
//! sink: the parts of the server that do the work count into their own metric handles (the
//! verifier, the webhook outbox, the mailer), registered here where the app is assembled, and
//! nothing here reads them or imports them. What can only be sampled (free space, queue
//! depths, leadership, certificates) is handed to `render` as a `Sample` by the caller.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The media type `render`'s text is in.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the request latency histogram, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// The label of an outcome counted by result (`found`, `delivered`, `sent`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub result: &'static str,
}

/// Counts by outcome.
pub type Outcomes = Family<Outcome, Counter>;

/// Counts `result` in `outcomes`.
pub fn count(outcomes: &Outcomes, result: &'static str) {
    outcomes.get_or_create(&Outcome { result }).inc();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertDomain {
    domain: String,
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

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// What the caller samples at each scrape.
pub struct Sample {
    pub free_bytes: u64,
    pub reserve_bytes: u64,
    pub leader: bool,
    pub store_failed: bool,
    pub webhook_depth: u64,
    pub mail_depth: u64,
    /// The store's flushes so far and the time they took.
    pub flushes: u64,
    pub flush_micros: u64,
    /// (domain, Unix time its certificate expires) for every served certificate.
    pub certificates: Vec<(String, i64)>,
}

/// Counters that only grow but are read from elsewhere at each scrape (the store's flush
/// statistics), encoded as counters.
#[derive(Debug, Default)]
struct Flushes {
    count: AtomicU64,
    micros: AtomicU64,
}

impl Collector for Flushes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let count = ConstCounter::new(self.count.load(Ordering::Relaxed));
        count.encode(encoder.encode_descriptor(
            "resellerd_store_flushes",
            "Database flushes (group commits).",
            None,
            count.metric_type(),
        )?)?;
        let secs = ConstCounter::new(self.micros.load(Ordering::Relaxed) as f64 / 1e6);
        secs.encode(encoder.encode_descriptor(
            "resellerd_store_flush_seconds",
            "Time spent in database flushes.",
            None,
            secs.metric_type(),
        )?)
    }
}

/// The registry and the metrics this module keeps itself (requests, edge bytes, samples).
pub struct Metrics {
    registry: Registry,
    requests: Family<Answer, Counter>,
    durations: Family<Route, Histogram, fn() -> Histogram>,
    edge_bytes: Counter,
    free_bytes: Gauge,
    reserve_bytes: Gauge,
    leader: Gauge,
    store_failed: Gauge,
    webhook_depth: Gauge,
    mail_depth: Gauge,
    flushes: Arc<Flushes>,
    certificates: Family<CertDomain, Gauge>,
    /// One scrape at a time: a scrape sets the samples, then encodes them.
    scraping: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            edge_bytes: Counter::default(),
            free_bytes: Gauge::default(),
            reserve_bytes: Gauge::default(),
            leader: Gauge::default(),
            store_failed: Gauge::default(),
            webhook_depth: Gauge::default(),
            mail_depth: Gauge::default(),
            flushes: Arc::default(),
            certificates: Family::default(),
            scraping: Mutex::new(()),
        };
        let r = &mut m.registry;
        r.register(
            "resellerd_http_requests",
            "Requests answered, by route pattern, method and status.",
            m.requests.clone(),
        );
        r.register(
            "resellerd_http_request_duration_seconds",
            "Time to answer, by route pattern.",
            m.durations.clone(),
        );
        r.register(
            "resellerd_edge_bytes_sent",
            "Body bytes the edge sent.",
            m.edge_bytes.clone(),
        );
        r.register_collector(Box::new(m.flushes.clone()));
        for (name, help, gauge) in [
            (
                "resellerd_data_dir_free_bytes",
                "Free bytes on the data dir's filesystem (sampled each second).",
                &m.free_bytes,
            ),
            (
                "resellerd_data_dir_reserve_bytes",
                "Free bytes kept in reserve: below it writes are refused with 507.",
                &m.reserve_bytes,
            ),
            (
                "resellerd_cluster_leader",
                "1 while this node runs the background work (always on an embedded database; on PostgreSQL, the node holding the leader lease).",
                &m.leader,
            ),
            (
                "resellerd_store_failed",
                "1 while the store cannot write (a flush failed), else 0.",
                &m.store_failed,
            ),
            (
                "resellerd_webhook_outbox_depth",
                "Webhook deliveries waiting to be sent or retried.",
                &m.webhook_depth,
            ),
            (
                "resellerd_mail_outbox_depth",
                "Notification mails waiting to be sent or retried.",
                &m.mail_depth,
            ),
        ] {
            r.register(name, help, gauge.clone());
        }
        r.register(
            "resellerd_certificate_expiry_seconds",
            "Unix time each served certificate expires.",
            m.certificates.clone(),
        );
        m
    }

    /// Adds a metric another part of the server counts into (before the server starts).
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// Counts one answered request under its route pattern (`edge` for site traffic).
    pub fn observe<B: MessageBody>(&self, res: &ServiceResponse<B>, took: Duration) {
        let req = res.request();
        let pattern = req.match_pattern();
        if pattern.is_none() && req.method() != actix_web::http::Method::HEAD {
            if let actix_web::body::BodySize::Sized(n) = res.response().body().size() {
                self.edge_bytes.inc_by(n);
            }
        }
        let route = pattern.unwrap_or_else(|| "edge".to_string());
        let answer = Answer {
            route,
            method: method_label(req.method()),
            status: res.status().as_u16(),
        };
        self.requests.get_or_create(&answer).inc();
        let route = Route {
            route: answer.route,
        };
        self.durations
            .get_or_create(&route)
            .observe(took.as_secs_f64());
    }

    /// The metrics as OpenMetrics text (`CONTENT_TYPE`), with `sample`'s values.
    pub fn render(&self, sample: &Sample) -> String {
        let _one = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.free_bytes, sample.free_bytes);
        gauge(&self.reserve_bytes, sample.reserve_bytes);
        gauge(&self.leader, u64::from(sample.leader));
        gauge(&self.store_failed, u64::from(sample.store_failed));
        gauge(&self.webhook_depth, sample.webhook_depth);
        gauge(&self.mail_depth, sample.mail_depth);
        self.flushes.count.store(sample.flushes, Ordering::Relaxed);
        self.flushes
            .micros
            .store(sample.flush_micros, Ordering::Relaxed);
        // Only the certificates served now: a removed one's series goes.
        self.certificates.clear();
        for (domain, expires) in &sample.certificates {
            self.certificates
                .get_or_create(&CertDomain {
                    domain: domain.clone(),
                })
                .set(*expires);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text names every series as Prometheus expects (counters with `_total`, histograms
    /// with their buckets), with what was counted and sampled.
    #[test]
    fn renders_what_was_counted_and_sampled() {
        let mut m = Metrics::new();
        let checks = Outcomes::default();
        m.register(
            "resellerd_domain_verifications",
            "Domain TXT checks, by result.",
            checks.clone(),
        );
        count(&checks, "found");
        count(&checks, "found");
        let text = m.render(&Sample {
            free_bytes: 5,
            reserve_bytes: 1,
            leader: true,
            store_failed: false,
            webhook_depth: 3,
            mail_depth: 0,
            flushes: 7,
            flush_micros: 1_500_000,
            certificates: vec![("shop.example".into(), 1_800_000_000)],
        });
        for line in [
            "resellerd_domain_verifications_total{result=\"found\"} 2",
            "resellerd_store_flushes_total 7",
            "resellerd_store_flush_seconds_total 1.5",
            "resellerd_data_dir_free_bytes 5",
            "resellerd_cluster_leader 1",
            "resellerd_webhook_outbox_depth 3",
            "resellerd_certificate_expiry_seconds{domain=\"shop.example\"} 1800000000",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        let later = m.render(&Sample {
            free_bytes: 5,
            reserve_bytes: 1,
            leader: false,
            store_failed: false,
            webhook_depth: 0,
            mail_depth: 0,
            flushes: 8,
            flush_micros: 1_500_000,
            certificates: vec![],
        });
        assert!(!later.contains("shop.example"), "{later}");
        assert!(later.contains("resellerd_cluster_leader 0"), "{later}");
    }
}
