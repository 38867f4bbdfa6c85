//! Access tokens of client users: lookup by the secret's hash, and revocation. Issuing them is
//! the issuer's job (`issuer.rs`).

use super::users::*;
use super::{abort, decode};
use crate::error::{ApiError, ApiResult};
use sled::Transactional;

impl Users<'_> {
    pub fn token_by_hash(&self, hash: &[u8; 32]) -> ApiResult<Option<AccessToken>> {
        match self.0.t.token_by_hash.get(&hash[..])? {
            Some(id) => super::get(&self.0.t.tokens, &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Revokes a token of this reseller's users; anyone else's token is "not found".
    pub fn revoke_token(&self, reseller_id: &str, id: &str) -> ApiResult<()> {
        let t = &self.0.t;
        (
            &t.tokens,
            &t.token_by_hash,
            &t.tokens_by_user,
            &t.users_by_reseller,
            &t.users,
            &t.counters,
        )
            .transaction(|(tk, by_hash, by_user, by_reseller, u, counters)| {
                let Some(raw) = tk.get(id.as_bytes())? else {
                    return abort(ApiError::NotFound("access token"));
                };
                let token: AccessToken = decode(&raw).or_else(abort)?;
                if token.reseller_id != reseller_id {
                    return abort(ApiError::NotFound("access token"));
                }
                tk.remove(id.as_bytes())?;
                by_hash.remove(&token.hash[..])?;
                by_user.remove(format!("{}/{}", token.user_id, token.id).as_bytes())?;
                if let Some((mut entry, legacy)) =
                    load_entry(by_reseller, u, counters, reseller_id, &token.user_id)?
                {
                    entry.tokens = entry.tokens.saturating_sub(1);
                    store_entry(by_reseller, u, counters, &entry, legacy)?;
                }
                Ok(())
            })?;
        self.0.credentials_changed();
        Ok(())
    }
}
