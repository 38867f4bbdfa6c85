//! ACME certificates, one record per custom domain, plus the ACME account credentials.

use super::events::{emit, Subject};
use super::{decode, encode, get, Store};
use crate::error::StoreResult;
use crate::kv::Transactional;
use crate::model::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    Pending,
    Issued,
    Failed,
    /// Given by the operator (e.g. a wildcard for a preview domain); never renewed by ACME.
    Uploaded,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertRecord {
    pub domain: String,
    pub site_id: String,
    pub reseller_id: String,
    pub state: CertState,
    pub error: Option<String>,
    pub cert_pem: String,
    pub key_pem: String,
    pub issuer: Option<String>,
    pub not_after: Option<Timestamp>,
    pub renewals: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub struct Certs<'a>(&'a Store);

impl Store {
    pub fn certs(&self) -> Certs<'_> {
        Certs(self)
    }
}

impl Certs<'_> {
    pub fn get(&self, domain: &str) -> StoreResult<Option<CertRecord>> {
        get(&self.0.t.certificates, domain)
    }

    pub fn put(&self, rec: &CertRecord) -> StoreResult<()> {
        self.put_telling(rec, None, rec.updated_at)
    }

    /// Writes the record and, in the same transaction, the event `kind` (`certificate.issued`
    /// or `certificate.failed`) for its reseller's webhooks.
    pub fn put_telling(
        &self,
        rec: &CertRecord,
        kind: Option<&'static str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        (&t.certificates, &t.events).transaction(|(certs, events)| {
            certs.insert(rec.domain.as_bytes(), encode(rec))?;
            if let Some(kind) = kind {
                emit(events, subs, &rec.reseller_id, kind, now, || subject(rec))?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Tells the reseller once per certificate (per `not_after`) that it expires soon because
    /// renewing it failed. Returns true if this call told it.
    pub fn note_expiring(&self, rec: &CertRecord, now: Timestamp) -> StoreResult<bool> {
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        let key = format!("cert_expiring/{}", rec.domain);
        let not_after = rec.not_after.map(|t| t.0).unwrap_or_default();
        Ok((&t.counters, &t.events).transaction(|(counters, events)| {
            if super::count_of(counters.get(key.as_bytes())?) == not_after {
                return Ok(false);
            }
            counters.insert(key.as_bytes(), &not_after.to_be_bytes())?;
            emit(
                events,
                subs,
                &rec.reseller_id,
                "certificate.expiring",
                now,
                || subject(rec),
            )?;
            Ok(true)
        })?)
    }

    pub fn all(&self) -> StoreResult<Vec<CertRecord>> {
        self.0
            .t
            .certificates
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    pub fn delete(&self, domain: &str) -> StoreResult<()> {
        self.0.t.certificates.remove(domain.as_bytes())?;
        Ok(())
    }

    /// Records an HTTP-01 challenge under way: `token` answers `key_auth` for `domain`.
    pub fn put_challenge(&self, token: &str, domain: &str, key_auth: &str) -> StoreResult<()> {
        let value = encode(&(domain.to_string(), key_auth.to_string()));
        self.0.t.acme_challenges.insert(token.as_bytes(), value)?;
        Ok(())
    }

    /// The domain and key authorization of a challenge under way.
    pub fn challenge(&self, token: &str) -> StoreResult<Option<(String, String)>> {
        get(&self.0.t.acme_challenges, token)
    }

    /// True if any challenge is under way (on this node or another).
    pub fn any_challenge(&self) -> StoreResult<bool> {
        Ok(self.0.t.acme_challenges.first()?.is_some())
    }

    pub fn remove_challenge(&self, token: &str) -> StoreResult<()> {
        self.0.t.acme_challenges.remove(token.as_bytes())?;
        Ok(())
    }

    /// The stored ACME account credentials (JSON) for a directory URL.
    pub fn account(&self, directory: &str) -> StoreResult<Option<String>> {
        get(&self.0.t.acme_accounts, directory)
    }

    pub fn put_account(&self, directory: &str, credentials_json: &str) -> StoreResult<()> {
        self.0
            .t
            .acme_accounts
            .insert(directory.as_bytes(), encode(&credentials_json.to_string()))?;
        Ok(())
    }
}

fn subject(rec: &CertRecord) -> Subject {
    Subject::Certificate {
        domain: rec.domain.clone(),
        site_id: rec.site_id.clone(),
        expires_at: rec.not_after,
        error: rec.error.clone(),
    }
}
