//! Host names: the preview and deploy-permalink hosts of a site, and which site (and which of
//! its deploys) a Host header names. Below both the API (which shows the URLs) and the edge
//! (which serves them).

use crate::error::ApiResult;
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The instance's own names and the operator's zones: what the API, the panel and `/metrics`
/// answer on, and what no tenant may claim. Every path that makes a name served (site names,
/// preview domains, client domains, registrations) asks this one place.
#[derive(Clone, Debug)]
pub struct InstanceNames {
    /// `--api-host`, lowercased, without a trailing dot.
    api_hosts: Vec<String>,
    /// The default preview domain and the API hosts' parent domains (an API host at the apex of
    /// its registrable domain is its own zone, so no public suffix is ever one).
    zones: Vec<String>,
    default_preview: String,
}

/// True if `name` is `parent` or lies under it at a label boundary.
pub fn is_within(name: &str, parent: &str) -> bool {
    name == parent
        || name
            .strip_suffix(parent)
            .is_some_and(|head| head.ends_with('.'))
}

/// True if either name is the other or lies under it.
fn overlaps(a: &str, b: &str) -> bool {
    is_within(a, b) || is_within(b, a)
}

impl InstanceNames {
    pub fn new(api_hosts: &[String], default_preview_domain: &str) -> InstanceNames {
        let api_hosts: Vec<String> = api_hosts
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let mut zones = vec![default_preview_domain.to_string()];
        for host in &api_hosts {
            if host.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let zone = match host.split_once('.') {
                Some((_, parent)) if psl::suffix_str(parent) != Some(parent) => parent,
                _ => host.as_str(),
            };
            zones.push(zone.to_string());
        }
        zones.sort();
        zones.dedup();
        InstanceNames {
            api_hosts,
            zones,
            default_preview: default_preview_domain.to_string(),
        }
    }

    /// The operator's API hosts (`--api-host`), in the order given.
    pub fn api_hosts(&self) -> &[String] {
        &self.api_hosts
    }

    /// True if the operator named any API host (`--api-host`).
    pub fn has_api_hosts(&self) -> bool {
        !self.api_hosts.is_empty()
    }

    /// The API, the panel and `/metrics` answer on `host`: an `--api-host`, a loopback name or
    /// an IP literal (so a fresh install answers on its address). Never a site's.
    pub fn is_instance_name(&self, host: &str) -> bool {
        // No Host at all (an HTTP/1.0 health check) cannot name a site either.
        host.is_empty()
            || host == "localhost"
            || host == "localhost.localdomain"
            || host.parse::<std::net::IpAddr>().is_ok()
            || self.api_hosts.iter().any(|h| h == host)
    }

    /// A host a site would be served on (`NAME.<preview domain>`): refused if it is the
    /// instance's own.
    pub fn check_site_host(&self, host: &str) -> ApiResult<()> {
        if self.is_instance_name(host) {
            return Err(reserved(
                host,
                "is this server's own address (the API and panel)",
            ));
        }
        Ok(())
    }

    /// A client domain (served with its `www.`) or a registration: not an instance name and
    /// not inside the operator's zones.
    pub fn check_client_domain(&self, domain: &str) -> ApiResult<()> {
        for served in [domain.to_string(), format!("www.{domain}")] {
            self.check_site_host(&served)?;
        }
        if let Some(zone) = self.zones.iter().find(|z| is_within(domain, z)) {
            return Err(reserved(
                domain,
                &format!("lies in {zone}, the operator's own domain"),
            ));
        }
        if self.api_hosts.iter().any(|h| is_within(h, domain)) {
            return Err(reserved(domain, "covers this server's own address"));
        }
        Ok(())
    }

    /// A preview domain a reseller asks for: none of the operator's zones may overlap it (lie
    /// in it or it in them; an API host lies in its zone, so it cannot be covered either). The
    /// operator may put a reseller inside its own zones (`by_operator`); a site name that would
    /// then spell an instance name is refused when the site is named (`check_site_host`).
    pub fn check_preview_domain(&self, domain: &str, by_operator: bool) -> ApiResult<()> {
        self.check_site_host(domain)?;
        if !by_operator {
            let overlap = self.zones.iter().find(|z| overlaps(domain, z));
            if let Some(zone) = overlap {
                return Err(reserved(
                    domain,
                    &format!(
                        "overlaps {zone}, the operator's own domain (ask the operator to set it)"
                    ),
                ));
            }
        }
        if psl::suffix_str(domain) == Some(domain) {
            return Err(reserved(domain, "is a public suffix"));
        }
        Ok(())
    }
}

