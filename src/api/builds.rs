//! Builds from git (Netlify's continuous deployment): deploy keys (`/deploy_keys`), a site's
//! repository (`repo` in `PATCH /sites/{id}`, `PUT /sites/{id}/unlink_repo`), builds
//! (`/sites/{id}/builds`, `/builds/{id}`), build hooks (`/sites/{id}/build_hooks`, triggered by
//! `POST /build_hooks/{id}`), the push webhook git hosts call (`POST /git_hooks/{site id}`,
//! signed as GitHub, GitLab or Gitea sign) and a build's log (`GET /deploys/{id}/log`).

use super::sites::find_site;
use super::{created, no_content};
use crate::auth::guard::{KeyOrUser, Public, SitesRead, SitesWrite};
use crate::auth::Tenant;
use crate::error::{ApiError, ApiResult};
use crate::model::{new_id, Timestamp};
use crate::store::builds::{Build, BuildHook, BuildState, DeployKey, RepoLink};
use crate::store::sites::Site;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

super::endpoints! { ENDPOINTS:
    "/deploy_keys" {
        post create_key, WaitsOnNetwork;
        get list_keys;
    }
    "/deploy_keys/{key_id}" {
        get get_key;
        delete delete_key;
    }
    "/sites/{site_id}/unlink_repo" {
        put unlink;
    }
    "/sites/{site_id}/builds" {
        post create_build;
        get list_builds;
    }
    "/builds/{build_id}" {
        get get_build;
    }
    "/sites/{site_id}/build_hooks" {
        post create_hook;
        get list_hooks;
    }
    "/sites/{site_id}/build_hooks/{hook_id}" {
        get get_hook;
        put update_hook;
        delete delete_hook;
    }
    "/build_hooks/{hook_id}" {
        post trigger_hook;
    }
    "/git_hooks/{site_id}" {
        post git_push;
    }
    "/deploys/{deploy_id}/log" {
        get deploy_log;
    }
}

// Deploy keys.

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeployKeyView {
    id: String,
    public_key: String,
    created_at: Timestamp,
}

fn key_view(k: &DeployKey) -> DeployKeyView {
    DeployKeyView {
        id: k.id.clone(),
        public_key: k.public_key.clone(),
        created_at: k.created_at,
    }
}

fn visible_key(tenant: &Tenant, k: &DeployKey) -> bool {
    match (&tenant.user, &k.user_id) {
        (None, _) => true,
        (Some(u), Some(owner)) => &u.id == owner,
        (Some(_), None) => false,
    }
}

/// An Ed25519 key pair made by `ssh-keygen`: (public line, private key).
fn generate_key() -> ApiResult<(String, String)> {
    let dir = std::env::temp_dir().join(format!("resellerd-keygen-{}", new_id()));
    crate::files::create_private_dir(&dir).map_err(ApiError::internal)?;
    let path = dir.join("key");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "resellerd deploy key",
            "-f",
        ])
        .arg(&path)
        .output();
    let result = match out {
        Ok(o) if o.status.success() => {
            match (
                std::fs::read_to_string(path.with_extension("pub")),
                std::fs::read_to_string(&path),
            ) {
                (Ok(public), Ok(private)) => Ok((public.trim().to_string(), private)),
                (Err(e), _) | (_, Err(e)) => Err(ApiError::internal(e)),
            }
        }
        Ok(o) => Err(ApiError::internal(
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )),
        Err(e) => Err(ApiError::BuildsUnavailable(format!(
            "deploy keys need ssh-keygen (Debian package openssh-client) on the server: {e}"
        ))),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[utoipa::path(post, path = "/api/v1/deploy_keys", tag = "builds",
    responses((status = 201, description = "A new SSH deploy key; give its public key read access to the repository", body = DeployKeyView)))]
async fn create_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (public_key, private_key) = super::off_worker(generate_key).await?;
    let key = DeployKey {
        id: new_id(),
        reseller_id: tenant.reseller.id.clone(),
        user_id: tenant.user.as_ref().map(|u| u.id.clone()),
        public_key,
        private_key,
        created_at: Timestamp::now(),
    };
    let _gate = super::write_gate(&req, &state).await;
    let key = state.store.builds().create_key(key)?;
    Ok(created(key_view(&key)))
}

