//! Client domains: registered once on the whole instance, owned by one client user, verified by
//! a DNS TXT record, and carrying a WordPress plugin key stored only as SHA-256.

use super::events::{emit, Subject};
use super::{abort, decode, encode, get, ids_under, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::secret::{Secret, WP_PREFIX};
use crate::model::{new_id, DomainName, Email, Timestamp};

pub use super::records::{Domain, DomainStatus};

pub const TXT_PREFIX: &str = "resellerd-verification=";

impl DomainStatus {
    pub fn parse(s: &str) -> StoreResult<DomainStatus> {
        match s {
            "pending" => Ok(DomainStatus::Pending),
            "verified" => Ok(DomainStatus::Verified),
            "failed" => Ok(DomainStatus::Failed),
            _ => Err(StoreError::invalid("status is pending, verified or failed")),
        }
    }
}

impl Domain {
    pub fn txt_name(&self) -> String {
        format!("_resellerd.{}", self.name)
    }

    pub fn txt_value(&self) -> String {
        format!("{TXT_PREFIX}{}", self.token)
    }
}

pub struct Domains<'a>(&'a Store);

impl Store {
    pub fn domains(&self) -> Domains<'_> {
        Domains(self)
    }
}

fn scoped(reseller_id: &str, id: &str) -> String {
    format!("{reseller_id}/{id}")
}

