//! Host names: the preview and deploy-permalink hosts of a site, and which site (and which of
//! its deploys) a Host header names. Below both the API (which shows the URLs) and the edge
//! (which serves them).

use crate::error::ApiResult;
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use crate::store::Store;

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
