//! The audit log: one entry per mutating API call (who, what, when, from where), readable by
//! the operator (all) and by each reseller (its own). Entries never contain secrets or bodies.

use super::{decode, encode, Store};
use crate::error::ApiResult;
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub at: Timestamp,
    pub actor_kind: String,
    pub actor_id: String,
    pub reseller_id: Option<String>,
    pub method: String,
    /// The route pattern, e.g. `/api/v1/keys/{id}`.
    pub route: String,
    pub path: String,
    pub status: u16,
    pub ip: Option<String>,
}

pub struct Audit<'a>(&'a Store);

impl Store {
    pub fn audit(&self) -> Audit<'_> {
        Audit(self)
    }
}

impl Audit<'_> {
    /// Appends an entry. Not flushed on its own: it rides on the next flush of the store.
    pub fn record(&self, mut entry: AuditEntry) -> ApiResult<()> {
        entry.id = new_id();
        let bytes = encode(&entry);
        self.0.t.audit.insert(entry.id.as_bytes(), bytes.clone())?;
        if let Some(r) = &entry.reseller_id {
            self.0
                .t
                .audit_by_reseller
                .insert(format!("{r}/{}", entry.id).as_bytes(), bytes)?;
        }
        Ok(())
    }

    /// The newest `limit` entries, of one reseller or of everyone.
    pub fn recent(&self, reseller_id: Option<&str>, limit: usize) -> ApiResult<Vec<AuditEntry>> {
        let iter = match reseller_id {
            Some(r) => self
                .0
                .t
                .audit_by_reseller
                .scan_prefix(format!("{r}/").as_bytes()),
            None => self.0.t.audit.iter(),
        };
        iter.rev().take(limit).map(|kv| decode(&kv?.1)).collect()
    }

    pub fn delete_reseller(&self, reseller_id: &str) -> ApiResult<()> {
        for key in self
            .0
            .t
            .audit_by_reseller
            .scan_prefix(format!("{reseller_id}/").as_bytes())
            .keys()
        {
            self.0.t.audit_by_reseller.remove(key?)?;
        }
        Ok(())
    }
}
