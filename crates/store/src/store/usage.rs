//! Usage for invoicing, per user and site and month: requests and bytes the edge served (per day,
//! from the traffic recorder's batches), form submissions and deploys (counters kept in the
//! transactions that make them).

use super::traffic::Counts;
use super::{decode, encode, Store};
use crate::error::StoreResult;
use crate::model::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// The month (`YYYY-MM`) of a time.
pub fn month_of(at: Timestamp) -> String {
    at.date().get(..7).unwrap_or_default().to_string()
}

pub fn submissions_key(site_id: &str, month: &str) -> String {
    format!("site_submissions/{site_id}/{month}")
}

pub fn deploys_key(site_id: &str, month: &str) -> String {
    format!("site_deploys/{site_id}/{month}")
}

/// Seconds a site's builds ran in a month.
pub fn build_seconds_key(site_id: &str, month: &str) -> String {
    format!("site_build_seconds/{site_id}/{month}")
}

/// One day of a site's traffic.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Day {
    pub date: String,
    pub requests: u64,
    pub bytes_sent: u64,
}

/// A site's usage in a month.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Row {
    pub user_id: String,
    pub site_id: String,
    pub site_name: String,
    pub requests: u64,
    pub bytes_sent: u64,
    pub submissions: u64,
    pub deploys: u64,
    /// The distinct bytes of the files the site's deploys name (now, not per month).
    pub storage_bytes: u64,
    /// The same for all the user's sites, each distinct file once: what `max_storage_mb` limits.
    pub user_storage_bytes: u64,
    /// Seconds the site's builds from git ran this month.
    pub build_seconds: u64,
    /// The days with traffic; `requests` and `bytes_sent` are their sums.
    pub daily: Vec<Day>,
}

pub struct Usage<'a>(&'a Store);

impl Store {
    pub fn usage(&self) -> Usage<'_> {
        Usage(self)
    }
}

