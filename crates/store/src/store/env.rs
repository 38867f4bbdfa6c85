//! Environment variables of builds (Netlify's `envVar`), for a user's account (every site of
//! it) or one site. Each has values per deploy context; a secret's values are write-only.
//! Stored under "reseller_id/user_id/scope/KEY", the scope a site id or `*` for the account.

use super::{decode, encode, get, Store};
use crate::error::{StoreError, StoreResult};
use crate::model::Timestamp;
use serde::{Deserialize, Serialize};

/// Variables per account and per site.
pub const MAX_VARS: usize = 100;
pub const MAX_VALUE: usize = 5000;
pub const CONTEXTS: &[&str] = &[
    "all",
    "dev",
    "branch-deploy",
    "deploy-preview",
    "production",
    "branch",
];
const ACCOUNT: &str = "*";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnvValue {
    pub id: String,
    pub value: String,
    pub context: String,
    pub context_parameter: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvVar {
    pub key: String,
    pub site_id: Option<String>,
    pub scopes: Vec<String>,
    pub values: Vec<EnvValue>,
    pub is_secret: bool,
    pub updated_at: Timestamp,
}

pub struct Env<'a>(&'a Store);

impl Store {
    pub fn env(&self) -> Env<'_> {
        Env(self)
    }
}

fn prefix(reseller_id: &str, user_id: &str, site_id: Option<&str>) -> String {
    format!("{reseller_id}/{user_id}/{}/", site_id.unwrap_or(ACCOUNT))
}

/// A variable name: a letter or `_`, then letters, digits and `_`, at most 255.
pub fn valid_key(key: &str) -> StoreResult<()> {
    let ok = !key.is_empty()
        && key.len() <= 255
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "{key:?} is not a variable name: letters, digits and _, not starting with a digit"
        )))
    }
}

impl Env<'_> {
    pub fn list(
        &self,
        reseller_id: &str,
        user_id: &str,
        site_id: Option<&str>,
    ) -> StoreResult<Vec<EnvVar>> {
        self.0
            .t
            .env_vars
            .scan_prefix(prefix(reseller_id, user_id, site_id).as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    pub fn get(
        &self,
        reseller_id: &str,
        user_id: &str,
        site_id: Option<&str>,
        key: &str,
    ) -> StoreResult<Option<EnvVar>> {
        get(
            &self.0.t.env_vars,
            &format!("{}{key}", prefix(reseller_id, user_id, site_id)),
        )
    }

    /// Creates or replaces a variable (validated: its key, contexts and value sizes).
    pub fn put(&self, reseller_id: &str, user_id: &str, var: &EnvVar) -> StoreResult<()> {
        valid_key(&var.key)?;
        for v in &var.values {
            if !CONTEXTS.contains(&v.context.as_str()) {
                return Err(StoreError::invalid(format!(
                    "{:?} is not a deploy context: one of {}",
                    v.context,
                    CONTEXTS.join(", ")
                )));
            }
            if v.value.len() > MAX_VALUE {
                return Err(StoreError::invalid(format!(
                    "the value of {} is longer than {MAX_VALUE} bytes",
                    var.key
                )));
            }
        }
        let _counting = self.0.quota_guard()?;
        let site = var.site_id.as_deref();
        if self.get(reseller_id, user_id, site, &var.key)?.is_none()
            && self.list(reseller_id, user_id, site)?.len() >= MAX_VARS
        {
            return Err(StoreError::Conflict(
                crate::error::Conflict::BuildLimitReached,
                format!("at most {MAX_VARS} environment variables per account and per site"),
            ));
        }
        self.0.t.env_vars.insert(
            format!("{}{}", prefix(reseller_id, user_id, site), var.key).as_bytes(),
            encode(var),
        )?;
        Ok(())
    }

    pub fn delete(
        &self,
        reseller_id: &str,
        user_id: &str,
        site_id: Option<&str>,
        key: &str,
    ) -> StoreResult<()> {
        self.0
            .t
            .env_vars
            .remove(format!("{}{key}", prefix(reseller_id, user_id, site_id)).as_bytes())?;
        Ok(())
    }

    /// Forgets a deleted site's variables.
    pub fn delete_all_of_site(
        &self,
        reseller_id: &str,
        user_id: &str,
        site_id: &str,
    ) -> StoreResult<()> {
        for var in self.list(reseller_id, user_id, Some(site_id))? {
            self.delete(reseller_id, user_id, Some(site_id), &var.key)?;
        }
        Ok(())
    }

    /// What a build of `site_id` in `context` gets: (key, value, is_secret), the site's
    /// variables over the account's, each with its value for the context (else `all`'s).
    pub fn for_build(
        &self,
        reseller_id: &str,
        user_id: &str,
        site_id: &str,
        context: &str,
    ) -> StoreResult<Vec<(String, String, bool)>> {
        let mut out: std::collections::BTreeMap<String, (String, bool)> = Default::default();
        for scope in [None, Some(site_id)] {
            for var in self.list(reseller_id, user_id, scope)? {
                if !var.scopes.is_empty() && !var.scopes.iter().any(|s| s == "builds") {
                    continue;
                }
                let value = var
                    .values
                    .iter()
                    .find(|v| v.context == context)
                    .or_else(|| var.values.iter().find(|v| v.context == "all"));
                if let Some(v) = value {
                    out.insert(var.key.clone(), (v.value.clone(), var.is_secret));
                }
            }
        }
        Ok(out.into_iter().map(|(k, (v, s))| (k, v, s)).collect())
    }
}
