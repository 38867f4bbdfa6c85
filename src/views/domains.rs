//! A client domain with its verification record and traffic metrics.

use super::Views;
use crate::model::{DomainName, Email, Timestamp};
use crate::store::domains::{Domain, DomainStatus};
use resellerd_store::error::StoreResult;
use serde::Serialize;

/// A domain as the API shows it, with its traffic metrics.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct DomainView {
    pub id: String,
    domain: DomainName,
    user_id: String,
    email: Email,
    site_id: Option<String>,
    /// pending, verified or failed
    #[schema(value_type = String)]
    verification_status: DomainStatus,
    verification: Verification,
    created_at: Timestamp,
    verified_at: Option<Timestamp>,
    last_checked_at: Option<Timestamp>,
    /// Why the last check did not verify it, and what to do (`null` once verified or before
    /// the first check).
    verification_error: Option<String>,
    metrics: DomainMetrics,
}

/// The TXT record that proves ownership.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Always `TXT`
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    value: String,
}

/// Requests served for a domain.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct DomainMetrics {
    requests: u64,
    bytes_sent: u64,
    last_request_at: Option<Timestamp>,
    daily: Vec<DailyCounts>,
}

#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct DailyCounts {
    /// YYYY-MM-DD
    date: String,
    requests: u64,
    bytes_sent: u64,
}

pub fn metrics_view(t: crate::store::traffic::Traffic) -> DomainMetrics {
    DomainMetrics {
        requests: t.requests,
        bytes_sent: t.bytes_sent,
        last_request_at: t.last_request_at,
        daily: t
            .daily
            .into_iter()
            .map(|(date, c)| DailyCounts {
                date,
                requests: c.requests,
                bytes_sent: c.bytes_sent,
            })
            .collect(),
    }
}

pub fn domain_view(views: &Views, d: &Domain) -> StoreResult<DomainView> {
    let traffic = views.store.traffic().get(&d.id)?;
    Ok(DomainView {
        id: d.id.clone(),
        domain: d.name.clone(),
        user_id: d.user_id.clone(),
        email: d.email.clone(),
        site_id: d.site_id.clone(),
        verification_status: d.status,
        verification: Verification {
            kind: "TXT",
            name: d.txt_name(),
            value: d.txt_value(),
        },
        created_at: d.created_at,
        verified_at: d.verified_at,
        last_checked_at: d.last_checked_at,
        verification_error: views.store.domains().verification_error(&d.id)?,
        metrics: metrics_view(traffic),
    })
}
