//! The Netlify site and deploy objects.

use super::{Links, Views};
use crate::model::{DomainName, SiteName, Timestamp};
use crate::store::deploys::Deploy;
use crate::store::resellers::Reseller;
use crate::store::sites::Site;
use resellerd_store::error::StoreResult;
use serde::Serialize;
use serde_json::Value;

pub struct SiteUrls {
    pub url: String,
    pub ssl_url: String,
    pub admin_url: String,
}

pub fn site_urls(links: &Links, reseller: &Reseller, site: &Site) -> SiteUrls {
    let host = crate::hosts::site_host(reseller, &links.default_domain, site.name.as_str());
    let port = links.https_port_suffix();
    SiteUrls {
        url: format!("https://{host}{port}"),
        ssl_url: format!("https://{host}{port}"),
        admin_url: format!("{}#sites", links.panel_url()),
    }
}

/// A JSON object whose fields are not described further.
type Object = serde_json::Map<String, Value>;

/// The Netlify deploy object, with the fields netlify-cli and @netlify/api read.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeployView {
    pub id: String,
    site_id: String,
    user_id: String,
    build_id: Option<String>,
    /// new, prepared, ready or error
    state: &'static str,
    name: SiteName,
    url: String,
    pub ssl_url: String,
    admin_url: String,
    deploy_url: String,
    deploy_ssl_url: String,
    screenshot_url: Option<String>,
    review_id: Option<String>,
    draft: bool,
    /// SHA-1s of the files still to upload
    required: Vec<String>,
    required_functions: Vec<String>,
    error_message: Option<String>,
    branch: Option<String>,
    commit_ref: Option<String>,
    commit_url: Option<String>,
    skipped: Option<bool>,
    title: Option<String>,
    /// production or deploy-preview
    context: &'static str,
    locked: bool,
    review_url: Option<String>,
    framework: Option<String>,
    function_schedules: Vec<Object>,
    file_count: usize,
    pending: usize,
    published: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    published_at: Option<Timestamp>,
}

/// The Netlify site object, with the fields netlify-cli reads.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteView {
    pub id: String,
    site_id: String,
    name: SiteName,
    state: &'static str,
    plan: &'static str,
    url: String,
    pub ssl_url: String,
    admin_url: String,
    deploy_url: String,
    custom_domain: Option<DomainName>,
    domain_aliases: Vec<String>,
    password_protected: bool,
    user_id: String,
    account_id: String,
    account_slug: String,
    account_name: String,
    published_deploy: Option<DeployView>,
    ssl: bool,
    force_ssl: bool,
    managed_dns: bool,
    feature_flags: Object,
    build_settings: Object,
    /// Always true: environment variables live in the `/accounts/{id}/env` API (netlify-cli
    /// reads them from there for local builds).
    use_envelope: bool,
    /// Where a git host's push webhook goes (linked sites only).
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy_hook: Option<String>,
    /// The key pushes are signed with: shown in the answer of the PATCH that links a repo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_hook_secret: Option<String>,
    capabilities: Object,
    #[schema(value_type = Object)]
    processing_settings: ProcessingSettings,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// `{"html": {"pretty_urls": true}}`: the edge serves `/a` from `a.html`.
#[derive(Serialize)]
struct ProcessingSettings {
    html: HtmlSettings,
}

#[derive(Serialize)]
struct HtmlSettings {
    pretty_urls: bool,
}

/// The Netlify deploy object.
pub fn deploy_view(views: &Views, reseller: &Reseller, site: &Site, d: &Deploy) -> DeployView {
    let links = &views.links;
    let urls = site_urls(links, reseller, site);
    let host = crate::hosts::site_host(reseller, &links.default_domain, site.name.as_str());
    let (deploy_url, deploy_ssl_url) = match crate::hosts::deploy_host(&host, &d.id) {
        Some(h) => (
            format!("http://{h}{}", links.http_port_suffix()),
            format!("https://{h}{}", links.https_port_suffix()),
        ),
        None => (urls.url.clone(), urls.ssl_url.clone()),
    };
    DeployView {
        id: d.id.clone(),
        site_id: d.site_id.clone(),
        user_id: d.user_id.clone(),
        build_id: None,
        state: d.state.name(),
        name: site.name.clone(),
        url: urls.url,
        ssl_url: urls.ssl_url,
        admin_url: urls.admin_url,
        deploy_url,
        deploy_ssl_url,
        screenshot_url: None,
        review_id: None,
        draft: d.draft,
        required: views.store.deploys().required(&d.id).unwrap_or_default(),
        required_functions: Vec::new(),
        error_message: d.error_message.clone(),
        branch: d.branch.clone(),
        commit_ref: None,
        commit_url: None,
        skipped: None,
        title: d.title.clone(),
        context: if d.draft {
            "deploy-preview"
        } else {
            "production"
        },
        locked: false,
        review_url: None,
        framework: None,
        function_schedules: Vec::new(),
        file_count: d.file_count,
        pending: views.store.deploys().pending_count(&d.id),
        published: site.published_deploy.as_deref() == Some(d.id.as_str()),
        created_at: d.created_at,
        updated_at: d.updated_at,
        published_at: d.published_at,
    }
}

/// The Netlify site object.
pub fn site_view(views: &Views, reseller: &Reseller, site: &Site) -> StoreResult<SiteView> {
    let urls = site_urls(&views.links, reseller, site);
    let published = match &site.published_deploy {
        Some(id) => views
            .store
            .deploys()
            .get(id)?
            .map(|d| deploy_view(views, reseller, site, &d)),
        None => None,
    };
    let account_name = views
        .store
        .users()
        .get(&reseller.id, &site.user_id)
        .map(|u| u.email.as_str().to_string())
        .unwrap_or_default();
    let link = views.store.builds().repo(&site.id)?;
    let deploy_hook = link
        .as_ref()
        .map(|_| format!("{}/git_hooks/{}", views.links.api_url(), site.id));
    let build_settings = match &link {
        Some(l) => {
            let url = crate::builds::git::shown_url(&l.repo_url);
            match serde_json::json!({
                "provider": l.provider,
                "repo_url": url,
                "repo_path": url,
                "repo_branch": l.repo_branch,
                "allowed_branches": l.allowed_branches,
                "deploy_key_id": l.deploy_key_id,
                "base": l.base,
                "dir": l.dir,
                "cmd": l.cmd,
            }) {
                Value::Object(o) => o,
                _ => Object::new(),
            }
        }
        None => Object::new(),
    };
    Ok(SiteView {
        id: site.id.clone(),
        site_id: site.id.clone(),
        name: site.name.clone(),
        state: "current",
        plan: "default",
        deploy_url: urls.ssl_url.clone(),
        url: urls.url,
        ssl_url: urls.ssl_url,
        admin_url: urls.admin_url,
        custom_domain: site.custom_domain.clone(),
        domain_aliases: Vec::new(),
        password_protected: site.password.is_some(),
        user_id: site.user_id.clone(),
        account_id: site.user_id.clone(),
        account_slug: site.user_id.clone(),
        account_name,
        published_deploy: published,
        ssl: false,
        force_ssl: false,
        managed_dns: false,
        feature_flags: Object::new(),
        build_settings,
        use_envelope: true,
        deploy_hook,
        deploy_hook_secret: None,
        capabilities: Object::new(),
        processing_settings: ProcessingSettings {
            html: HtmlSettings { pretty_urls: true },
        },
        created_at: site.created_at,
        updated_at: site.updated_at,
    })
}
