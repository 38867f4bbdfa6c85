//! Deploys, Netlify's digest flow: `POST /sites/{id}/deploys` (JSON file map, or a zip body),
//! `PUT /sites/{id}/deploys/{deploy_id}`, `PUT /deploys/{id}/files/{path}`, listing, restore, cancel.

use super::off_worker;
use super::sites::find_site;
use super::PageQuery;
use crate::auth::guard::{KeyOrUser, SitesRead, SitesWrite};
use crate::auth::Tenant;
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::deploys::{normalize_path, validate_files, Deploy, NewDeploy, Unpacked};
use crate::store::sites::Site;
use crate::views::sites::deploy_view;
use crate::views::DeployView;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;

super::endpoints! { ENDPOINTS:
    "/sites/{site_id}/deploys" {
        get list;
        post create, StreamsBody;
    }
    "/sites/{site_id}/deploys/{deploy_id}" {
        get get_in_site;
        put update;
    }
    "/sites/{site_id}/deploys/{deploy_id}/restore" {
        post restore;
    }
    "/deploys/{deploy_id}" {
        get get;
        delete delete;
    }
    "/deploys/{deploy_id}/cancel" {
        post cancel;
    }
    "/deploys/{deploy_id}/lock" {
        post lock;
    }
    "/deploys/{deploy_id}/unlock" {
        post unlock;
    }
    "/deploys/{deploy_id}/files/{path:.*}" {
        put upload, StreamsBody;
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct DeployBody {
    files: Option<BTreeMap<String, String>>,
    draft: Option<bool>,
    branch: Option<String>,
    title: Option<String>,
    functions: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeployQuery {
    title: Option<String>,
    draft: Option<bool>,
    branch: Option<String>,
}

/// A deploy of the tenant with its site; anyone else's is "not found".
fn find_deploy(state: &AppState, tenant: &Tenant, id: &str) -> ApiResult<(Site, Deploy)> {
    let deploy = state
        .store
        .deploys()
        .get(id)?
        .filter(|d| tenant.owns(&d.reseller_id, &d.user_id))
        .ok_or(ApiError::NotFound("deploy"))?;
    let site = state
        .store
        .sites()
        .get(&deploy.site_id)?
        .ok_or(ApiError::NotFound("deploy"))?;
    Ok((site, deploy))
}

/// A deploy addressed under its site (`/sites/{site}/deploys/{deploy}`).
fn find_site_deploy(
    state: &AppState,
    tenant: &Tenant,
    site_id: &str,
    deploy_id: &str,
) -> ApiResult<(Site, Deploy)> {
    let site = find_site(state, tenant, site_id)?;
    let (_, deploy) = find_deploy(state, tenant, deploy_id)?;
    if deploy.site_id != site.id {
        return Err(ApiError::NotFound("deploy"));
    }
    Ok((site, deploy))
}

fn reply(state: &AppState, tenant: &Tenant, site: &Site, d: &Deploy) -> ApiResult<HttpResponse> {
    // Re-read the site so `published` reflects what this deploy just did.
    let site = state
        .store
        .sites()
        .get(&site.id)?
        .unwrap_or_else(|| site.clone());
    Ok(HttpResponse::Ok().json(deploy_view(&state.views, &tenant.reseller, &site, d)))
}

fn parse_body(bytes: &[u8]) -> ApiResult<DeployBody> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(ApiError::invalid(
            "the body is a zip archive: send it with Content-Type: application/zip",
        ));
    }
    let body: DeployBody = super::json_or_default(bytes)?;
    if body.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(ApiError::invalid(
            "functions are not supported by this server",
        ));
    }
    Ok(body)
}

fn is_zip(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/zip")
        })
}