#[utoipa::path(get, path = "/api/v1/deploy_keys", tag = "builds",
    responses((status = 200, description = "The caller's deploy keys", body = Vec<DeployKeyView>)))]
async fn list_keys(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let keys: Vec<_> = state
        .store
        .builds()
        .keys(&tenant.reseller.id)?
        .iter()
        .filter(|k| visible_key(&tenant, k))
        .map(key_view)
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

fn find_key(state: &AppState, tenant: &Tenant, id: &str) -> ApiResult<DeployKey> {
    state
        .store
        .builds()
        .key(&tenant.reseller.id, id)?
        .filter(|k| visible_key(tenant, k))
        .ok_or(ApiError::NotFound("deploy key"))
}

#[utoipa::path(get, path = "/api/v1/deploy_keys/{key_id}", tag = "builds", params(("key_id" = String, Path)),
    responses((status = 200, description = "One deploy key", body = DeployKeyView)))]
async fn get_key(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let k = find_key(&state, &who.tenant(), &id)?;
    Ok(HttpResponse::Ok().json(key_view(&k)))
}

#[utoipa::path(delete, path = "/api/v1/deploy_keys/{key_id}", tag = "builds", params(("key_id" = String, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete_key(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let k = find_key(&state, &tenant, &id)?;
    state
        .store
        .builds()
        .delete_key(&tenant.reseller.id, &k.id)?;
    Ok(no_content())
}

// The site's repository.

/// Netlify's `repo` of `PATCH /sites/{id}` (`repoInfo`).
#[derive(Deserialize, utoipa::ToSchema, Default)]
pub struct RepoBody {
    /// manual, github, gitlab or gitea
    provider: Option<String>,
    /// https://[user:token@]host/path.git or an SSH URL (git@host:path.git)
    repo_url: Option<String>,
    /// The same as `repo_url` (netlify-cli sends this one)
    repo_path: Option<String>,
    repo_branch: Option<String>,
    allowed_branches: Option<Vec<String>>,
    deploy_key_id: Option<String>,
    base: Option<String>,
    dir: Option<String>,
    cmd: Option<String>,
    /// Accepted and ignored: resellerd does not run functions.
    #[allow(dead_code)]
    functions_dir: Option<String>,
}

/// A branch name a build may check out.
fn valid_branch(b: &str) -> ApiResult<String> {
    let ok = !b.is_empty()
        && b.len() <= 255
        && !b.starts_with('-')
        && !b.contains("..")
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-+".contains(c));
    if ok {
        Ok(b.to_string())
    } else {
        Err(ApiError::invalid(format!(
            "{b:?} is not a branch name: letters, digits and ._/-+, not starting with -"
        )))
    }
}

