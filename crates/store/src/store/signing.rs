//! Reseller signing keys (EdDSA and RS256): at most 6 per reseller, all in one record per
//! reseller, so adding, activating and deleting are each one atomic read-modify-write. The
//! private key (PKCS#8) never leaves the server: `Debug` hides it and no view carries it.
//! One key per algorithm is active: the EdDSA one signs webhooks (`v1a`), the RS256 one signs
//! mail (DKIM). Keys stay in the reseller's JWKS until deleted, so rotation never breaks a
//! verifier.

use super::{abort, decode, encode, Store};
use crate::error::{StoreError, StoreResult};
use crate::model::Timestamp;
use serde::{Deserialize, Serialize};

pub const MAX_SIGNING_KEYS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alg {
    EdDSA,
    RS256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
        }
    }
}

/// A private key in PKCS#8 DER. Never printed.
#[derive(Clone, Serialize, Deserialize)]
pub struct PrivateKey(pub Vec<u8>);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SigningKey {
    pub id: String,
    pub reseller_id: String,
    /// The JWK thumbprint (RFC 7638) of the public key.
    pub kid: String,
    pub alg: Alg,
    /// The public key as a JWK, JSON text (with `kid`, `alg` and `use`).
    pub public_jwk: String,
    pub private: PrivateKey,
    pub created_at: Timestamp,
    pub active: bool,
}

pub struct SigningKeys<'a>(&'a Store);

impl Store {
    pub fn signing_keys(&self) -> SigningKeys<'_> {
        SigningKeys(self)
    }
}

impl SigningKeys<'_> {
    /// The reseller's keys, oldest first.
    pub fn list(&self, reseller_id: &str) -> StoreResult<Vec<SigningKey>> {
        Ok(super::get(&self.0.t.signing_keys, reseller_id)?.unwrap_or_default())
    }

    /// The active key of `alg`, if any.
    pub fn active(&self, reseller_id: &str, alg: Alg) -> StoreResult<Option<SigningKey>> {
        Ok(self
            .list(reseller_id)?
            .into_iter()
            .find(|k| k.alg == alg && k.active))
    }

    /// Adds a key unless the reseller has 6; it is active if no other key of its algorithm is.
    pub fn add(&self, key: SigningKey) -> StoreResult<SigningKey> {
        let reseller_id = key.reseller_id.clone();
        self.change(&reseller_id, |keys| {
            if keys.len() >= MAX_SIGNING_KEYS {
                return Err(StoreError::Conflict(
                    crate::error::Conflict::SigningKeyLimitReached,
                    format!(
                        "a reseller has at most {MAX_SIGNING_KEYS} signing keys; delete one first"
                    ),
                ));
            }
            let mut key = key.clone();
            key.active = !keys.iter().any(|k| k.alg == key.alg && k.active);
            keys.push(key.clone());
            Ok(key)
        })
    }

    /// Makes a key the active one of its algorithm; the one it replaces stays in the JWKS.
    pub fn activate(&self, reseller_id: &str, id: &str) -> StoreResult<SigningKey> {
        self.change(reseller_id, |keys| {
            let alg = keys
                .iter()
                .find(|k| k.id == id)
                .map(|k| k.alg)
                .ok_or(StoreError::NotFound("signing key"))?;
            for k in keys.iter_mut().filter(|k| k.alg == alg) {
                k.active = k.id == id;
            }
            keys.iter()
                .find(|k| k.id == id)
                .cloned()
                .ok_or(StoreError::NotFound("signing key"))
        })
    }

    /// Deletes a key: it leaves the JWKS at once.
    pub fn delete(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        self.change(reseller_id, |keys| {
            let before = keys.len();
            keys.retain(|k| k.id != id);
            if keys.len() == before {
                return Err(StoreError::NotFound("signing key"));
            }
            Ok(())
        })
    }

    /// Forgets every key of a deleted reseller.
    pub fn delete_all(&self, reseller_id: &str) -> StoreResult<()> {
        self.0.t.signing_keys.remove(reseller_id.as_bytes())?;
        Ok(())
    }

    /// Runs `f` on the reseller's keys and writes them back, in one transaction.
    fn change<T>(
        &self,
        reseller_id: &str,
        f: impl Fn(&mut Vec<SigningKey>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        Ok(self.0.t.signing_keys.transaction(|tree| {
            let mut keys: Vec<SigningKey> = match tree.get(reseller_id.as_bytes())? {
                Some(raw) => decode(&raw).or_else(abort)?,
                None => Vec::new(),
            };
            let out = f(&mut keys).or_else(abort)?;
            if keys.is_empty() {
                tree.remove(reseller_id.as_bytes())?;
            } else {
                tree.insert(reseller_id.as_bytes(), encode(&keys))?;
            }
            Ok(out)
        })?)
    }
}