impl InstanceNames {
    /// A preview domain for `reseller_id`: the instance's rules (`check_preview_domain`), and it
    /// neither overlaps another reseller's preview domain (set or pending) nor covers another
    /// reseller's client domain (verified, pending or failed).
    pub fn preview_domain_allowed(
        &self,
        store: &Store,
        reseller_id: &str,
        domain: &str,
        by_operator: bool,
    ) -> ApiResult<()> {
        self.check_preview_domain(domain, by_operator)?;
        // A site of the reseller already named like an instance name's first label would land
        // on it (routing keeps the instance name, but the site would be unreachable).
        for host in &self.api_hosts {
            let Some((label, parent)) = host.split_once('.') else {
                continue;
            };
            if parent == domain {
                if let Some(site) = store.sites().by_name(label)? {
                    if site.reseller_id == reseller_id {
                        return Err(reserved(
                            domain,
                            &format!("would put the site {label} at {host}, this server's own address; rename the site first"),
                        ));
                    }
                }
            }
        }
        let previews = other_previews(store, reseller_id)?;
        if previews.iter().any(|p| p != domain && overlaps(p, domain)) {
            return Err(reserved(
                domain,
                "overlaps another reseller's preview domain",
            ));
        }
        let covered = store.domains().within(domain)?;
        if let Some(d) = covered.iter().find(|d| d.reseller_id != reseller_id) {
            return Err(reserved(
                domain,
                &format!(
                    "covers {}, a domain another reseller's client added",
                    d.name
                ),
            ));
        }
        Ok(())
    }

    /// A client domain for `reseller_id` (added or registered): the instance's rules
    /// (`check_client_domain`), and it lies in no other reseller's preview domain (set or
    /// pending). Checked before any outside call.
    pub fn client_domain_allowed(
        &self,
        store: &Store,
        reseller_id: &str,
        domain: &str,
    ) -> ApiResult<()> {
        self.check_client_domain(domain)?;
        // A domain also serves its `www.`: neither may be another reseller's domain's.
        let neighbours = [
            domain.strip_prefix("www.").map(str::to_string),
            Some(format!("www.{domain}")),
        ];
        for name in neighbours.into_iter().flatten() {
            if let Some(d) = store.domains().by_name(&name)? {
                if d.reseller_id != reseller_id {
                    return Err(reserved(
                        domain,
                        &format!("would share a host with {name}, another reseller's domain"),
                    ));
                }
            }
        }
        if other_previews(store, reseller_id)?
            .iter()
            .any(|p| is_within(domain, p))
        {
            return Err(reserved(
                domain,
                "lies in another reseller's preview domain",
            ));
        }
        Ok(())
    }

    /// A site's name under its reseller's preview domain (or the default one).
    pub fn site_name_allowed(&self, reseller: &Reseller, name: &str) -> ApiResult<()> {
        self.check_site_host(&site_host(reseller, &self.default_preview, name))
    }
}

/// Every other reseller's preview domain, set or waiting for DNS (resellers are thousands at
/// most: a name check reads them all).
fn other_previews(store: &Store, reseller_id: &str) -> ApiResult<Vec<String>> {
    let mut names = Vec::new();
    for other in store.resellers().list()? {
        if other.id != reseller_id {
            names.extend(other.preview_names().map(|p| p.as_str().to_string()));
        }
    }
    Ok(names)
}

/// The one `name_reserved` refusal: which name, and why it cannot be a tenant's.
pub fn reserved(name: &str, why: &str) -> crate::error::ApiError {
    crate::error::ApiError::Conflict(
        crate::error::Conflict::NameReserved,
        format!("{name} {why}; choose another name"),
    )
}

/// The preview host of a site: `NAME.<reseller preview domain>`, or the instance default domain.
pub fn site_host(reseller: &Reseller, default_domain: &str, name: &str) -> String {
    match &reseller.preview_domain {
        Some(d) => format!("{name}.{d}"),
        None => format!("{name}.{default_domain}"),
    }
}

/// What a Host header names: a site with its reseller, and for a client's custom domain the
/// domain's id (its traffic is counted), or for `DEPLOY_ID--NAME.<domain>` the ready deploy
/// shown instead of the published one.
pub struct HostTarget {
    pub site: Site,
    pub reseller: Reseller,
    pub domain_id: Option<String>,
    pub deploy_id: Option<String>,
    /// The site's owner is suspended: the site shows the reseller's `suspended` page.
    pub suspended: bool,
}