/// The link a `repo` body makes for `site` (over its current one, if any).
pub fn repo_link(
    state: &AppState,
    tenant: &Tenant,
    site: &Site,
    body: RepoBody,
) -> ApiResult<RepoLink> {
    let old = state.store.builds().repo(&site.id)?;
    let now = Timestamp::now();
    let provider = body
        .provider
        .or(old.as_ref().map(|o| o.provider.clone()))
        .unwrap_or_else(|| "manual".into());
    if !["manual", "github", "gitlab", "gitea"].contains(&provider.as_str()) {
        return Err(ApiError::invalid(
            "repo.provider: one of manual, github, gitlab, gitea",
        ));
    }
    let url = body
        .repo_url
        .or(body.repo_path)
        .or(old.as_ref().map(|o| o.repo_url.clone()))
        .ok_or_else(|| ApiError::invalid("repo.repo_url: the repository's URL is required"))?;
    if url.len() > 2048 || url.chars().any(char::is_control) {
        return Err(ApiError::invalid("repo.repo_url: not a URL"));
    }
    let allow_private = state.settings.allow_private_targets();
    let (_, ssh) = crate::builds::git::repo_host(&url, allow_private).map_err(ApiError::invalid)?;
    let deploy_key_id = body
        .deploy_key_id
        .or(old.as_ref().and_then(|o| o.deploy_key_id.clone()));
    if let Some(id) = &deploy_key_id {
        find_key(state, tenant, id)?;
    } else if ssh {
        return Err(ApiError::invalid(
            "repo.deploy_key_id: an SSH repository needs a deploy key (POST /deploy_keys)",
        ));
    }
    let repo_branch = valid_branch(
        &body
            .repo_branch
            .or(old.as_ref().map(|o| o.repo_branch.clone()))
            .unwrap_or_else(|| "main".into()),
    )?;
    let allowed_branches = match body.allowed_branches {
        Some(list) if list.len() > 50 => {
            return Err(ApiError::invalid("repo.allowed_branches: at most 50"))
        }
        Some(list) => list
            .iter()
            .map(|b| valid_branch(b))
            .collect::<ApiResult<_>>()?,
        None => old
            .as_ref()
            .map(|o| o.allowed_branches.clone())
            .unwrap_or_default(),
    };
    let dir_field = |v: Option<String>,
                     old: Option<String>,
                     what: &str|
     -> ApiResult<Option<String>> {
        match v.or(old) {
            Some(d) if d.len() > 255 || d.split('/').any(|s| s == "..") => Err(ApiError::invalid(
                format!("repo.{what}: a directory inside the repository, without '..'"),
            )),
            other => Ok(other),
        }
    };
    let base = dir_field(body.base, old.as_ref().and_then(|o| o.base.clone()), "base")?;
    let dir = dir_field(body.dir, old.as_ref().and_then(|o| o.dir.clone()), "dir")?;
    let cmd = body.cmd.or(old.as_ref().and_then(|o| o.cmd.clone()));
    if cmd.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(ApiError::invalid("repo.cmd: at most 4096 characters"));
    }
    let secret = match &old {
        Some(o) => o.hook_secret.clone(),
        None => {
            use rand::RngCore;
            let mut raw = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut raw);
            hex::encode(raw)
        }
    };
    Ok(RepoLink {
        provider,
        repo_url: url,
        repo_branch,
        allowed_branches,
        deploy_key_id,
        base,
        dir,
        cmd,
        hook_secret: secret,
        created_at: old.as_ref().map_or(now, |o| o.created_at),
        updated_at: now,
    })
}

#[utoipa::path(put, path = "/api/v1/sites/{site_id}/unlink_repo", tag = "builds", params(("site_id" = String, Path)),
    responses((status = 200, description = "The site, no longer linked to a repository", body = crate::views::SiteView)))]
async fn unlink(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &id)?;
    state.store.builds().unlink(&site.id)?;
    Ok(HttpResponse::Ok().json(crate::views::sites::site_view(
        &state.views,
        &tenant.reseller,
        &site,
    )?))
}

// Builds.

#[derive(Serialize, utoipa::ToSchema)]
pub struct BuildView {
    id: String,
    deploy_id: String,
    sha: Option<String>,
    done: bool,
    error: Option<String>,
    /// queued, running, done, error or canceled
    state: &'static str,
    branch: String,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
}

fn build_view(b: &Build) -> BuildView {
    BuildView {
        id: b.id.clone(),
        deploy_id: b.deploy_id.clone(),
        sha: b.sha.clone(),
        done: b.done(),
        error: b.error.clone(),
        state: match b.state {
            BuildState::Queued => "queued",
            BuildState::Running => "running",
            BuildState::Done => "done",
            BuildState::Error => "error",
            BuildState::Canceled => "canceled",
        },
        branch: b.branch.clone(),
        created_at: b.created_at,
        started_at: b.started_at,
        finished_at: b.finished_at,
    }
}

/// Queues a build of `branch` (the link's branch when None) of a linked site.
fn enqueue(
    state: &AppState,
    site: &Site,
    branch: Option<&str>,
    title: Option<String>,
    clear_cache: bool,
) -> ApiResult<Build> {
    state
        .builds
        .available()
        .map_err(ApiError::BuildsUnavailable)?;
    let link = state.store.builds().repo(&site.id)?.ok_or_else(|| {
        ApiError::invalid("the site is not linked to a repository: PATCH it with a repo first")
    })?;
    let branch = valid_branch(branch.unwrap_or(&link.repo_branch))?;
    // Another branch than the site's is a branch deploy: built and kept, not published.
    let draft = branch != link.repo_branch;
    let build =
        state
            .store
            .builds()
            .enqueue(site, &branch, title, clear_cache, draft, Timestamp::now())?;
    state.builds.wake();
    Ok(build)
}

