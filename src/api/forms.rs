//! Forms and submissions: `GET /sites/{id}/forms`, `GET /forms`, `GET /sites/{id}/submissions`,
//! `GET /forms/{id}/submissions`, `GET /submissions`, `GET/DELETE /submissions/{id}`.

use super::sites::find_site;
use super::{no_content, paginate, Order, PageQuery};
use crate::auth::guard::{KeyOrUser, SitesWrite, SubmissionsRead};
use crate::auth::{Principal, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::forms::{Form, Submission};
use crate::views::forms::{submission_view, SubmissionView};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

super::endpoints! { ENDPOINTS:
    "/sites/{site_id}/forms" {
        get site_forms;
    }
    "/sites/{site_id}/submissions" {
        get site_submissions;
    }
    "/forms" {
        get all_forms;
    }
    "/forms/{form_id}/submissions" {
        get form_submissions;
    }
    "/submissions" {
        get all_submissions;
    }
    "/submissions/{id}" {
        get get_submission;
        delete delete_submission;
    }
}

/// A detected form.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct FormView {
    id: String,
    site_id: String,
    name: String,
    paths: Vec<String>,
    submission_count: u64,
    fields: Vec<FormField>,
    action: Option<String>,
    honeypot: Option<String>,
    created_at: Timestamp,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct FormField {
    name: String,
    /// Always `text`
    #[serde(rename = "type")]
    kind: &'static str,
}

fn form_view(f: &Form) -> FormView {
    FormView {
        id: f.id.clone(),
        site_id: f.site_id.clone(),
        name: f.name.clone(),
        paths: f.paths.clone(),
        submission_count: f.submission_count,
        fields: f
            .fields
            .iter()
            .map(|n| FormField {
                name: n.clone(),
                kind: "text",
            })
            .collect(),
        action: f.action.clone(),
        honeypot: f.honeypot.clone(),
        created_at: f.created_at,
    }
}

/// The tenant's forms: every site of the reseller, or of the user.
fn tenant_forms(state: &AppState, tenant: &Tenant) -> ApiResult<Vec<Form>> {
    let user = tenant.user.as_ref().map(|u| u.id.as_str());
    let mut forms = Vec::new();
    for site in state.store.sites().list(&tenant.reseller.id, user)? {
        forms.extend(state.store.forms().list(&site.id)?);
    }
    Ok(forms)
}

fn find_form(state: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Form> {
    state
        .store
        .forms()
        .get(id)?
        .filter(|f| tenant.owns(&f.reseller_id, &f.user_id))
        .ok_or(ApiError::NotFound("form"))
}

fn find_submission(state: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Submission> {
    state
        .store
        .forms()
        .submission(id)?
        .filter(|s| tenant.owns(&s.reseller_id, &s.user_id))
        .ok_or(ApiError::NotFound("submission"))
}

#[utoipa::path(
get, path = "/api/v1/sites/{site_id}/forms", tag = "forms", params(("site_id" = String, Path, description = "Site id, name or custom domain"), super::PageQuery),
    responses((status = 200, description = "The site's forms", body = Vec<FormView>))
)]
async fn site_forms(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SubmissionsRead>,
    site_id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &site_id)?;
    let forms = state.store.forms().list(&site.id)?;
    let views = forms.iter().map(form_view).collect();
    paginate(&req, &who.scope(), views, |f| &f.id, Order::OldestFirst, &q)
}

#[utoipa::path(
get, path = "/api/v1/forms", tag = "forms", params(super::PageQuery),
    responses((status = 200, description = "Every form of the tenant", body = Vec<FormView>))
)]
async fn all_forms(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SubmissionsRead>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let forms = tenant_forms(&state, &tenant)?;
    let views = forms.iter().map(form_view).collect();
    paginate(&req, &who.scope(), views, |f| &f.id, Order::OldestFirst, &q)
}

/// One page of the submissions to `forms`, newest first, read from the store page by page.
fn submissions_page(
    req: &HttpRequest,
    state: &AppState,
    who: &Principal,
    forms: &[Form],
    q: &PageQuery,
) -> ApiResult<HttpResponse> {
    let store = state.store.forms();
    let mut total = 0;
    for f in forms {
        total += store.live_count(&f.id)? as usize;
    }
    let tenant = who.scope();
    let want = q.want(req, &tenant)?;
    let window = store.window_of_forms(forms, &want)?;
    let window = window.map(|s| submission_view(&s));
    super::respond(req, &tenant, &want, window, |s| s.id.as_bytes(), total)
}

#[utoipa::path(
get, path = "/api/v1/sites/{site_id}/submissions", tag = "forms", params(("site_id" = String, Path, description = "Site id, name or custom domain"), super::PageQuery),
    responses((status = 200, description = "The site's submissions", body = Vec<SubmissionView>))
)]
async fn site_submissions(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SubmissionsRead>,
    site_id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &site_id)?;
    let forms = state.store.forms().list(&site.id)?;
    submissions_page(&req, &state, &who, &forms, &q)
}

#[utoipa::path(
get, path = "/api/v1/forms/{form_id}/submissions", tag = "forms", params(("form_id" = String, Path, description = "Form id"), super::PageQuery),
    responses((status = 200, description = "The form's submissions", body = Vec<SubmissionView>))
)]
async fn form_submissions(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SubmissionsRead>,
    form_id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let form = find_form(&state, &tenant, &form_id)?;
    submissions_page(&req, &state, &who, &[form], &q)
}

#[utoipa::path(
get, path = "/api/v1/submissions", tag = "forms", params(super::PageQuery),
    responses((status = 200, description = "Every submission of the tenant", body = Vec<SubmissionView>))
)]
async fn all_submissions(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: KeyOrUser<SubmissionsRead>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let forms = tenant_forms(&state, &tenant)?;
    submissions_page(&req, &state, &who, &forms, &q)
}

/// Netlify's listFormSubmission answers an array with the one submission.
#[utoipa::path(
get, path = "/api/v1/submissions/{id}", tag = "forms", params(("id" = String, Path, description = "Submission id")),
    responses((status = 200, description = "The submission", body = SubmissionView))
)]
async fn get_submission(
    state: web::Data<AppState>,
    who: KeyOrUser<SubmissionsRead>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let sub = find_submission(&state, &tenant, &id)?;
    Ok(HttpResponse::Ok().json(vec![submission_view(&sub)]))
}

#[utoipa::path(
delete, path = "/api/v1/submissions/{id}", tag = "forms", params(("id" = String, Path, description = "Submission id")),
    responses((status = 204, description = "Deleted"))
)]
async fn delete_submission(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesWrite>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let sub = find_submission(&state, &tenant, &id)?;
    state.store.forms().delete_submission(&sub)?;
    Ok(no_content())
}
