//! Traffic metrics per client domain: totals and a daily series. The edge records into an
//! in-memory `TrafficRecorder`; a background task folds it into sled in batches, so serving a
//! request never waits for a write.

use super::{decode, encode, Store};
use crate::error::StoreResult;
use crate::model::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Days of the daily series shown with a domain.
pub const DAILY_DAYS: usize = 30;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub bytes_sent: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Traffic {
    pub requests: u64,
    pub bytes_sent: u64,
    pub last_request_at: Option<Timestamp>,
    /// date (YYYY-MM-DD) -> counts; only the last `DAILY_DAYS` days are kept.
    pub daily: BTreeMap<String, Counts>,
}

impl Traffic {
    fn absorb(&mut self, other: &Traffic) {
        self.requests += other.requests;
        self.bytes_sent += other.bytes_sent;
        self.last_request_at = self.last_request_at.max(other.last_request_at);
        for (date, c) in &other.daily {
            let mine = self.daily.entry(date.clone()).or_default();
            mine.requests += c.requests;
            mine.bytes_sent += c.bytes_sent;
        }
        while self.daily.len() > DAILY_DAYS {
            let Some(oldest) = self.daily.keys().next().cloned() else {
                break;
            };
            self.daily.remove(&oldest);
        }
    }
}

pub struct TrafficStore<'a>(&'a Store);

impl Store {
    pub fn traffic(&self) -> TrafficStore<'_> {
        TrafficStore(self)
    }
}

impl TrafficStore<'_> {
    pub fn get(&self, domain_id: &str) -> StoreResult<Traffic> {
        Ok(super::get(&self.0.t.traffic, domain_id)?.unwrap_or_default())
    }

    /// Adds a batch to a domain's stored metrics (only while the domain exists).
    pub fn add(&self, domain_id: &str, batch: &Traffic) -> StoreResult<()> {
        if self.0.t.domains.read().get(domain_id.as_bytes())?.is_none() {
            return Ok(());
        }
        self.0
            .t
            .traffic
            .update_and_fetch(domain_id.as_bytes(), |old| {
                let mut t: Traffic = old.and_then(|raw| decode(raw).ok()).unwrap_or_default();
                t.absorb(batch);
                Some(encode(&t))
            })?;
        Ok(())
    }

    pub fn delete(&self, domain_id: &str) -> StoreResult<()> {
        self.0.t.traffic.remove(domain_id.as_bytes())?;
        Ok(())
    }
}

/// Requests counted since the last batch was stored: per client domain, and per site and day
/// for usage (`traffic_key`).
#[derive(Default)]
pub struct TrafficRecorder {
    pending: Mutex<HashMap<String, Traffic>>,
    sites: Mutex<HashMap<String, SiteCounts>>,
}

/// A site's requests since the last batch, per day (days since the epoch, UTC): nothing is
/// formatted or allocated per request once the site has been seen.
struct SiteCounts {
    reseller_id: String,
    user_id: String,
    days: BTreeMap<i64, Counts>,
}

const DAY_MS: i64 = 86_400_000;

impl TrafficRecorder {
    /// Counts one served request of `bytes` for a domain.
    pub fn record(&self, domain_id: &str, bytes: u64, now: Timestamp) {
        self.count_domain(domain_id, 1, bytes, now);
    }

    /// Counts one served request of `bytes` for a site's usage.
    pub fn record_site(&self, site: &super::sites::Site, bytes: u64, now: Timestamp) {
        self.count_site(site, 1, bytes, now);
    }

    /// Adds `bytes` streamed for a request already counted (a proxied answer, whose size is
    /// known only once it has been sent).
    pub fn streamed(
        &self,
        site: &super::sites::Site,
        domain_id: Option<&str>,
        bytes: u64,
        now: Timestamp,
    ) {
        self.count_site(site, 0, bytes, now);
        if let Some(domain_id) = domain_id {
            self.count_domain(domain_id, 0, bytes, now);
        }
    }

    fn count_domain(&self, domain_id: &str, requests: u64, bytes: u64, now: Timestamp) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let t = pending.entry(domain_id.to_string()).or_default();
        t.requests += requests;
        t.bytes_sent += bytes;
        t.last_request_at = Some(now);
        let day = t.daily.entry(now.date()).or_default();
        day.requests += requests;
        day.bytes_sent += bytes;
    }

    fn count_site(&self, site: &super::sites::Site, requests: u64, bytes: u64, now: Timestamp) {
        let day = now.0.div_euclid(DAY_MS);
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let counts = match sites.get_mut(site.id.as_str()) {
            Some(counts) => counts,
            None => sites.entry(site.id.clone()).or_insert_with(|| SiteCounts {
                reseller_id: site.reseller_id.clone(),
                user_id: site.user_id.clone(),
                days: BTreeMap::new(),
            }),
        };
        let c = counts.days.entry(day).or_default();
        c.requests += requests;
        c.bytes_sent += bytes;
    }

    /// Moves everything counted so far into the store and flushes it. Returns the users (as
    /// `reseller_id/user_id`) whose sites served something since the last batch.
    pub async fn store_batch(
        &self,
        store: &Store,
    ) -> StoreResult<std::collections::BTreeSet<String>> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let taken = std::mem::take(&mut *self.sites.lock().unwrap_or_else(|p| p.into_inner()));
        let mut users = std::collections::BTreeSet::new();
        if batch.is_empty() && taken.is_empty() {
            return Ok(users);
        }
        let mut sites = BTreeMap::new();
        for (site_id, counts) in taken {
            for (day, c) in counts.days {
                let at = Timestamp(day * DAY_MS);
                let key = traffic_key(&counts.reseller_id, &counts.user_id, &site_id, at);
                sites.insert(key, c);
            }
        }
        for (domain_id, t) in &batch {
            store.traffic().add(domain_id, t)?;
        }
        store.usage().add_traffic(&sites)?;
        store.flush().await?;
        for key in sites.keys() {
            // reseller/month/user/site/day
            let parts: Vec<&str> = key.splitn(4, '/').collect();
            if let [reseller, _, user, _] = parts.as_slice() {
                users.insert(format!("{reseller}/{user}"));
            }
        }
        Ok(users)
    }
}

/// `reseller/YYYY-MM/user/site/YYYY-MM-DD`: one day of one site's traffic.
pub fn traffic_key(reseller_id: &str, user_id: &str, site_id: &str, at: Timestamp) -> String {
    let day = at.date();
    let month = day.get(..7).unwrap_or_default();
    format!("{reseller_id}/{month}/{user_id}/{site_id}/{day}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_add_up_and_keep_thirty_days() {
        let mut total = Traffic::default();
        for day in 0..40 {
            let mut t = Traffic {
                requests: 2,
                bytes_sent: 10,
                ..Default::default()
            };
            t.daily.insert(
                format!("2026-01-{:02}", day + 1),
                Counts {
                    requests: 2,
                    bytes_sent: 10,
                },
            );
            total.absorb(&t);
        }
        assert_eq!(total.requests, 80);
        assert_eq!(total.daily.len(), DAILY_DAYS);
        assert!(total.daily.contains_key("2026-01-40"));
    }
}