#[derive(Deserialize, utoipa::IntoParams)]
struct BuildQuery {
    branch: Option<String>,
    clear_cache: Option<bool>,
    title: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/sites/{site_id}/builds", tag = "builds", params(("site_id" = String, Path), BuildQuery),
    responses((status = 200, description = "The queued build", body = BuildView)))]
async fn create_build(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
    q: web::Query<BuildQuery>,
) -> ApiResult<HttpResponse> {
    let site = find_site(&state, &who.tenant(), &id)?;
    let q = q.into_inner();
    let b = enqueue(
        &state,
        &site,
        q.branch.as_deref(),
        q.title,
        q.clear_cache.unwrap_or(false),
    )?;
    Ok(HttpResponse::Ok().json(build_view(&b)))
}

#[utoipa::path(get, path = "/api/v1/sites/{site_id}/builds", tag = "builds", params(("site_id" = String, Path)),
    responses((status = 200, description = "The site's builds, newest first", body = Vec<BuildView>)))]
async fn list_builds(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let site = find_site(&state, &who.tenant(), &id)?;
    let list: Vec<_> = state
        .store
        .builds()
        .of_site(&site.id)?
        .iter()
        .map(build_view)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(get, path = "/api/v1/builds/{build_id}", tag = "builds", params(("build_id" = String, Path)),
    responses((status = 200, description = "One build", body = BuildView)))]
async fn get_build(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let b = state
        .store
        .builds()
        .get(&id)?
        .filter(|b| tenant.owns(&b.reseller_id, &b.user_id))
        .ok_or(ApiError::NotFound("build"))?;
    Ok(HttpResponse::Ok().json(build_view(&b)))
}

// Build hooks.

#[derive(Serialize, utoipa::ToSchema)]
pub struct BuildHookView {
    id: String,
    title: String,
    branch: String,
    url: String,
    site_id: String,
    created_at: Timestamp,
}

fn hook_view(state: &AppState, h: &BuildHook) -> BuildHookView {
    BuildHookView {
        id: h.id.clone(),
        title: h.title.clone(),
        branch: h.branch.clone(),
        url: format!("{}/build_hooks/{}", state.views.links.api_url(), h.id),
        site_id: h.site_id.clone(),
        created_at: h.created_at,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct HookBody {
    title: Option<String>,
    branch: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/sites/{site_id}/build_hooks", tag = "builds", params(("site_id" = String, Path)),
    request_body = HookBody,
    responses((status = 201, description = "A build hook: POST to its url builds the branch", body = BuildHookView)))]
async fn create_hook(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
    body: web::Json<HookBody>,
) -> ApiResult<HttpResponse> {
    let site = find_site(&state, &who.tenant(), &id)?;
    let b = body.into_inner();
    let link = state.store.builds().repo(&site.id)?;
    let branch = match b.branch.or(link.map(|l| l.repo_branch)) {
        Some(br) => valid_branch(&br)?,
        None => "main".into(),
    };
    let title = b.title.unwrap_or_default();
    if title.len() > 255 {
        return Err(ApiError::invalid("title: at most 255 characters"));
    }
    let hook = state.store.builds().create_hook(BuildHook {
        id: new_id(),
        site_id: site.id.clone(),
        title,
        branch,
        created_at: Timestamp::now(),
    })?;
    Ok(created(hook_view(&state, &hook)))
}

#[utoipa::path(get, path = "/api/v1/sites/{site_id}/build_hooks", tag = "builds", params(("site_id" = String, Path)),
    responses((status = 200, description = "The site's build hooks", body = Vec<BuildHookView>)))]
async fn list_hooks(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let site = find_site(&state, &who.tenant(), &id)?;
    let hooks: Vec<_> = state
        .store
        .builds()
        .hooks(&site.id)?
        .iter()
        .map(|h| hook_view(&state, h))
        .collect();
    Ok(HttpResponse::Ok().json(hooks))
}

fn find_hook(
    state: &AppState,
    tenant: &Tenant,
    site_id: &str,
    hook_id: &str,
) -> ApiResult<BuildHook> {
    let site = find_site(state, tenant, site_id)?;
    state
        .store
        .builds()
        .hook_by_id(hook_id)?
        .filter(|h| h.site_id == site.id)
        .ok_or(ApiError::NotFound("build hook"))
}

