//! Reseller key permissions: `*` or a list of `resource:action` grants.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "*")]
    All,
    #[serde(rename = "users:read")]
    UsersRead,
    #[serde(rename = "users:write")]
    UsersWrite,
    #[serde(rename = "sites:read")]
    SitesRead,
    #[serde(rename = "sites:write")]
    SitesWrite,
    #[serde(rename = "domains:read")]
    DomainsRead,
    #[serde(rename = "domains:write")]
    DomainsWrite,
    #[serde(rename = "keys:manage")]
    KeysManage,
    #[serde(rename = "settings:write")]
    SettingsWrite,
    #[serde(rename = "submissions:read")]
    SubmissionsRead,
    #[serde(rename = "billing:write")]
    BillingWrite,
}

impl Permission {
    pub const fn name(self) -> &'static str {
        match self {
            Permission::All => "*",
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::SitesRead => "sites:read",
            Permission::SitesWrite => "sites:write",
            Permission::DomainsRead => "domains:read",
            Permission::DomainsWrite => "domains:write",
            Permission::KeysManage => "keys:manage",
            Permission::SettingsWrite => "settings:write",
            Permission::SubmissionsRead => "submissions:read",
            Permission::BillingWrite => "billing:write",
        }
    }
}

/// A non-empty, de-duplicated permission set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Permission>", into = "Vec<Permission>")]
pub struct Permissions(Vec<Permission>);

impl Permissions {
    pub fn all() -> Self {
        Permissions(vec![Permission::All])
    }

    /// True if this set grants `wanted`. A `:write` grant implies the matching `:read`.
    pub fn allows(&self, wanted: Permission) -> bool {
        use Permission::*;
        self.0.iter().any(|p| {
            *p == All
                || *p == wanted
                || matches!(
                    (p, wanted),
                    (UsersWrite, UsersRead) | (SitesWrite, SitesRead) | (DomainsWrite, DomainsRead)
                )
        })
    }
}

impl Permissions {
    /// The grants of `other` this set does not cover (a key may not mint a wider one).
    pub fn missing_from(&self, other: &Permissions) -> Vec<&'static str> {
        other
            .0
            .iter()
            .filter(|p| !self.allows(**p))
            .map(|p| p.name())
            .collect()
    }
}

impl TryFrom<Vec<Permission>> for Permissions {
    type Error = String;
    fn try_from(mut v: Vec<Permission>) -> Result<Self, String> {
        if v.is_empty() {
            return Err("permissions must not be empty; use [\"*\"] for full access".into());
        }
        v.sort_by_key(|p| p.name());
        v.dedup();
        Ok(Permissions(v))
    }
}

impl From<Permissions> for Vec<Permission> {
    fn from(p: Permissions) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_checks_grants() {
        let p: Permissions = serde_json::from_str(r#"["users:write","keys:manage"]"#).unwrap();
        assert!(p.allows(Permission::UsersRead));
        assert!(p.allows(Permission::KeysManage));
        assert!(!p.allows(Permission::SitesRead));
        assert!(Permissions::all().allows(Permission::BillingWrite));
        assert!(serde_json::from_str::<Permissions>(r#"["users:delete"]"#).is_err());
        assert!(serde_json::from_str::<Permissions>("[]").is_err());
        assert_eq!(p.missing_from(&Permissions::all()), ["*"]);
        let read: Permissions = serde_json::from_str(r#"["users:read"]"#).unwrap();
        assert!(p.missing_from(&read).is_empty());
    }
}