#[utoipa::path(
post, path = "/api/v1/sites/{site_id}/deploys", tag = "deploys", params(("site_id" = String, Path, description = "Site id, name or custom domain"), DeployQuery),
    request_body(content(
        (DeployBody = "application/json"),
        (Vec<u8> = "application/zip"),
    ), description = "A file digest (then upload the required files), or a zip of the whole site"),
    responses((status = 200, description = "The deploy, with the SHA-1s still `required`", body = DeployView))
)]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    site_id: web::Path<String>,
    q: web::Query<DeployQuery>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &site_id)?;
    let q = q.into_inner();
    let now = Timestamp::now();
    let s = &state.settings;
    let deploy = if is_zip(&req) {
        // Spooled to disk, then expanded entry by entry into the blob store: memory stays flat
        // however large the archive. The gate is taken only for the records.
        let spool = receive(&state, payload, s.max_upload(), s.upload_timeout()).await?;
        let limits = ZipLimits {
            max_files: s.max_deploy_files(),
            max_bytes: s.max_deploy_bytes(),
        };
        let (store, disk) = (state.store.clone(), state.disk.clone());
        let user_id = site.user_id.clone();
        let max = state
            .store
            .plans()
            .limits_of(&site.reseller_id, &site.user_id)?
            .0
            .max_storage_mb;
        let (files, _pinned) = off_worker(move || {
            let unpacked = unpack_zip(&store, &disk, &user_id, max, &spool, &limits)?;
            Ok::<_, ApiError>(store.store_unpacked(&user_id, max, unpacked)?)
        })
        .await?;
        let opts = NewDeploy {
            // A raw zip has no JSON body: production unless ?draft=true, as on Netlify.
            draft: q.draft.unwrap_or(false),
            title: q.title,
            branch: q.branch,
        };
        let _gate = super::write_gate(&req, &state).await;
        state
            .store
            .deploys()
            .create(&site, opts, Some(files), now)?
    } else {
        let bytes = crate::http::read_body(payload, s.max_body(), s.body_timeout()).await?;
        let body = parse_body(&bytes)?;
        let files = body
            .files
            .map(|f| validate_files(f, s.max_deploy_files()))
            .transpose()?;
        let opts = NewDeploy {
            draft: body.draft.or(q.draft).unwrap_or(false),
            title: body.title.or(q.title),
            branch: body.branch.or(q.branch),
        };
        let _gate = super::write_gate(&req, &state).await;
        let (st, site) = (state.clone(), site.clone());
        off_worker(move || {
            if let Some(files) = &files {
                check_known_rules(&st, &site.user_id, files)?;
            }
            Ok::<_, ApiError>(st.store.deploys().create(&site, opts, files, now)?)
        })
        .await?
    };
    reply(&state, &tenant, &site, &deploy)
}

/// Rules files (`_redirects`, `_headers`, `netlify.toml`) the user already has are checked
/// against the rule limits before the map is recorded; the others are checked on upload.
fn check_known_rules(
    state: &AppState,
    user_id: &str,
    files: &BTreeMap<String, String>,
) -> ApiResult<()> {
    for name in crate::rules::RULE_FILES {
        let Some(sha) = files.get(name) else { continue };
        if state.store.deploys().known_to(user_id, sha) {
            let data = state.store.blobs.read(sha)?;
            crate::rules::check_limits(name, &data).map_err(ApiError::RulesTooLarge)?;
        }
    }
    Ok(())
}

/// Checks written content against the limits of the rules file `name`.
fn check_rules_in(name: &str, blob: &crate::store::blobs::Incoming) -> ApiResult<()> {
    let mut data = Vec::new();
    blob.reopen()?
        .take(crate::rules::MAX_RULES_FILE as u64 + 1)
        .read_to_end(&mut data)
        .map_err(ApiError::internal)?;
    crate::rules::check_limits(name, &data).map_err(ApiError::RulesTooLarge)
}

/// Streams a request body into a new blob's temp file, within `limit` bytes and `deadline`.
async fn receive(
    state: &AppState,
    mut payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> ApiResult<crate::store::blobs::Incoming> {
    use futures_util::StreamExt;
    let mut incoming = state.store.blobs.incoming()?;
    let read = async {
        let mut checked = 0u64;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?;
            if incoming.len() + chunk.len() as u64 > limit as u64 {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            incoming.write(&chunk)?;
            // A long upload stops once the disk reaches the reserve (sampled each second).
            if incoming.len() - checked >= 1 << 20 {
                checked = incoming.len();
                state.disk.check_room(0)?;
            }
        }
        Ok(incoming)
    };
    // A refusal while the client still sends is answered after the rest is drained, by the
    // write gate (`http::drain`).
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| ApiError::BodyTimeout(deadline.as_secs()))?
}