/// The one place host names map to sites. It reads only the store's `Watched` trees for hosts
/// (sites, deploys, domains, resellers, suspensions), whose writes move the generation the edge's
/// host cache is tagged with; a new lookup here must read only those trees too.
pub fn resolve_host(
    store: &Store,
    default_domain: &str,
    host: &str,
) -> ApiResult<Option<HostTarget>> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    // A verified client domain (or www. + it) attached to a site.
    if let Some(domain) = store.domains().serving(&host)? {
        let site = match &domain.site_id {
            Some(id) => store.sites().get(id)?,
            None => None,
        };
        let reseller = store.resellers().get(&domain.reseller_id).ok();
        if let (Some(site), Some(reseller)) = (site, reseller) {
            if site.reseller_id == reseller.id {
                let suspended = owner_suspended(store, &site)?;
                return Ok(Some(HostTarget {
                    site,
                    reseller,
                    domain_id: Some(domain.id),
                    deploy_id: None,
                    suspended,
                }));
            }
        }
        return Ok(None);
    }
    let Some((label, domain)) = host.split_once('.') else {
        return Ok(None);
    };
    // Site names cannot contain `--`, so a label with it is always a deploy permalink: a site
    // cannot be named to take over another site's deploy URL.
    let (deploy_id, name) = match label.split_once("--") {
        Some((deploy, name)) => (Some(deploy), name),
        None => (None, label),
    };
    let Some(site) = store.sites().by_name(name)? else {
        return Ok(None);
    };
    let Ok(reseller) = store.resellers().get(&site.reseller_id) else {
        return Ok(None);
    };
    let matches = match &reseller.preview_domain {
        Some(d) => d.as_str() == domain,
        None => domain == default_domain,
    };
    if !matches {
        return Ok(None);
    }
    if let Some(deploy_id) = deploy_id {
        let ready = store.deploys().get(deploy_id)?.is_some_and(|d| {
            d.site_id == site.id && d.state == crate::store::deploys::DeployState::Ready
        });
        if !ready {
            return Ok(None);
        }
    }
    let suspended = owner_suspended(store, &site)?;
    Ok(Some(HostTarget {
        site,
        reseller,
        domain_id: None,
        deploy_id: deploy_id.map(str::to_string),
        suspended,
    }))
}

fn owner_suspended(store: &Store, site: &crate::store::sites::Site) -> ApiResult<bool> {
    Ok(store
        .suspensions()
        .get(&site.reseller_id, &site.user_id)?
        .is_some())
}

/// A deploy's permalink host, `DEPLOY_ID--NAME.<domain>`, when that still fits in a DNS label.
pub fn deploy_host(site_host: &str, deploy_id: &str) -> Option<String> {
    let (label, _) = site_host.split_once('.')?;
    (deploy_id.len() + 2 + label.len() <= 63).then(|| format!("{deploy_id}--{site_host}"))
}

/// What a host serves, or none.
pub type HostLookup = Option<Arc<HostTarget>>;

/// Hosts looked up at most (past it, the cache starts over).
const CACHE_HOSTS_MAX: usize = 10_000;

/// `resolve_host`'s answers, each kept until the store's generation moves (any site, publish or
/// reseller change), so a 2xx from the API is visible at the edge on the next request.
pub struct HostCache {
    default_domain: String,
    hosts: RwLock<HashMap<String, (u64, HostLookup)>>,
}

impl HostCache {
    pub fn new(default_domain: String) -> HostCache {
        HostCache {
            default_domain,
            hosts: RwLock::default(),
        }
    }

    /// Which site (and deploy) `host` names, if any.
    pub fn site_for_host(&self, store: &Store, host: &str) -> ApiResult<HostLookup> {
        // Read the generation first: an entry built from data older than a write then carries
        // a generation that write already left behind.
        let generation = store.hosts_generation();
        if let Some((g, r)) = self.hosts.read().ok().and_then(|m| m.get(host).cloned()) {
            if g == generation {
                return Ok(r);
            }
        }
        let resolved = resolve_host(store, &self.default_domain, host)?.map(Arc::new);
        if let Ok(mut m) = self.hosts.write() {
            if m.len() >= CACHE_HOSTS_MAX {
                m.clear();
            }
            m.insert(host.to_string(), (generation, resolved.clone()));
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_hosts_fit_in_a_label() {
        assert_eq!(
            deploy_host("docs.example.test", "abc").as_deref(),
            Some("abc--docs.example.test")
        );
        assert_eq!(
            deploy_host(&format!("{}.x.test", "n".repeat(40)), &"d".repeat(26)),
            None
        );
    }
}
