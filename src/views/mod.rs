//! The API's JSON views of stored records: what a `GET` answers, and what a webhook payload and
//! a notification mail are made from, so all three say the same thing. Below both the API and
//! the outboxes: a view reads the store and the instance's addresses (`Links`), never
//! `AppState`.

pub mod domains;
pub mod forms;
pub mod keys;
pub mod sites;
pub mod users;

pub use domains::DomainView;
pub use forms::SubmissionView;
pub use keys::KeyView;
pub use sites::{DeployView, SiteUrls, SiteView};
pub use users::{Lookups, UserView};

use crate::hosts::InstanceNames;
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// Where the instance answers: what the URLs in a view are made of.
pub struct Links {
    /// The preview domain of resellers that have none of their own.
    pub default_domain: String,
    names: InstanceNames,
    /// The (HTTP, HTTPS) addresses the listeners bound, once they have.
    listening: OnceLock<(SocketAddr, SocketAddr)>,
}

/// `:PORT` for a URL, unless the port is the scheme's `default` (or not bound yet).
fn port_suffix(port: Option<u16>, default: u16) -> String {
    match port {
        Some(p) if p != default => format!(":{p}"),
        _ => String::new(),
    }
}

impl Links {
    pub fn new(default_domain: String, names: InstanceNames) -> Links {
        Links {
            default_domain,
            names,
            listening: OnceLock::new(),
        }
    }

    /// Records the addresses the listeners bound (once; later calls change nothing).
    pub fn bound(&self, http: SocketAddr, https: SocketAddr) {
        let _ = self.listening.set((http, https));
    }

    /// `:PORT` for a site's `https://` URL when the HTTPS listener is not on 443 (a local
    /// install's 8443), so the URLs the API shows open as they are.
    pub fn https_port_suffix(&self) -> String {
        port_suffix(self.listening.get().map(|(_, https)| https.port()), 443)
    }

    /// `:PORT` for a site's `http://` URL when the HTTP listener is not on 80.
    pub fn http_port_suffix(&self) -> String {
        port_suffix(self.listening.get().map(|(http, _)| http.port()), 80)
    }

    /// The API's root (`…/api/v1`), on the same origin as the panel.
    pub fn api_url(&self) -> String {
        let panel = self.panel_url();
        format!("{}/api/v1", panel.trim_end_matches("/admin/"))
    }

    /// Where the panel is: the first `--api-host` over HTTPS, else the HTTP listener's address.
    pub fn panel_url(&self) -> String {
        if let Some(host) = self.names.api_hosts().first() {
            return format!("https://{host}{}/admin/", self.https_port_suffix());
        }
        match self.listening.get() {
            Some((http, _)) if http.ip().is_unspecified() => {
                format!("http://localhost:{}/admin/", http.port())
            }
            Some((http, _)) => format!("http://{http}/admin/"),
            None => "/admin/".to_string(),
        }
    }
}

/// What every view is made from: the store and the instance's addresses.
#[derive(Clone)]
pub struct Views {
    pub store: Store,
    pub links: Arc<Links>,
}
