//! Who is calling: credential parsing (`Bearer` / `Basic base64(KEY_ID:KEY)`), lookup, expiry,
//! suspension and IP allowlists, producing a `Principal` that handlers ask for permissions.

pub mod cache;
pub mod guard;
pub mod operator;

use crate::error::{ApiError, ApiResult};
use crate::model::secret::{
    hashes_equal, Secret, KEY_PREFIX, OPERATOR_PREFIX, TOKEN_PREFIX, WP_PREFIX,
};
use crate::model::Timestamp;
use crate::ratelimit::RateLimits;
use crate::store::keys::ApiKey;
use crate::store::resellers::Reseller;
use crate::store::users::{AccessToken, User};
use crate::store::Store;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use base64::Engine;
use cache::CachedCredential;
use std::future::{ready, Ready};
use std::sync::Arc;

/// What authentication reads: the store, the operator's token, the credential cache and the
/// failed-login limiter. Registered as its own app data, so this layer needs nothing above it.
pub struct Authenticator {
    pub store: Store,
    pub operator: operator::OperatorAuth,
    pub credentials: cache::CredentialCache,
    pub limits: web::Data<RateLimits>,
}

/// The authenticated caller.
#[derive(Clone)]
pub enum Principal {
    Operator,
    Reseller {
        reseller: Reseller,
        key: ApiKey,
    },
    User {
        reseller: Reseller,
        user: User,
        /// The access token the call came with.
        token: AccessToken,
    },
    /// A WordPress plugin key: it may read its one domain and nothing else.
    Plugin {
        domain: crate::store::domains::Domain,
    },
}

/// What a request may see: a whole reseller account, or one user's part of it.
#[derive(Clone)]
pub struct Tenant {
    pub reseller: Reseller,
    pub user: Option<User>,
}

impl Tenant {
    /// True if the tenant may see a record owned by (reseller, user).
    pub fn owns(&self, reseller_id: &str, user_id: &str) -> bool {
        self.reseller.id == reseller_id && self.user.as_ref().is_none_or(|u| u.id == user_id)
    }
}

impl Principal {
    /// Who is asking, as a string a list's cursors are bound to.
    pub fn scope(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Reseller { reseller, .. } => reseller.id.clone(),
            Principal::User { reseller, user, .. } => format!("{}/{}", reseller.id, user.id),
            Principal::Plugin { domain } => format!("plugin/{}", domain.id),
        }
    }
}

enum Credential {
    Bearer(Secret),
    Basic { key_id: String, key: Secret },
}

fn parse_credential(req: &HttpRequest) -> ApiResult<Credential> {
    let missing = ApiError::Unauthorized("missing credentials: send Authorization: Bearer <token>");
    let header = req.headers().get("authorization").ok_or(missing)?;
    let header = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or(ApiError::Unauthorized("malformed Authorization header"))?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credential::Bearer(Secret::new(value.to_string())));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let bad = ApiError::Unauthorized("bad Basic credentials: expected base64(KEY_ID:KEY)");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| bad)?;
        let text = String::from_utf8(decoded).map_err(|_| {
            ApiError::Unauthorized("bad Basic credentials: expected base64(KEY_ID:KEY)")
        })?;
        let (id, key) = text.split_once(':').ok_or(ApiError::Unauthorized(
            "bad Basic credentials: expected base64(KEY_ID:KEY)",
        ))?;
        return Ok(Credential::Basic {
            key_id: id.trim().to_string(),
            key: Secret::new(key.trim().to_string()),
        });
    }
    Err(ApiError::Unauthorized(
        "unsupported Authorization scheme: use Bearer or Basic",
    ))
}

const INVALID: ApiError = ApiError::Unauthorized("invalid, revoked or expired credentials");
/// A secret whose checksum does not match was never issued: it was mistyped or cut short. (It
/// says nothing about any real secret, so it may say so.)
const MISTYPED: ApiError = ApiError::Unauthorized(
    "the credential's checksum does not match: it was mistyped or cut short; copy it again",
);

