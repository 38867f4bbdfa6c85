//! The records the store keeps and its events carry (users, sites, deploys, domains,
//! submissions, charges, keys, mails), as data: each entity's module (`users`, `sites`, …)
//! holds the operations on its own and re-exports it. Defined here, below every entity module and
//! `events`, so an event can name any record without its module importing the others.

use crate::model::{DomainName, Email, IpAllowList, Permissions, SiteName, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub reseller_id: String,
    pub email: Email,
    pub uid: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PasswordHash {
    pub salt: [u8; 16],
    pub hash: [u8; 32],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Site {
    pub id: String,
    pub reseller_id: String,
    pub user_id: String,
    pub name: SiteName,
    pub custom_domain: Option<DomainName>,
    pub password: Option<PasswordHash>,
    pub published_deploy: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployState {
    New,
    Prepared,
    Ready,
    Error,
    /// A build from git is waiting for the runner.
    Enqueued,
    /// A build from git is running.
    Building,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deploy {
    pub id: String,
    pub site_id: String,
    pub reseller_id: String,
    pub user_id: String,
    pub state: DeployState,
    pub draft: bool,
    pub title: Option<String>,
    pub branch: Option<String>,
    pub file_count: usize,
    pub error_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub published_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    Pending,
    Verified,
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Domain {
    pub id: String,
    pub reseller_id: String,
    pub user_id: String,
    pub name: DomainName,
    pub email: Email,
    pub site_id: Option<String>,
    pub status: DomainStatus,
    /// The value after `resellerd-verification=` in the TXT record.
    pub token: String,
    pub wp_hash: [u8; 32],
    pub created_at: Timestamp,
    pub verified_at: Option<Timestamp>,
    pub last_checked_at: Option<Timestamp>,
    pub next_check_at: Timestamp,
    /// Checks that did not find the record, for the backoff.
    pub misses: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submission {
    pub id: String,
    pub number: u64,
    pub form_id: String,
    pub form_name: String,
    pub site_id: String,
    pub reseller_id: String,
    pub user_id: String,
    pub data: Vec<(String, String)>,
    pub site_url: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaidAction {
    SslCertificate,
    DomainRegistration,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Charge {
    pub id: String,
    pub payment_method_id: String,
    pub action: PaidAction,
    /// What was bought: a site id or a domain name.
    pub subject: String,
    pub amount_cents: u64,
    pub currency: String,
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub reseller_id: String,
    pub name: String,
    pub hash: [u8; 32],
    pub masked: String,
    pub permissions: Permissions,
    pub allowed_ips: IpAllowList,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailState {
    Pending,
    Sent,
    Failed,
}

/// A message waiting to go out (or gone): rendered and signed when it is made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mail {
    pub id: String,
    pub reseller_id: String,
    pub kind: String,
    pub from: String,
    pub to: String,
    /// The whole message, headers (with its DKIM-Signature) and body, CRLF line ends.
    pub message: Vec<u8>,
    pub created_at: Timestamp,
    pub state: MailState,
    pub next_attempt_at: Option<Timestamp>,
    pub attempt_count: u32,
    /// The newest errors, oldest first.
    pub errors: Vec<String>,
}
