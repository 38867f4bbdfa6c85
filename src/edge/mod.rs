//! The edge: any request the API does not own is served from a site chosen by its Host header
//! (`NAME.<preview domain>`), with its files, redirects, headers, custom pages, password gate and forms.

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

/// The site a Host header names, with its reseller. The one place host names map to sites,
/// so custom domains plug in here.
pub fn resolve_host(
    store: &Store,
    default_domain: &str,
    host: &str,
) -> ApiResult<Option<(Site, Reseller)>> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let Some((name, domain)) = host.split_once('.') else {
        return Ok(None);
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
    Ok(matches.then_some((site, reseller)))
}

/// The host part of a Host header value (no port, no IPv6 brackets).
pub fn host_without_port(raw: &str) -> &str {
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    raw.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(raw, |(h, _)| h)
}
