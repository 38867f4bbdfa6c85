//! DNS verification of client domains: a TXT record `_resellerd.<domain>` holding
//! `resellerd-verification=<token>`, looked up against the configured resolver. A background task
//! re-checks pending domains with backoff, concurrently; a pending domain past the deadline fails
//! and releases its name, and a check on request can still verify it.

use crate::model::Timestamp;
use crate::store::domains::{Domain, DomainStatus};
use crate::store::resellers::Reseller;
use crate::store::Store;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use resellerd_store::error::StoreResult;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The longest wait between two checks of one domain.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// The longest one lookup may take, and how many run at once.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);
const PARALLEL_CHECKS: usize = 16;

/// The wait before the next check after `misses` misses in a row: the interval, doubling, at
/// most an hour (or the interval, if longer).
pub fn backoff(interval: Duration, misses: u32) -> Duration {
    interval
        .saturating_mul(1 << misses.min(12))
        .min(MAX_BACKOFF.max(interval))
}

pub struct Verifier {
    /// Checks by result (`found`, `missing`), registered with `metrics` where the app is
    /// assembled.
    pub checks: crate::metrics::Outcomes,
    resolver: TokioResolver,
    interval: Duration,
    deadline: Duration,
}

impl Verifier {
    /// A verifier asking `server` (ip:port), or the system's resolver when none is given.
    pub fn new(
        server: Option<SocketAddr>,
        interval: Duration,
        deadline: Duration,
    ) -> Result<Verifier, String> {
        let mut opts = ResolverOpts::default();
        // Every check must see the record as it is now, not as it was cached.
        opts.cache_size = 0;
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        let config = match server {
            Some(addr) => {
                let on_port = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let server = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![
                        on_port(ConnectionConfig::udp()),
                        on_port(ConnectionConfig::tcp()),
                    ],
                );
                ResolverConfig::from_parts(None, vec![], vec![server])
            }
            None => {
                hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
                    .0
            }
        };
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Verifier {
            checks: Default::default(),
            resolver,
            interval: interval.max(Duration::from_secs(1)),
            deadline,
        })
    }

    /// Asks the resolver about a name that has no TXT record: any answer, even "no such
    /// name", shows the resolver is reachable; a timeout or network error shows it is not.
    pub async fn probe(&self) -> Result<(), String> {
        match self.resolver.txt_lookup("_resellerd-doctor.example.").await {
            Ok(_) => Ok(()),
            Err(e) if e.is_no_records_found() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether `name` has a TXT record holding `value`: `Err` says what was found instead and
    /// what to do about it (no record, other values, a failed lookup).
    pub async fn expect_txt(&self, name: &str, value: &str) -> Result<(), String> {
        match self.txt(name).await {
            Ok(values) if values.iter().any(|v| v.trim() == value) => Ok(()),
            Ok(values) if values.is_empty() => Err(format!(
                "no TXT record at {name}: add one with the value {value}"
            )),
            Ok(values) => Err(format!(
                "the TXT records at {name} hold {values:?}, not {value}: change the record's value"
            )),
            Err(e) => Err(format!("{e}; the check is repeated")),
        }
    }

    /// The TXT records at `name` (each one's strings joined). Empty when there are none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let lookup = tokio::time::timeout(CHECK_DEADLINE, self.resolver.txt_lookup(fqdn.as_str()));
        match lookup.await {
            Err(_) => Err(format!("no answer for {fqdn} within {CHECK_DEADLINE:?}")),
            Ok(Ok(answer)) => Ok(answer
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(txt),
                    _ => None,
                })
                .map(|txt| {
                    let value: Vec<u8> = txt
                        .txt_data
                        .iter()
                        .flat_map(|part| part.iter().copied())
                        .collect();
                    String::from_utf8_lossy(&value).into_owned()
                })
                .collect()),
            Ok(Err(e)) if e.is_no_records_found() => Ok(Vec::new()),
            Ok(Err(e)) => Err(format!("DNS lookup of {fqdn} failed: {e}")),
        }
    }

    /// The state change after a check that did (`found`) or did not find the record.
    pub fn apply(&self, d: &mut Domain, found: bool, now: Timestamp) {
        d.last_checked_at = Some(now);
        if found {
            if d.status != DomainStatus::Verified {
                d.status = DomainStatus::Verified;
                d.verified_at = Some(now);
            }
            d.misses = 0;
            return;
        }
        if d.status == DomainStatus::Verified {
            return;
        }
        d.misses = d.misses.saturating_add(1);
        d.next_check_at = now.plus_secs(backoff(self.interval, d.misses).as_secs() as i64);
        if d.status == DomainStatus::Pending
            && now.0 - d.created_at.0 > self.deadline.as_millis() as i64
        {
            d.status = DomainStatus::Failed;
        }
    }

    /// Checks one domain now and stores the result. A lookup gets `CHECK_DEADLINE` at most.
    pub async fn check(&self, store: &Store, mut d: Domain) -> StoreResult<Domain> {
        let result = self.expect_txt(&d.txt_name(), &d.txt_value()).await;
        if let Err(e) = &result {
            tracing::debug!(domain = %d.name, error = %e, "domain not verified yet");
        }
        let found = result.is_ok();
        crate::metrics::count(&self.checks, if found { "found" } else { "missing" });
        // Applied to the record as it is after the lookup, not to the copy read before it.
        let now = Timestamp::now();
        let updated = store
            .domains()
            .update(&d.id, |current| self.apply(current, found, now))?;
        if updated.is_some() {
            store
                .domains()
                .set_verification_error(&d.id, result.as_ref().err().map(String::as_str))?;
        }
        store.flush().await?;
        Ok(updated.unwrap_or_else(|| {
            self.apply(&mut d, found, now);
            d
        }))
    }

    /// Checks a reseller's pending preview domain now and stores the result: found, it becomes
    /// the preview domain; not found, the reason is kept (and past the deadline it fails).
    pub async fn check_preview(&self, store: &Store, reseller: Reseller) -> StoreResult<Reseller> {
        let Some(p) = reseller.preview_domain_pending.clone() else {
            return Ok(reseller);
        };
        let found = self
            .expect_txt(&p.txt_record.name, &p.txt_record.value)
            .await;
        let deadline = p.requested_at.plus_secs(self.deadline.as_secs() as i64);
        let updated = store.resellers().check_pending_preview(
            &reseller.id,
            &p.domain,
            found,
            deadline,
            Timestamp::now(),
        )?;
        store.flush().await?;
        Ok(updated)
    }

    /// Checks the pending preview domains that are due: every interval in their first hour,
    /// hourly after that, until the deadline fails them.
    async fn check_due_previews(&self, store: &Store, now: Timestamp) -> StoreResult<()> {
        use futures_util::StreamExt;
        let due: Vec<Reseller> = store
            .resellers()
            .list()?
            .into_iter()
            .filter(|r| {
                r.preview_domain_pending.as_ref().is_some_and(|p| {
                    let young = now.0 - p.requested_at.0 < 3_600_000;
                    let wait = if young { self.interval } else { MAX_BACKOFF };
                    p.status == DomainStatus::Pending
                        && p.last_checked_at
                            .is_none_or(|t| now.0 - t.0 >= wait.as_millis() as i64)
                })
            })
            .collect();
        // Side by side, as client domains are: one tenant's silent nameserver delays nobody.
        let mut results =
            futures_util::stream::iter(due.into_iter().map(|r| self.check_preview(store, r)))
                .buffer_unordered(PARALLEL_CHECKS);
        while let Some(result) = results.next().await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot store a preview domain check");
            }
        }
        Ok(())
    }

    /// Checks every pending domain whose next check is due, `PARALLEL_CHECKS` at a time, so
    /// one tenant's slow nameserver delays nobody else's verification. (A failed domain has
    /// released its name; `POST /domains/{id}/verify` checks it again.)
    pub async fn check_due(&self, store: &Store, now: Timestamp) -> StoreResult<usize> {
        use futures_util::StreamExt;
        let due: Vec<Domain> = store
            .domains()
            .all()?
            .into_iter()
            .filter(|d| d.status == DomainStatus::Pending && d.next_check_at <= now)
            .collect();
        let checked = due.len();
        let mut results = futures_util::stream::iter(due.into_iter().map(|d| self.check(store, d)))
            .buffer_unordered(PARALLEL_CHECKS);
        while let Some(result) = results.next().await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot store a domain check");
            }
        }
        Ok(checked)
    }

    /// The background checker: wakes every interval (at most every 5 s) and checks what is due.
    pub async fn run_forever(self: Arc<Self>, store: Store) {
        let tick = self.interval.min(Duration::from_secs(5));
        loop {
            tokio::time::sleep(tick).await;
            if !store.is_leader() {
                continue;
            }
            if let Err(e) = self.check_due(&store, Timestamp::now()).await {
                tracing::warn!(error = %e, "domain verification round failed");
            }
            if let Err(e) = self.check_due_previews(&store, Timestamp::now()).await {
                tracing::warn!(error = %e, "preview domain verification round failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DomainName, Email};

    fn domain(created_ms: i64) -> Domain {
        Domain {
            id: "d".into(),
            reseller_id: "r".into(),
            user_id: "u".into(),
            name: DomainName::parse("client.example").unwrap(),
            email: Email::parse("a@client.example").unwrap(),
            site_id: None,
            status: DomainStatus::Pending,
            token: "t".into(),
            wp_hash: [0; 32],
            created_at: Timestamp(created_ms),
            verified_at: None,
            last_checked_at: None,
            next_check_at: Timestamp(created_ms),
            misses: 0,
        }
    }

    #[actix_web::test]
    async fn misses_back_off_then_fail_at_the_deadline_and_a_hit_still_verifies() {
        let v = Verifier::new(
            Some("127.0.0.1:9".parse().unwrap()),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .unwrap();
        let mut d = domain(0);
        v.apply(&mut d, false, Timestamp(1_000));
        assert_eq!(d.status, DomainStatus::Pending);
        assert_eq!(d.next_check_at, Timestamp(1_000 + 120_000));
        v.apply(&mut d, false, Timestamp(2_000));
        assert_eq!(d.next_check_at, Timestamp(2_000 + 240_000));
        v.apply(&mut d, false, Timestamp(3_600_001));
        assert_eq!(d.status, DomainStatus::Failed);
        v.apply(&mut d, true, Timestamp(4_000_000));
        assert_eq!(d.status, DomainStatus::Verified);
        assert_eq!(d.verified_at, Some(Timestamp(4_000_000)));
        assert_eq!(d.last_checked_at, Some(Timestamp(4_000_000)));
    }

    /// A nameserver that never answers delays every lookup to its deadline; the checks of many
    /// domains still run side by side, not one after another.
    #[actix_web::test]
    async fn due_domains_are_checked_concurrently() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let v = Verifier::new(
            Some(silent.local_addr().unwrap()),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Timestamp::now();
        for i in 0..(2 * PARALLEL_CHECKS) {
            store
                .domains()
                .create(
                    "r",
                    "u",
                    DomainName::parse(&format!("d{i}.example")).unwrap(),
                    Email::parse("a@example.test").unwrap(),
                    None,
                    usize::MAX,
                    now,
                )
                .unwrap();
        }
        let began = std::time::Instant::now();
        let checked = v.check_due(&store, now).await.unwrap();
        assert_eq!(checked, 2 * PARALLEL_CHECKS);
        // One at a time, 32 silent lookups would take 32 deadlines' worth of time.
        assert!(
            began.elapsed() < CHECK_DEADLINE * 4,
            "took {:?}",
            began.elapsed()
        );
        let misses = store.domains().all().unwrap();
        assert!(misses
            .iter()
            .all(|d| d.misses == 1 && d.last_checked_at.is_some()));
    }
}