/// The CLI's second step: the file map for a deploy made by `POST` (draft stays as POSTed).
#[utoipa::path(
put, path = "/api/v1/sites/{site_id}/deploys/{deploy_id}", tag = "deploys", params(("site_id" = String, Path, description = "Site id, name or custom domain"), ("deploy_id" = String, Path, description = "Deploy id")),
    request_body(content = DeployBody, description = "The file digest of a two-step deploy"),
    responses((status = 200, description = "The deploy, with the SHA-1s still `required`", body = DeployView))
)]
async fn update(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (site_id, deploy_id) = path.into_inner();
    let (site, deploy) = find_site_deploy(&state, &tenant, &site_id, &deploy_id)?;
    let s = &state.settings;
    let bytes = crate::http::read_body(payload, s.max_body(), s.body_timeout()).await?;
    let body = parse_body(&bytes)?;
    let deploy = match body.files {
        Some(f) => {
            let files = validate_files(f, state.settings.max_deploy_files())?;
            let (st, user_id, id) = (state.clone(), site.user_id.clone(), deploy.id.clone());
            off_worker(move || {
                check_known_rules(&st, &user_id, &files)?;
                Ok::<_, ApiError>(st.store.deploys().set_files(&id, files, Timestamp::now())?)
            })
            .await?
        }
        None => deploy,
    };
    reply(&state, &tenant, &site, &deploy)
}

/// An uploaded file.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct UploadedFile {
    /// The file's SHA-1
    id: String,
    path: String,
    sha: String,
    mime_type: String,
    size: u64,
}

#[utoipa::path(
put, path = "/api/v1/deploys/{deploy_id}/files/{path}", tag = "deploys",
    params(("deploy_id" = String, Path, description = "Deploy id"), ("path" = String, Path, description = "The file's path, percent-encoded")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file; its SHA-1 must match the digest"),
    responses((status = 200, description = "Stored", body = UploadedFile))
)]
async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    deploy_id: web::Path<(String, String)>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (deploy_id, _) = deploy_id.into_inner();
    let (_, deploy) = find_deploy(&state, &tenant, &deploy_id)?;
    // The raw URI: clients percent-encode the path (spaces as %20), so decode it exactly once.
    let raw = req.uri().path();
    let marker = format!("/deploys/{deploy_id}/files/");
    let tail = raw
        .find(&marker)
        .map(|i| &raw[i + marker.len()..])
        .ok_or(ApiError::NotFound("file"))?;
    let decoded = percent_encoding::percent_decode_str(tail)
        .decode_utf8()
        .map_err(|_| ApiError::invalid("the file path is not UTF-8"))?;
    let path = normalize_path(&decoded)?;
    let s = &state.settings;
    let incoming = receive(&state, payload, s.max_upload(), s.upload_timeout()).await?;
    let size = incoming.len();
    // One upload satisfies every path of the map with its digest, so the content is checked as
    // each rules file the map names with that digest, whatever path it was uploaded under.
    let digest = incoming.digest();
    for name in crate::rules::RULE_FILES {
        if state.store.deploys().file_sha(&deploy.id, name)?.as_deref() == Some(digest.as_str()) {
            check_rules_in(name, &incoming)?;
        }
    }
    let _gate = super::write_gate(&req, &state).await;
    let store = state.store.clone();
    let (id, p) = (deploy.id.clone(), path.clone());
    off_worker(move || store.deploys().upload(&id, &p, incoming, Timestamp::now())).await?;
    let sha = state
        .store
        .deploys()
        .file_sha(&deploy.id, &path)?
        .unwrap_or_default();
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    Ok(HttpResponse::Ok().json(UploadedFile {
        id: sha.clone(),
        path: format!("/{path}"),
        sha,
        mime_type: mime.essence_str().to_string(),
        size,
    }))
}