fn authenticate(req: &HttpRequest, state: &Authenticator) -> ApiResult<Principal> {
    let now = Timestamp::now();
    let store = &state.store;
    let (key, reseller, cached_as) = match parse_credential(req)? {
        Credential::Bearer(s) if s.expose().starts_with(OPERATOR_PREFIX) => {
            return if !s.is_well_formed(OPERATOR_PREFIX) {
                Err(MISTYPED)
            } else if state.operator.verify(&s) {
                Ok(Principal::Operator)
            } else {
                Err(INVALID)
            };
        }
        Credential::Bearer(s) if s.expose().starts_with(KEY_PREFIX) => {
            resolve_key(state, &s, None)?
        }
        Credential::Basic { key_id, key } => resolve_key(state, &key, Some(&key_id))?,
        Credential::Bearer(s) if s.expose().starts_with(WP_PREFIX) => {
            if !s.is_well_formed(WP_PREFIX) {
                return Err(MISTYPED);
            }
            let domain = store.domains().by_wp_hash(&s.hash())?.ok_or(INVALID)?;
            let reseller = store
                .resellers()
                .get(&domain.reseller_id)
                .map_err(|_| INVALID)?;
            if reseller.suspended {
                return Err(ApiError::Suspended);
            }
            return Ok(Principal::Plugin { domain });
        }
        Credential::Bearer(s) => {
            let hash = s.hash();
            let generation = store.credentials_generation();
            // A cache hit is a secret that was found before: the format check (a checksum that
            // rejects typos without a store lookup) is only needed on the way to the store.
            let resolved = state.credentials.resolve(hash, generation, || {
                if !s.is_well_formed(TOKEN_PREFIX) {
                    let ours = s.expose().starts_with(TOKEN_PREFIX);
                    return Err(if ours { MISTYPED } else { INVALID });
                }
                let token = store.users().token_by_hash(&hash)?.ok_or(INVALID)?;
                let reseller = store
                    .resellers()
                    .get(&token.reseller_id)
                    .map_err(|_| INVALID)?;
                let user = store
                    .users()
                    .get(&reseller.id, &token.user_id)
                    .map_err(|_| INVALID)?;
                let suspended = store.suspensions().get(&reseller.id, &user.id)?.is_some();
                Ok(CachedCredential::Token(Arc::new((
                    token, user, reseller, suspended,
                ))))
            })?;
            let CachedCredential::Token(found) = resolved else {
                return Err(INVALID);
            };
            let (token, user, reseller) = (found.0.clone(), found.1.clone(), found.2.clone());
            if token.is_expired(now) {
                return Err(INVALID);
            }
            check_reseller(req, &reseller)?;
            if found.3 {
                return Err(ApiError::UserSuspended);
            }
            if store.users().touch_token(&token, now)? {
                // As for keys: the cached copy learns the new time, or every call would write.
                let mut fresh = token.clone();
                fresh.last_used_at = Some(now);
                let entry = CachedCredential::Token(Arc::new((
                    fresh,
                    user.clone(),
                    reseller.clone(),
                    false,
                )));
                state.credentials.put(hash, generation, entry);
            }
            return Ok(Principal::User {
                reseller,
                user,
                token,
            });
        }
    };
    if key.is_expired(now) {
        return Err(INVALID);
    }
    check_reseller(req, &reseller)?;
    if let Some(ip) = crate::http::known_client_ip(req) {
        if !key.allowed_ips.allows(ip) {
            return Err(ApiError::IpNotAllowed(ip));
        }
    }
    if store.keys().touch(&key, now)? {
        // The cached copy learns the new time too, or every later call would write it again.
        let mut fresh = key.clone();
        fresh.last_used_at = Some(now);
        let (hash, generation) = cached_as;
        let resolved = CachedCredential::Key(Arc::new((fresh, reseller.clone())));
        state.credentials.put(hash, generation, resolved);
    }
    Ok(Principal::Reseller { reseller, key })
}