impl Domains<'_> {
    /// Registers a domain for a user; a name registered anywhere on the instance is refused, and
    /// so is a reseller's domain past `max_pending` unverified ones (counted and written under
    /// one lock, so concurrent calls cannot both pass the limit).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        reseller_id: &str,
        user_id: &str,
        name: DomainName,
        email: Email,
        site_id: Option<String>,
        max_pending: usize,
        now: Timestamp,
    ) -> StoreResult<(Domain, Secret)> {
        let _one_at_a_time = self.0.domain_creates_guard()?;
        self.check_pending_limit(reseller_id, max_pending)?;
        let max = self
            .0
            .plans()
            .limits_of(reseller_id, user_id)?
            .0
            .max_domains;
        if max.is_some() {
            let owned = self
                .list(reseller_id)?
                .iter()
                .filter(|d| d.user_id == user_id)
                .count();
            super::plans::check("max_domains", owned as u64, max)?;
        }
        let wp = Secret::generate(WP_PREFIX);
        let token = Secret::generate("").expose().to_string();
        let domain = Domain {
            id: new_id(),
            reseller_id: reseller_id.to_string(),
            user_id: user_id.to_string(),
            name,
            email,
            site_id,
            status: DomainStatus::Pending,
            token,
            wp_hash: wp.hash(),
            created_at: now,
            verified_at: None,
            last_checked_at: None,
            next_check_at: now,
            misses: 0,
        };
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        (
            &*t.domains.write(),
            &*t.domain_by_name.write(),
            &t.domain_by_wp,
            &t.domains_by_reseller,
            &t.events,
        )
            .transaction(|(d, by_name, by_wp, by_reseller, events)| {
                if by_name.get(domain.name.as_str().as_bytes())?.is_some() {
                    return abort(StoreError::Conflict(
                        crate::error::Conflict::DomainTaken,
                        format!("{} is already registered", domain.name),
                    ));
                }
                d.insert(domain.id.as_bytes(), encode(&domain))?;
                by_name.insert(domain.name.as_str().as_bytes(), domain.id.as_bytes())?;
                by_wp.insert(&domain.wp_hash[..], domain.id.as_bytes())?;
                by_reseller.insert(scoped(reseller_id, &domain.id).as_bytes(), &[])?;
                emit(events, subs, reseller_id, "domain.created", now, || {
                    Subject::Domain(domain.clone())
                })?;
                Ok(())
            })?;
        Ok((domain, wp))
    }

    /// 400 `pending_domain_limit` if the reseller has `max_pending` unverified domains already.
    pub fn check_pending_limit(&self, reseller_id: &str, max_pending: usize) -> StoreResult<()> {
        let pending = self
            .list(reseller_id)?
            .iter()
            .filter(|d| d.status == DomainStatus::Pending)
            .count();
        if pending >= max_pending {
            return Err(StoreError::Conflict(
                crate::error::Conflict::PendingDomainLimit,
                format!(
                    "this reseller already has {pending} domains waiting for verification (the limit is {max_pending}); verify or delete some first"
                ),
            ));
        }
        Ok(())
    }

    /// A domain of this reseller; anyone else's is "not found".
    pub fn get(&self, reseller_id: &str, id: &str) -> StoreResult<Domain> {
        match get::<Domain>(self.0.t.domains.read(), id)? {
            Some(d) if d.reseller_id == reseller_id => Ok(d),
            _ => Err(StoreError::NotFound("domain")),
        }
    }

    pub fn by_name(&self, name: &str) -> StoreResult<Option<Domain>> {
        match self.0.t.domain_by_name.read().get(name.as_bytes())? {
            Some(id) => get(self.0.t.domains.read(), &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn by_wp_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<Domain>> {
        match self.0.t.domain_by_wp.get(&hash[..])? {
            Some(id) => get(self.0.t.domains.read(), &String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn list(&self, reseller_id: &str) -> StoreResult<Vec<Domain>> {
        let ids = ids_under(&self.0.t.domains_by_reseller, reseller_id)?;
        super::load_all(self.0.t.domains.read(), &ids)
    }

    /// Every domain of the instance, for the background verifier.
    pub fn all(&self) -> StoreResult<Vec<Domain>> {
        self.0
            .t
            .domains
            .read()
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Every domain (verified, pending or failed) named `parent` or under it: the names a new
    /// preview domain would cover. Reads the name index's keys, once per preview-domain change.
    pub fn within(&self, parent: &str) -> StoreResult<Vec<Domain>> {
        let suffix = format!(".{parent}");
        let mut found = Vec::new();
        for kv in self.0.t.domain_by_name.read().iter() {
            let (name, id) = kv?;
            let name = String::from_utf8_lossy(&name);
            if name == parent || name.ends_with(&suffix) {
                found.extend(get::<Domain>(
                    self.0.t.domains.read(),
                    &String::from_utf8_lossy(&id),
                )?);
            }
        }
        Ok(found)
    }

    /// Why the last check of domain `id` did not verify it (kept beside the record, which
    /// events carry in their frozen layout), `None` once verified or before the first check.
    pub fn verification_error(&self, id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .t
            .domain_checks
            .get(id.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records (or, with `None`, clears) why the last check of domain `id` did not verify it.
    pub fn set_verification_error(&self, id: &str, error: Option<&str>) -> StoreResult<()> {
        super::put_or_remove(&self.0.t.domain_checks, id, error)
    }

    /// Rewrites a domain record if it still exists (a delete in between wins); see `update`.
    pub fn save(&self, domain: &Domain) -> StoreResult<()> {
        self.update(&domain.id, |d| *d = domain.clone()).map(|_| ())
    }

    /// Applies `change` to the domain as it is now (not to a copy read before a DNS lookup, which
    /// a concurrent check or edit may have outdated), if it still exists. A failed domain
    /// releases its name, so a typo or an abandoned claim does not hold it forever; a failed
    /// domain verified later takes its name back only if nobody registered it meanwhile
    /// (400 `domain_taken` otherwise).
    pub fn update(&self, id: &str, change: impl Fn(&mut Domain)) -> StoreResult<Option<Domain>> {
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        let key = id.as_bytes();
        let updated = (&*t.domains.write(), &*t.domain_by_name.write(), &t.events).transaction(
            |(d, by_name, events)| {
                let Some(raw) = d.get(key)? else {
                    return Ok(None);
                };
                let mut domain: Domain = decode(&raw).or_else(abort)?;
                let was = domain.status;
                change(&mut domain);
                let name = domain.name.as_str().as_bytes();
                let owner = by_name.get(name)?;
                if domain.status == DomainStatus::Failed {
                    if owner.as_deref() == Some(key) {
                        by_name.remove(name)?;
                    }
                } else {
                    match owner {
                        None => {
                            by_name.insert(name, key)?;
                        }
                        Some(o) if o.as_ref() == key => {}
                        Some(_) => {
                            return abort(StoreError::Conflict(
                                crate::error::Conflict::DomainTaken,
                                format!(
                                    "{} was registered by another client meanwhile",
                                    domain.name
                                ),
                            ))
                        }
                    }
                }
                d.insert(key, encode(&domain))?;
                let kind = match (was, domain.status) {
                    (DomainStatus::Verified, DomainStatus::Verified) => None,
                    (DomainStatus::Failed, DomainStatus::Failed) => None,
                    (_, DomainStatus::Verified) => Some("domain.verified"),
                    (_, DomainStatus::Failed) => Some("domain.failed"),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let now = domain.last_checked_at.unwrap_or_else(Timestamp::now);
                    emit(events, subs, &domain.reseller_id, kind, now, || {
                        Subject::Domain(domain.clone())
                    })?;
                }
                Ok(Some(domain))
            },
        )?;
        Ok(updated)
    }

    /// A new WordPress key; the old one stops working at once.
    pub fn rotate_wp_key(&self, reseller_id: &str, id: &str) -> StoreResult<(Domain, Secret)> {
        let wp = Secret::generate(WP_PREFIX);
        let t = &self.0.t;
        let domain = (&*t.domains.write(), &t.domain_by_wp).transaction(|(d, by_wp)| {
            let Some(raw) = d.get(id.as_bytes())? else {
                return abort(StoreError::NotFound("domain"));
            };
            let mut domain: Domain = decode(&raw).or_else(abort)?;
            if domain.reseller_id != reseller_id {
                return abort(StoreError::NotFound("domain"));
            }
            by_wp.remove(&domain.wp_hash[..])?;
            domain.wp_hash = wp.hash();
            by_wp.insert(&domain.wp_hash[..], domain.id.as_bytes())?;
            d.insert(domain.id.as_bytes(), encode(&domain))?;
            Ok(domain)
        })?;
        Ok((domain, wp))
    }

    /// Deletes a domain of this reseller, freeing its name.
    pub fn delete(&self, reseller_id: &str, id: &str) -> StoreResult<Domain> {
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        let domain = (
            &*t.domains.write(),
            &*t.domain_by_name.write(),
            &t.domain_by_wp,
            &t.domains_by_reseller,
            &t.events,
            &t.domain_checks,
        )
            .transaction(|(d, by_name, by_wp, by_reseller, events, checks)| {
                let Some(raw) = d.get(id.as_bytes())? else {
                    return abort(StoreError::NotFound("domain"));
                };
                checks.remove(id.as_bytes())?;
                let domain: Domain = decode(&raw).or_else(abort)?;
                if domain.reseller_id != reseller_id {
                    return abort(StoreError::NotFound("domain"));
                }
                d.remove(id.as_bytes())?;
                // A failed domain no longer holds its name; whoever does keeps it (and the
                // certificate issued for it).
                let owned =
                    by_name.get(domain.name.as_str().as_bytes())?.as_deref() == Some(id.as_bytes());
                if owned {
                    by_name.remove(domain.name.as_str().as_bytes())?;
                }
                by_wp.remove(&domain.wp_hash[..])?;
                by_reseller.remove(scoped(reseller_id, id).as_bytes())?;
                emit(
                    events,
                    subs,
                    reseller_id,
                    "domain.deleted",
                    Timestamp::now(),
                    || Subject::Domain(domain.clone()),
                )?;
                Ok((domain, owned))
            })?;
        let (domain, owned) = domain;
        self.0.traffic().delete(id)?;
        // Its certificate and private key go with it, and so stop being renewed.
        if owned {
            self.0.certs().delete(domain.name.as_str())?;
        }
        Ok(domain)
    }

    /// Deletes every domain of a user (when the user goes).
    pub fn delete_all_of_user(&self, reseller_id: &str, user_id: &str) -> StoreResult<()> {
        for d in self.list(reseller_id)? {
            if d.user_id == user_id {
                self.delete(reseller_id, &d.id)?;
            }
        }
        Ok(())
    }

    /// Detaches every domain pointing at a deleted site.
    pub fn detach_site(&self, reseller_id: &str, site_id: &str) -> StoreResult<()> {
        for mut d in self.list(reseller_id)? {
            if d.site_id.as_deref() == Some(site_id) {
                d.site_id = None;
                self.save(&d)?;
            }
        }
        Ok(())
    }

    /// Attaches the client's domain record named like a site's `custom_domain` to that site, so
    /// setting `custom_domain` on a site and `site_id` on a domain mean the same thing.
    pub fn attach_custom_domain(&self, site: &crate::store::sites::Site) -> StoreResult<()> {
        let Some(name) = &site.custom_domain else {
            return Ok(());
        };
        if let Some(mut d) = self.by_name(name.as_str())? {
            let same_owner = d.reseller_id == site.reseller_id && d.user_id == site.user_id;
            if same_owner && d.site_id.as_deref() != Some(site.id.as_str()) {
                d.site_id = Some(site.id.clone());
                self.save(&d)?;
            }
        }
        Ok(())
    }

    /// The verified domain serving `host` (the domain itself or `www.` + domain), with its site.
    pub fn serving(&self, host: &str) -> StoreResult<Option<Domain>> {
        let mut candidates = vec![host];
        if let Some(bare) = host.strip_prefix("www.") {
            candidates.push(bare);
        }
        for name in candidates {
            if let Some(d) = self.by_name(name)? {
                if d.status == DomainStatus::Verified && d.site_id.is_some() {
                    return Ok(Some(d));
                }
            }
        }
        Ok(None)
    }
}