#[utoipa::path(
get, path = "/api/v1/sites/{site_id}/deploys", tag = "deploys", params(("site_id" = String, Path, description = "Site id, name or custom domain"), super::PageQuery),
    responses((status = 200, description = "One page of the site's deploys; `Link` header", body = Vec<DeployView>))
)]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    site_id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &site_id)?;
    let scope = who.scope();
    let want = q.want(&req, &scope)?;
    let (window, total) = state.store.deploys().window(&site.id, &want)?;
    let window = window.map(|d| deploy_view(&state.views, &tenant.reseller, &site, &d));
    super::respond(&req, &scope, &want, window, |d| d.id.as_bytes(), total)
}

#[utoipa::path(
get, path = "/api/v1/sites/{site_id}/deploys/{deploy_id}", tag = "deploys", params(("site_id" = String, Path, description = "Site id, name or custom domain"), ("deploy_id" = String, Path, description = "Deploy id")),
    responses((status = 200, description = "The deploy", body = DeployView))
)]
async fn get_in_site(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (site_id, deploy_id) = path.into_inner();
    let (site, deploy) = find_site_deploy(&state, &tenant, &site_id, &deploy_id)?;
    reply(&state, &tenant, &site, &deploy)
}

/// Deploys are never locked here; netlify-cli's lock call answers the deploy as it is.
#[utoipa::path(
    post, path = "/api/v1/deploys/{deploy_id}/lock", tag = "deploys",
    params(("deploy_id" = String, Path, description = "Deploy id")),
    responses((status = 200, description = "The deploy, unchanged", body = DeployView))
)]
async fn lock(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    get(state, who, id).await
}

/// See `lock`.
#[utoipa::path(
    post, path = "/api/v1/deploys/{deploy_id}/unlock", tag = "deploys",
    params(("deploy_id" = String, Path, description = "Deploy id")),
    responses((status = 200, description = "The deploy, unchanged", body = DeployView))
)]
async fn unlock(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    get(state, who, id).await
}

#[utoipa::path(
get, path = "/api/v1/deploys/{deploy_id}", tag = "deploys", params(("deploy_id" = String, Path, description = "Deploy id")),
    responses((status = 200, description = "The deploy", body = DeployView))
)]
async fn get(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (site, deploy) = find_deploy(&state, &tenant, &id)?;
    reply(&state, &tenant, &site, &deploy)
}

#[utoipa::path(
post, path = "/api/v1/sites/{site_id}/deploys/{deploy_id}/restore", tag = "deploys", params(("site_id" = String, Path, description = "Site id, name or custom domain"), ("deploy_id" = String, Path, description = "Deploy id")),
    responses((status = 200, description = "The deploy, now published", body = DeployView))
)]
async fn restore(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (site_id, deploy_id) = path.into_inner();
    let (site, deploy) = find_site_deploy(&state, &tenant, &site_id, &deploy_id)?;
    let deploy = state
        .store
        .deploys()
        .restore(&deploy.id, Timestamp::now())?;
    let site = state.store.sites().get(&site.id)?.unwrap_or(site);
    Ok(HttpResponse::Created().json(deploy_view(&state.views, &tenant.reseller, &site, &deploy)))
}

#[utoipa::path(
post, path = "/api/v1/deploys/{deploy_id}/cancel", tag = "deploys", params(("deploy_id" = String, Path, description = "Deploy id")),
    responses((status = 200, description = "The deploy, cancelled", body = DeployView))
)]
async fn cancel(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (site, deploy) = find_deploy(&state, &tenant, &id)?;
    let deploy = state.store.deploys().cancel(&deploy.id, Timestamp::now())?;
    Ok(HttpResponse::Created().json(deploy_view(&state.views, &tenant.reseller, &site, &deploy)))
}