impl Usage<'_> {
    /// Bytes the edge served for a user's sites in `month`.
    pub fn user_month_bytes(
        &self,
        reseller_id: &str,
        user_id: &str,
        month: &str,
    ) -> StoreResult<u64> {
        let prefix = format!("{reseller_id}/{month}/{user_id}/");
        let mut total = 0;
        for raw in self.0.t.site_usage.scan_prefix(prefix.as_bytes()).values() {
            let c: Counts = decode(&raw?)?;
            total += c.bytes_sent;
        }
        Ok(total)
    }

    /// Tells `quota.<level>` (`warning` or `exceeded`) for a user's limit once per month: the
    /// marker and the event are one transaction. True if this call told it.
    #[allow(clippy::too_many_arguments)]
    pub fn tell_quota(
        &self,
        user: &super::users::User,
        limit: &str,
        level: &'static str,
        used: u64,
        max: u64,
        month: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        use crate::kv::Transactional;
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        let marker = format!("quota_told/{}/{month}/{limit}/{level}", user.id);
        let kind = if level == "warning" {
            "quota.warning"
        } else {
            "quota.exceeded"
        };
        Ok((&t.counters, &t.events).transaction(|(counters, events)| {
            if counters.get(marker.as_bytes())?.is_some() {
                return Ok(false);
            }
            counters.insert(marker.as_bytes(), &[])?;
            super::events::emit(events, subs, &user.reseller_id, kind, now, || {
                super::events::Subject::Quota {
                    user: user.clone(),
                    limit: limit.to_string(),
                    used,
                    max,
                    month: month.to_string(),
                }
            })?;
            Ok(true)
        })?)
    }

    /// Records that a user (`reseller_id/user_id`) is blocked for bandwidth in `month`, or no
    /// longer is (`None`), so a restart blocks it again before serving anything.
    pub fn record_block(&self, user_key: &str, month: Option<&str>) -> StoreResult<()> {
        super::put_or_remove(&self.0.t.bandwidth_blocks, user_key, month)
    }

    /// Every recorded bandwidth block: (`reseller_id/user_id`, month).
    pub fn blocks(&self) -> StoreResult<Vec<(String, String)>> {
        self.0
            .t
            .bandwidth_blocks
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// Adds a batch of days of site traffic (keys from `traffic_key`).
    pub fn add_traffic(&self, batch: &BTreeMap<String, Counts>) -> StoreResult<()> {
        for (key, counts) in batch {
            self.0
                .t
                .site_usage
                .update_and_fetch(key.as_bytes(), |old| {
                    let mut c: Counts = old.and_then(|raw| decode(raw).ok()).unwrap_or_default();
                    c.requests += counts.requests;
                    c.bytes_sent += counts.bytes_sent;
                    Some(encode(&c))
                })?;
        }
        Ok(())
    }

    /// Every site of the reseller (or of one user), with its usage in `month` (`YYYY-MM`).
    pub fn month(
        &self,
        reseller_id: &str,
        month: &str,
        user_id: Option<&str>,
    ) -> StoreResult<Vec<Row>> {
        let t = &self.0.t;
        let owner_prefix = match user_id {
            Some(u) => format!("{reseller_id}/{u}/"),
            None => format!("{reseller_id}/"),
        };
        let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
        for key in t.sites_by_owner.scan_prefix(owner_prefix.as_bytes()).keys() {
            let key = key?;
            let text = String::from_utf8_lossy(&key).into_owned();
            let mut parts = text.splitn(3, '/');
            let (Some(_), Some(user), Some(site_id)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let site_name = self
                .0
                .sites()
                .get(site_id)?
                .map(|s| s.name.as_str().to_string())
                .unwrap_or_default();
            let counter = |key: String| -> StoreResult<u64> {
                Ok(super::count_of(t.counters.get(key.as_bytes())?).max(0) as u64)
            };
            rows.insert(
                (user.to_string(), site_id.to_string()),
                Row {
                    user_id: user.to_string(),
                    site_id: site_id.to_string(),
                    site_name,
                    requests: 0,
                    bytes_sent: 0,
                    submissions: counter(submissions_key(site_id, month))?,
                    deploys: counter(deploys_key(site_id, month))?,
                    storage_bytes: self.0.storage().site_bytes(site_id)?,
                    user_storage_bytes: 0,
                    build_seconds: counter(build_seconds_key(site_id, month))?,
                    daily: Vec::new(),
                },
            );
        }
        let prefix = match user_id {
            Some(u) => format!("{reseller_id}/{month}/{u}/"),
            None => format!("{reseller_id}/{month}/"),
        };
        for item in t.site_usage.scan_prefix(prefix.as_bytes()) {
            let (key, raw) = item?;
            let text = String::from_utf8_lossy(&key).into_owned();
            let rest = &text[format!("{reseller_id}/{month}/").len()..];
            let mut parts = rest.splitn(3, '/');
            let (Some(user), Some(site_id), Some(date)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            // A deleted site's traffic stays billable: it keeps its row.
            let row = rows
                .entry((user.to_string(), site_id.to_string()))
                .or_insert_with(|| Row {
                    user_id: user.to_string(),
                    site_id: site_id.to_string(),
                    site_name: String::new(),
                    requests: 0,
                    bytes_sent: 0,
                    submissions: 0,
                    deploys: 0,
                    storage_bytes: 0,
                    user_storage_bytes: 0,
                    build_seconds: 0,
                    daily: Vec::new(),
                });
            let c: Counts = decode(&raw)?;
            row.requests += c.requests;
            row.bytes_sent += c.bytes_sent;
            row.daily.push(Day {
                date: date.to_string(),
                requests: c.requests,
                bytes_sent: c.bytes_sent,
            });
        }
        let mut per_user: BTreeMap<String, u64> = BTreeMap::new();
        for row in rows.values_mut() {
            if !per_user.contains_key(&row.user_id) {
                let bytes = self.0.storage().user_bytes(&row.user_id)?;
                per_user.insert(row.user_id.clone(), bytes);
            }
            row.user_storage_bytes = per_user[&row.user_id];
        }
        Ok(rows.into_values().collect())
    }
}
