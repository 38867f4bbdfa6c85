//! An API key as listed.

use crate::model::{IpAllowList, Permissions, Timestamp};
use crate::store::keys::ApiKey;
use serde::Serialize;

/// A key as listed: never the secret, only its masked form.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub masked: String,
    pub permissions: Permissions,
    pub allowed_ips: IpAllowList,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            masked: k.masked,
            permissions: k.permissions,
            allowed_ips: k.allowed_ips,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
        }
    }
}