/// Netlify's `deleteDeploy`: an old deploy goes, and the storage its files held for the user
/// (what no other deploy of theirs names) with it. The published deploy stays.
#[utoipa::path(
delete, path = "/api/v1/deploys/{deploy_id}", tag = "deploys", params(("deploy_id" = String, Path, description = "Deploy id")),
    responses((status = 204, description = "Deleted, with its file map; files no deploy names any more are swept"))
)]
async fn delete(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let (_, deploy) = find_deploy(&state, &tenant, &id)?;
    let store = state.store.clone();
    off_worker(move || store.deploys().delete(&deploy.id)).await?;
    Ok(super::no_content())
}

pub struct ZipLimits {
    pub max_files: usize,
    pub max_bytes: u64,
}

/// Entries from this size on must not expand more than `MAX_RATIO` times (zip bombs), nor may
/// the whole archive once it expands past it.
const MAX_RATIO: u64 = 200;
const RATIO_FLOOR: u64 = 1 << 20;

/// Expands a zip deploy (spooled in `spool`) entry by entry into temp files of the blob dir,
/// checked against the limits before anything is expanded and again while expanding (declared
/// sizes can lie), against the user's storage quota before anything is expanded (distinct
/// entries by CRC and size are a lower bound of the distinct content), and against the disk
/// reserve as it goes. Nothing is stored yet: see `Store::store_unpacked`.
pub fn unpack_zip(
    store: &crate::store::Store,
    disk: &crate::disk::Disk,
    user_id: &str,
    max_storage_mb: Option<u64>,
    spool: &crate::store::blobs::Incoming,
    limits: &ZipLimits,
) -> ApiResult<Unpacked> {
    let bad = |e: zip::result::ZipError| ApiError::invalid(format!("invalid zip archive: {e}"));
    let too_big = || ApiError::PayloadTooLarge(limits.max_bytes as usize);
    let mut archive = zip::ZipArchive::new(spool.reopen()?).map_err(bad)?;
    if archive.len() > limits.max_files {
        return Err(ApiError::TooManyFiles(limits.max_files));
    }
    let (mut total, mut packed) = (0u64, 0u64);
    let mut entries = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(bad)?;
        if f.is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        let path = normalize_path(&name)?;
        total = total.saturating_add(f.size());
        packed = packed.saturating_add(f.compressed_size());
        if total > limits.max_bytes {
            return Err(too_big());
        }
        if f.size() >= RATIO_FLOOR && f.size() / f.compressed_size().max(1) > MAX_RATIO {
            return Err(too_big());
        }
        distinct.insert((f.crc32(), f.size()));
        entries.push((i, path, f.size()));
    }
    if total >= RATIO_FLOOR && total / packed.max(1) > MAX_RATIO {
        return Err(too_big());
    }
    let at_least: u64 = distinct.iter().map(|(_, size)| size).sum();
    store
        .storage()
        .check_deploy_fits(user_id, at_least, max_storage_mb)?;
    let mut files = BTreeMap::new();
    let mut contents: BTreeMap<String, crate::store::blobs::Parked> = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    for (i, path, size) in entries {
        let f = archive.by_index(i).map_err(bad)?;
        let mut reader = f.take(size + 1);
        let mut blob = store.blobs.incoming()?;
        let mut next_check = 0;
        loop {
            // Expansion stops once the disk reaches its reserve (sampled each second).
            if blob.len() >= next_check {
                disk.check_room(0)?;
                next_check = blob.len() + (1 << 20);
            }
            let n = reader
                .read(&mut buf)
                .map_err(|e| ApiError::invalid(format!("invalid zip entry {path:?}: {e}")))?;
            if n == 0 {
                break;
            }
            blob.write(&buf[..n])?;
        }
        if blob.len() != size {
            return Err(ApiError::invalid(format!(
                "zip entry {path:?} does not match its declared size"
            )));
        }
        if crate::rules::RULE_FILES.contains(&path.as_str()) {
            check_rules_in(&path, &blob)?;
        }
        let sha = blob.digest();
        if !contents.contains_key(&sha) {
            contents.insert(sha.clone(), blob.park()?);
        }
        files.insert(path, sha);
    }
    Ok(Unpacked {
        files,
        contents: contents.into_values().collect(),
    })
}
