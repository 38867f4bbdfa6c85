//! Reseller accounts: created by the operator with their first API key in one transaction.

use super::codec::{decode_as, encode_as};
use super::keys::{ApiKey, NewKey};
use super::{abort, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::secret::Secret;
use crate::model::{new_id, DomainName, Email, IpAllowList, Permissions, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reseller {
    pub id: String,
    pub name: String,
    pub email: Email,
    pub preview_domain: Option<DomainName>,
    pub notification_email: Option<Email>,
    pub allowed_ips: IpAllowList,
    pub suspended: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Seconds a new access token lives when `POST /access_tokens` names no `expires_in`;
    /// `null`: tokens never expire.
    pub access_token_ttl: Option<u64>,
    /// Live access tokens a user may have; issuing one more revokes the oldest.
    pub max_tokens_per_user: u32,
    /// A preview domain the reseller asked for, not yet proven by DNS: `preview_domain` keeps
    /// serving until it is.
    #[schema(nullable)]
    pub preview_domain_pending: Option<PendingPreview>,
}

/// A preview domain waiting for its TXT record (`PATCH /reseller`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingPreview {
    pub domain: DomainName,
    /// The record to publish: `_resellerd.<domain>` TXT `resellerd-verification=…`.
    pub txt_record: TxtRecord,
    /// `pending`, or `failed` once the verification deadline passed without the record.
    #[schema(value_type = String)]
    pub status: super::domains::DomainStatus,
    pub requested_at: Timestamp,
    #[schema(nullable)]
    pub last_checked_at: Option<Timestamp>,
    /// What the last check found instead of the record, if it looked.
    #[schema(nullable)]
    pub verification_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TxtRecord {
    pub name: String,
    pub value: String,
}

impl Reseller {
    /// The preview domain and the one waiting for DNS (until its deadline fails it): both are
    /// this reseller's to claim.
    pub fn preview_names(&self) -> impl Iterator<Item = &DomainName> {
        let pending = self
            .preview_domain_pending
            .as_ref()
            .filter(|p| p.status == super::domains::DomainStatus::Pending)
            .map(|p| &p.domain);
        self.preview_domain.iter().chain(pending)
    }
}

impl PendingPreview {
    pub fn new(domain: DomainName, now: Timestamp) -> PendingPreview {
        let token = Secret::generate("").expose().to_string();
        PendingPreview {
            txt_record: TxtRecord {
                name: format!("_resellerd.{domain}"),
                value: format!("{}{token}", super::domains::TXT_PREFIX),
            },
            domain,
            status: super::domains::DomainStatus::Pending,
            requested_at: now,
            last_checked_at: None,
            verification_error: None,
        }
    }
}

/// The default `access_token_ttl`: 90 days.
pub const DEFAULT_TOKEN_TTL: u64 = 90 * 86_400;
/// The default `max_tokens_per_user`.
pub const DEFAULT_MAX_TOKENS: u32 = 100;
/// The most `max_tokens_per_user` may be.
pub const MAX_TOKENS_LIMIT: u32 = 1_000;
/// The longest a token may live: 10 years.
pub const MAX_TOKEN_TTL: u64 = 10 * 365 * 86_400;

/// The record's layout version (see `codec::encode_as`): 2 added the token settings, 3 the
/// pending preview domain.
const RECORD: u8 = 3;

/// A reseller as written before the token settings existed. Read as having the defaults, so
/// an upgraded instance stops growing tokens too.
#[derive(Deserialize)]
struct ResellerV1 {
    id: String,
    name: String,
    email: Email,
    preview_domain: Option<DomainName>,
    notification_email: Option<Email>,
    allowed_ips: IpAllowList,
    suspended: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// A reseller as written before pending preview domains existed (layout 2).
#[derive(Deserialize)]
struct ResellerV2 {
    id: String,
    name: String,
    email: Email,
    preview_domain: Option<DomainName>,
    notification_email: Option<Email>,
    allowed_ips: IpAllowList,
    suspended: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    access_token_ttl: Option<u64>,
    max_tokens_per_user: u32,
}

impl From<ResellerV1> for ResellerV2 {
    fn from(r: ResellerV1) -> Self {
        ResellerV2 {
            id: r.id,
            name: r.name,
            email: r.email,
            preview_domain: r.preview_domain,
            notification_email: r.notification_email,
            allowed_ips: r.allowed_ips,
            suspended: r.suspended,
            created_at: r.created_at,
            updated_at: r.updated_at,
            access_token_ttl: Some(DEFAULT_TOKEN_TTL),
            max_tokens_per_user: DEFAULT_MAX_TOKENS,
        }
    }
}

impl From<ResellerV2> for Reseller {
    fn from(r: ResellerV2) -> Self {
        Reseller {
            id: r.id,
            name: r.name,
            email: r.email,
            preview_domain: r.preview_domain,
            notification_email: r.notification_email,
            allowed_ips: r.allowed_ips,
            suspended: r.suspended,
            created_at: r.created_at,
            updated_at: r.updated_at,
            access_token_ttl: r.access_token_ttl,
            max_tokens_per_user: r.max_tokens_per_user,
            preview_domain_pending: None,
        }
    }
}

fn read(raw: &[u8]) -> StoreResult<Reseller> {
    if super::codec::version_of(raw)? == RECORD {
        return decode_as::<Reseller, ResellerV2>(RECORD, raw);
    }
    decode_as::<ResellerV2, ResellerV1>(2, raw).map(Into::into)
}

fn write(r: &Reseller) -> Vec<u8> {
    encode_as(RECORD, r)
}

/// A partial update; `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Default)]
pub struct ResellerPatch {
    pub name: Option<String>,
    pub email: Option<Email>,
    pub preview_domain: Option<Option<DomainName>>,
    pub notification_email: Option<Option<Email>>,
    pub allowed_ips: Option<IpAllowList>,
    pub suspended: Option<bool>,
    pub access_token_ttl: Option<Option<u64>>,
    pub max_tokens_per_user: Option<u32>,
    /// A preview domain to prove before it takes effect; `Some(None)` withdraws the request.
    pub preview_domain_pending: Option<Option<PendingPreview>>,
    /// Applies the patch only if the pending preview domain is still the one with this TXT
    /// value (a check's result never lands on a request made since); otherwise nothing changes.
    pub if_pending: Option<String>,
}

pub struct Resellers<'a>(&'a Store);

impl Store {
    pub fn resellers(&self) -> Resellers<'_> {
        Resellers(self)
    }
}

fn taken(domain: &DomainName) -> StoreError {
    StoreError::Conflict(
        crate::error::Conflict::PreviewDomainTaken,
        format!("{domain} is already the preview domain of another reseller"),
    )
}

/// A reseller's or key's name, checked (see `model::Name`).
fn valid_name(name: &str) -> StoreResult<String> {
    crate::model::Name::parse(name)
        .map(crate::model::Name::into_string)
        .map_err(StoreError::invalid)
}

impl Resellers<'_> {
    /// Creates a reseller and its first full-access API key.
    pub fn create(
        &self,
        name: &str,
        email: Email,
        now: Timestamp,
    ) -> StoreResult<(Reseller, NewKey)> {
        let reseller = Reseller {
            id: new_id(),
            name: valid_name(name)?,
            email,
            preview_domain: None,
            notification_email: None,
            allowed_ips: IpAllowList::default(),
            suspended: false,
            created_at: now,
            updated_at: now,
            access_token_ttl: Some(DEFAULT_TOKEN_TTL),
            max_tokens_per_user: DEFAULT_MAX_TOKENS,
            preview_domain_pending: None,
        };
        let secret = Secret::generate(crate::model::secret::KEY_PREFIX);
        let key = ApiKey::new(
            &reseller.id,
            "Initial key".into(),
            Permissions::all(),
            IpAllowList::default(),
            None,
            &secret,
            now,
        );
        let t = &self.0.t;
        (
            &*t.resellers.write(),
            &*t.keys.write(),
            &*t.key_by_hash.write(),
            &t.reseller_keys,
        )
            .transaction(|(r, k, kh, rk)| {
                r.insert(reseller.id.as_bytes(), write(&reseller))?;
                k.insert(key.id.as_bytes(), super::encode(&key))?;
                kh.insert(&key.hash[..], key.id.as_bytes())?;
                rk.insert(reseller.id.as_bytes(), super::encode(&vec![key.id.clone()]))?;
                Ok(())
            })?;
        Ok((reseller, NewKey { key, secret }))
    }

    pub fn get(&self, id: &str) -> StoreResult<Reseller> {
        match self.0.t.resellers.read().get(id.as_bytes())? {
            Some(raw) => read(&raw),
            None => Err(StoreError::NotFound("reseller")),
        }
    }

    /// One page of resellers, in creation order.
    pub fn page(&self, want: &super::Want) -> StoreResult<super::Window<Reseller>> {
        let window = super::page(self.0.t.resellers.read(), b"", want)?;
        let items = window
            .items
            .iter()
            .map(|(_, raw)| read(raw))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(window.holding(items))
    }

    /// How many resellers there are (a count of the tree's keys: thousands, not millions).
    pub fn count(&self) -> usize {
        self.0.t.resellers.read().len()
    }

    pub fn list(&self) -> StoreResult<Vec<Reseller>> {
        self.0
            .t
            .resellers
            .read()
            .iter()
            .values()
            .map(|v| read(&v?))
            .collect()
    }

    /// Applies a patch; a preview domain must be unused by every other reseller.
    pub fn update(&self, id: &str, patch: ResellerPatch, now: Timestamp) -> StoreResult<Reseller> {
        let t = &self.0.t;
        let updated = (&*t.resellers.write(), &*t.reseller_by_preview.write()).transaction(
            |(r, by_preview)| {
                let Some(raw) = r.get(id.as_bytes())? else {
                    return abort(StoreError::NotFound("reseller"));
                };
                let mut rec = read(&raw).or_else(abort)?;
                if let Some(value) = &patch.if_pending {
                    let current = rec.preview_domain_pending.as_ref();
                    if current.is_none_or(|p| &p.txt_record.value != value) {
                        return Ok(rec);
                    }
                }
                if let Some(name) = &patch.name {
                    rec.name = valid_name(name).or_else(abort)?;
                }
                if let Some(email) = &patch.email {
                    rec.email = email.clone();
                }
                // Whether another reseller's preview domain is `domain`.
                let foreign = |domain: &DomainName| {
                    let owner = by_preview.get(domain.as_str().as_bytes());
                    owner.map(|o| o.is_some_and(|o| o != id.as_bytes()))
                };
                if let Some(preview) = &patch.preview_domain {
                    if let Some(new) = preview {
                        if foreign(new)? {
                            return abort(taken(new));
                        }
                        by_preview.insert(new.as_str().as_bytes(), id.as_bytes())?;
                    }
                    if let Some(old) = &rec.preview_domain {
                        if preview.as_ref() != Some(old) {
                            by_preview.remove(old.as_str().as_bytes())?;
                        }
                    }
                    rec.preview_domain = preview.clone();
                    rec.preview_domain_pending = None;
                }
                if let Some(pending) = &patch.preview_domain_pending {
                    if let Some(p) = pending {
                        if foreign(&p.domain)? {
                            return abort(taken(&p.domain));
                        }
                    }
                    rec.preview_domain_pending = pending.clone();
                }
                if let Some(n) = &patch.notification_email {
                    rec.notification_email = n.clone();
                }
                if let Some(ips) = &patch.allowed_ips {
                    rec.allowed_ips = ips.clone();
                }
                if let Some(s) = patch.suspended {
                    rec.suspended = s;
                }
                if let Some(ttl) = patch.access_token_ttl {
                    rec.access_token_ttl = ttl;
                }
                if let Some(max) = patch.max_tokens_per_user {
                    rec.max_tokens_per_user = max;
                }
                rec.updated_at = now;
                r.insert(id.as_bytes(), write(&rec))?;
                Ok(rec)
            },
        )?;
        Ok(updated)
    }

    /// Records a check of the reseller's pending preview domain `domain` (a newer request in
    /// between wins): `found` `Ok`, it becomes the preview domain (unless another reseller took
    /// that name meanwhile: then that is the recorded error); otherwise the error is kept, and
    /// past `deadline` the request is `failed`.
    pub fn check_pending_preview(
        &self,
        id: &str,
        domain: &DomainName,
        found: Result<(), String>,
        deadline: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Reseller> {
        let rec = self.get(id)?;
        let Some(mut pending) = rec.preview_domain_pending.clone() else {
            return Ok(rec);
        };
        if &pending.domain != domain {
            return Ok(rec);
        }
        pending.last_checked_at = Some(now);
        let checked = Some(pending.txt_record.value.clone());
        let reason = match found {
            Ok(()) => {
                let patch = ResellerPatch {
                    preview_domain: Some(Some(domain.clone())),
                    if_pending: checked.clone(),
                    ..Default::default()
                };
                match self.update(id, patch, now) {
                    Err(StoreError::Conflict(_, why)) => why,
                    done => return done,
                }
            }
            Err(reason) => reason,
        };
        pending.verification_error = Some(reason);
        if now >= deadline {
            pending.status = super::domains::DomainStatus::Failed;
        }
        let patch = ResellerPatch {
            preview_domain_pending: Some(Some(pending)),
            if_pending: checked,
            ..Default::default()
        };
        self.update(id, patch, now)
    }

    /// The reseller whose preview domain is `domain`, if any.
    pub fn by_preview_domain(&self, domain: &str) -> StoreResult<Option<Reseller>> {
        match self.0.t.reseller_by_preview.read().get(domain.as_bytes())? {
            Some(id) => match self.0.t.resellers.read().get(&id)? {
                Some(raw) => read(&raw).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Deletes a reseller and everything it owns. The account record goes first, so every
    /// credential of the reseller stops working before the rest is cleaned up.
    pub fn delete(&self, id: &str) -> StoreResult<()> {
        let rec = self.get(id)?;
        let t = &self.0.t;
        t.resellers.write().remove(id.as_bytes())?;
        if let Some(p) = &rec.preview_domain {
            t.reseller_by_preview
                .write()
                .remove(p.as_str().as_bytes())?;
        }
        // Endpoints go first, so deleting what the reseller owns tells nobody.
        self.0.webhooks().delete_all(id)?;
        self.0.mail().delete_all(id)?;
        self.0.plans().delete_all(id)?;
        self.0.proxy_profiles().delete_all(id)?;
        for key in self.0.keys().list(id)? {
            self.0.keys().delete(id, &key.id)?;
        }
        for listed in self.0.users().list(id)? {
            self.0.users().delete(id, &listed.user.id)?;
        }
        t.reseller_keys.remove(id.as_bytes())?;
        self.0.billing().delete_all(id)?;
        self.0.signing_keys().delete_all(id)?;
        self.0.audit().delete_reseller(id)?;
        t.counters.remove(format!("users/{id}").as_bytes())?;
        for kind in super::pages::PageKind::ALL {
            self.0.pages().delete(id, kind)?;
        }
        Ok(())
    }
}