/// The API key whose secret is `secret` (and, for Basic, whose id is `key_id`), with its
/// reseller: from the credential cache, or read and then cached. Also returns the cache key and
/// the generation the entry belongs to.
fn resolve_key(
    state: &Authenticator,
    secret: &Secret,
    key_id: Option<&str>,
) -> ApiResult<(ApiKey, Reseller, ([u8; 32], u64))> {
    let store = &state.store;
    let hash = secret.hash();
    let generation = store.credentials_generation();
    let resolved = state.credentials.resolve(hash, generation, || {
        if !secret.is_well_formed(KEY_PREFIX) {
            return Err(MISTYPED);
        }
        let key = match key_id {
            // Basic names the key: compare its stored hash in constant time.
            Some(id) => {
                let key = store.keys().get(id)?.ok_or(INVALID)?;
                if !hashes_equal(&key.hash, &hash) {
                    return Err(INVALID);
                }
                key
            }
            None => store.keys().by_hash(&hash)?.ok_or(INVALID)?,
        };
        let reseller = store
            .resellers()
            .get(&key.reseller_id)
            .map_err(|_| INVALID)?;
        Ok(CachedCredential::Key(Arc::new((key, reseller))))
    })?;
    let CachedCredential::Key(found) = resolved else {
        return Err(INVALID);
    };
    // A cached key found by its secret must still be the key Basic names.
    if key_id.is_some_and(|id| id != found.0.id) {
        return Err(INVALID);
    }
    Ok((found.0.clone(), found.1.clone(), (hash, generation)))
}

fn check_reseller(req: &HttpRequest, reseller: &Reseller) -> ApiResult<()> {
    if reseller.suspended {
        return Err(ApiError::Suspended);
    }
    if let Some(ip) = crate::http::known_client_ip(req) {
        if !reseller.allowed_ips.allows(ip) {
            return Err(ApiError::IpNotAllowed(ip));
        }
    }
    Ok(())
}

/// Who made a request, as the audit log records it (never a secret).
#[derive(Clone, Debug)]
pub struct Actor {
    pub kind: &'static str,
    pub id: String,
    pub reseller_id: Option<String>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Operator => Actor {
                kind: "operator",
                id: "operator".into(),
                reseller_id: None,
            },
            Principal::Reseller { reseller, key } => Actor {
                kind: "api_key",
                id: key.id.clone(),
                reseller_id: Some(reseller.id.clone()),
            },
            Principal::User { reseller, user, .. } => Actor {
                kind: "user",
                id: user.id.clone(),
                reseller_id: Some(reseller.id.clone()),
            },
            Principal::Plugin { domain } => Actor {
                kind: "wordpress_plugin",
                id: domain.id.clone(),
                reseller_id: Some(domain.reseller_id.clone()),
            },
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<ApiResult<Principal>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Authenticated once per request: the write gate asks first, the handler gets its answer.
        if let Some(Authenticated(who)) = req.extensions().get::<Authenticated>() {
            return ready(Ok(who.clone()));
        }
        // A valid credential is served whatever others sent from its address (a shared NAT, an
        // unconfigured proxy): only failures are counted, and only an address over the limit
        // gets 429 for its next failures instead of 401.
        let result = match req.app_data::<web::Data<Authenticator>>() {
            Some(state) => authenticate(req, state).map_err(|e| {
                if !matches!(e, ApiError::Unauthorized(_)) {
                    return e;
                }
                let ip = crate::http::known_client_ip(req);
                match state.limits.auth_failed(ip) {
                    Some(wait) => ApiError::RateLimited(wait),
                    None => e,
                }
            }),
            None => Err(ApiError::internal("application state missing")),
        };
        if let Ok(who) = &result {
            let mut extensions = req.extensions_mut();
            extensions.insert(who.actor());
            extensions.insert(Authenticated(who.clone()));
        }
        ready(result)
    }
}

/// The caller a request was authenticated as (kept in its extensions, so a second extraction
/// does not look the credential up again).
struct Authenticated(Principal);
