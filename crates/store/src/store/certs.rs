//! ACME certificates, one record per custom domain, plus the ACME account credentials.

use super::{decode, encode, get, Store};
use crate::error::StoreResult;
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
        self.0
            .t
            .certificates
            .insert(rec.domain.as_bytes(), encode(rec))?;
        Ok(())
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