#[utoipa::path(get, path = "/api/v1/sites/{site_id}/build_hooks/{hook_id}", tag = "builds", params(("site_id" = String, Path), ("hook_id" = String, Path)),
    responses((status = 200, description = "One build hook", body = BuildHookView)))]
async fn get_hook(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let h = find_hook(&state, &who.tenant(), &path.0, &path.1)?;
    Ok(HttpResponse::Ok().json(hook_view(&state, &h)))
}

#[utoipa::path(put, path = "/api/v1/sites/{site_id}/build_hooks/{hook_id}", tag = "builds", params(("site_id" = String, Path), ("hook_id" = String, Path)),
    request_body = HookBody,
    responses((status = 204, description = "Updated")))]
async fn update_hook(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String)>,
    body: web::Json<HookBody>,
) -> ApiResult<HttpResponse> {
    let mut h = find_hook(&state, &who.tenant(), &path.0, &path.1)?;
    let b = body.into_inner();
    if let Some(t) = b.title {
        if t.len() > 255 {
            return Err(ApiError::invalid("title: at most 255 characters"));
        }
        h.title = t;
    }
    if let Some(br) = b.branch {
        h.branch = valid_branch(&br)?;
    }
    state.store.builds().put_hook(&h)?;
    Ok(no_content())
}

#[utoipa::path(delete, path = "/api/v1/sites/{site_id}/build_hooks/{hook_id}", tag = "builds", params(("site_id" = String, Path), ("hook_id" = String, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete_hook(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let h = find_hook(&state, &who.tenant(), &path.0, &path.1)?;
    state.store.builds().delete_hook(&h.site_id, &h.id)?;
    Ok(no_content())
}

#[derive(Deserialize, utoipa::IntoParams)]
struct TriggerQuery {
    trigger_branch: Option<String>,
    trigger_title: Option<String>,
    clear_cache: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/build_hooks/{hook_id}", tag = "builds", params(("hook_id" = String, Path), TriggerQuery),
    responses((status = 200, description = "A build was queued (the hook's id is its credential)")))]
async fn trigger_hook(
    state: web::Data<AppState>,
    _public: Public,
    id: web::Path<String>,
    q: web::Query<TriggerQuery>,
) -> ApiResult<HttpResponse> {
    let hook = state
        .store
        .builds()
        .hook_by_id(&id)?
        .ok_or(ApiError::NotFound("build hook"))?;
    let site = state
        .store
        .sites()
        .get(&hook.site_id)?
        .ok_or(ApiError::NotFound("build hook"))?;
    let q = q.into_inner();
    let branch = q.trigger_branch.unwrap_or(hook.branch.clone());
    let title = q
        .trigger_title
        .or_else(|| Some(format!("triggered by hook: {}", hook.title)));
    let b = enqueue(
        &state,
        &site,
        Some(&branch),
        title,
        q.clear_cache.unwrap_or(false),
    )?;
    Ok(HttpResponse::Ok().json(build_view(&b)))
}

// The git host's push webhook.

/// Which host signed a push, by its headers; None when it carries no signature at all.
fn signed_by(req: &HttpRequest, secret: &str, body: &[u8]) -> bool {
    use ring::hmac;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    if let Some(sig) = header("x-hub-signature-256") {
        let Some(hex_sig) = sig.strip_prefix("sha256=") else {
            return false;
        };
        return hex::decode(hex_sig).is_ok_and(|raw| hmac::verify(&key, body, &raw).is_ok());
    }
    if let Some(sig) = header("x-gitea-signature").or(header("x-forgejo-signature")) {
        return hex::decode(sig).is_ok_and(|raw| hmac::verify(&key, body, &raw).is_ok());
    }
    if let Some(token) = header("x-gitlab-token") {
        return crate::model::secret::hashes_equal(token.as_bytes(), secret.as_bytes());
    }
    false
}

#[utoipa::path(post, path = "/api/v1/git_hooks/{site_id}", tag = "builds", params(("site_id" = String, Path)),
    responses(
        (status = 200, description = "A push to a branch that builds queued a build; any other event or branch is acknowledged and ignored"),
        (status = 401, description = "Unsigned or mis-signed: nothing is queued"),
    ))]
async fn git_push(
    req: HttpRequest,
    state: web::Data<AppState>,
    _public: Public,
    id: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let unsigned = ApiError::Unauthorized(
        "the push is not signed with the site's deploy_hook_secret (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)",
    );
    let site = state.store.sites().get(&id)?;
    let link = match &site {
        Some(s) => state.store.builds().repo(&s.id)?,
        None => None,
    };
    let (Some(site), Some(link)) = (site, link) else {
        return Err(unsigned);
    };
    if !signed_by(&req, &link.hook_secret, &body) {
        return Err(unsigned);
    }
    let event = [
        "x-github-event",
        "x-gitea-event",
        "x-forgejo-event",
        "x-gitlab-event",
    ]
    .iter()
    .find_map(|h| req.headers().get(*h).and_then(|v| v.to_str().ok()))
    .unwrap_or("push")
    .to_ascii_lowercase();
    if event != "push" && event != "push hook" {
        return Ok(
            HttpResponse::Ok().json(serde_json::json!({"ignored": format!("event {event}")}))
        );
    }
    #[derive(Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        git_ref: Option<String>,
        #[serde(default)]
        deleted: bool,
        after: Option<String>,
    }
    let push: Push = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidJson(format!("the push event is not JSON: {e}")))?;
    let branch = push
        .git_ref
        .as_deref()
        .and_then(|r| r.strip_prefix("refs/heads/"))
        .map(str::to_string);
    let deleted = push.deleted
        || push
            .after
            .as_deref()
            .is_some_and(|a| a.chars().all(|c| c == '0'));
    let Some(branch) = branch.filter(|b| !deleted && link.builds_branch(b)) else {
        return Ok(HttpResponse::Ok()
            .json(serde_json::json!({"ignored": "not a push to a branch this site builds"})));
    };
    let b = enqueue(
        &state,
        &site,
        Some(&branch),
        Some(format!("push to {branch}")),
        false,
    )?;
    Ok(HttpResponse::Ok().json(build_view(&b)))
}

// The log.

#[derive(Serialize, utoipa::ToSchema)]
pub struct LogLineView {
    ts: Timestamp,
    section: String,
    message: String,
}

#[utoipa::path(get, path = "/api/v1/deploys/{deploy_id}/log", tag = "builds", params(("deploy_id" = String, Path)),
    responses((status = 200, description = "The build's log: server-sent events while it runs (Accept: text/event-stream; Last-Event-ID resumes), else a JSON list", body = Vec<LogLineView>)))]
async fn deploy_log(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let deploy = state
        .store
        .deploys()
        .get(&id)?
        .filter(|d| tenant.owns(&d.reseller_id, &d.user_id))
        .ok_or(ApiError::NotFound("deploy"))?;
    let build = state
        .store
        .builds()
        .of_deploy(&deploy.site_id, &deploy.id)?
        .ok_or(ApiError::NotFound("build log of this deploy"))?;
    let wants_stream = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if !wants_stream {
        let lines: Vec<_> = state
            .store
            .builds()
            .log(&build.id, 0)?
            .into_iter()
            .map(|(_, l)| LogLineView {
                ts: l.ts,
                section: l.section,
                message: l.message,
            })
            .collect();
        return Ok(HttpResponse::Ok().json(lines));
    }
    let from = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(0, |n| n + 1);
    let store = state.store.clone();
    let build_id = build.id.clone();
    let stream = futures_util::stream::unfold(
        (store, build_id, from, false),
        |(store, build_id, mut next, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let lines = store.builds().log(&build_id, next).unwrap_or_default();
                let done = store
                    .builds()
                    .get(&build_id)
                    .ok()
                    .flatten()
                    .is_none_or(|b| b.done());
                if !lines.is_empty() || done {
                    let mut out = String::new();
                    for (n, l) in &lines {
                        let data = serde_json::json!({"ts": l.ts, "section": l.section, "message": l.message});
                        out.push_str(&format!("id: {n}\nevent: log\ndata: {data}\n\n"));
                        next = n + 1;
                    }
                    // A build that ended says so once its last lines are out.
                    let end = done
                        && store
                            .builds()
                            .log(&build_id, next)
                            .map_or(true, |l| l.is_empty());
                    if end {
                        out.push_str("event: done\ndata: {}\n\n");
                    }
                    return Some((
                        Ok::<_, actix_web::Error>(web::Bytes::from(out)),
                        (store, build_id, next, end),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
