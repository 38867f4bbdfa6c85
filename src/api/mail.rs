//! Notification mail settings (`settings:write`): the sender's DNS status
//! (`GET /reseller/notification_email`, `POST /reseller/notification_email/verify`) and the mail
//! templates (`GET /reseller/emails`, `GET/PUT/DELETE /reseller/emails/{kind}`,
//! `POST /reseller/emails/{kind}/preview`).

use super::no_content;
use crate::auth::guard::{Key, Operator, SettingsWrite};
use crate::error::{ApiError, ApiResult};
use crate::mail::templates::{self, Kind, Rendered, Vars};
use crate::model::Timestamp;
use crate::store::mail::Sender;
use crate::store::resellers::Reseller;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

super::endpoints! { ENDPOINTS:
    "/reseller/notification_email" {
        get sender;
    }
    "/reseller/notification_email/verify" {
        post verify, WaitsOnNetwork;
    }
    "/reseller/emails" {
        get list_templates;
    }
    "/reseller/emails/{kind}" {
        get get_template;
        put put_template;
        delete delete_template;
    }
    "/reseller/emails/{kind}/preview" {
        post preview;
    }
    "/admin/notification_email" {
        get instance_sender;
    }
}

/// The instance's own sender: what mail goes from until a reseller's is verified.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InstanceSender {
    pub from: String,
    /// The DKIM record the operator publishes for that address's domain.
    pub dkim: DnsRecord,
    /// False when no relay is set (`--smtp-url`): no mail is sent.
    pub relay_configured: bool,
}

#[utoipa::path(
get, path = "/api/v1/admin/notification_email", tag = "operator",
    responses((status = 200, description = "The instance's sender and the DKIM record to publish for it", body = InstanceSender))
)]
async fn instance_sender(state: web::Data<AppState>, _: Operator) -> ApiResult<HttpResponse> {
    let from = state.mailer.default_from.clone();
    let domain = from.rsplit('@').next().unwrap_or_default().to_string();
    // Made when the server starts with a relay; without one there is nothing to publish.
    let key = state
        .store
        .signing_keys()
        .active(crate::mail::INSTANCE, crate::store::signing::Alg::RS256)?;
    let (name, value) = match key {
        Some(key) => (
            format!("{}._domainkey.{domain}", crate::mail::selector(&key)),
            crate::mail::dkim::record(&key).map_err(ApiError::internal)?,
        ),
        None => (String::new(), String::new()),
    };
    Ok(HttpResponse::Ok().json(InstanceSender {
        dkim: DnsRecord {
            r#type: "TXT",
            name,
            value,
            found: false,
        },
        relay_configured: state.mailer.is_enabled(),
        from,
    }))
}

/// A DNS record to publish, and whether the last check found it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DnsRecord {
    #[schema(example = "TXT")]
    pub r#type: &'static str,
    pub name: String,
    /// What the record must hold (for SPF: any `v=spf1` policy that lets the relay send).
    pub value: String,
    pub found: bool,
}

/// The reseller's sender and what DNS says of it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SenderView {
    pub from: String,
    pub name: Option<String>,
    /// `pending` until both records are found, then `verified` (mail goes from this address);
    /// `failed` if its signing key was deleted.
    pub status: &'static str,
    pub dkim: DnsRecord,
    pub spf: DnsRecord,
    /// What the last check missed.
    pub error: Option<String>,
    pub last_checked_at: Option<Timestamp>,
    pub next_check_at: Option<Timestamp>,
    pub verified_at: Option<Timestamp>,
    /// Where mail goes from meanwhile.
    pub sending_from: String,
}

fn sender_view(state: &AppState, s: Sender) -> ApiResult<SenderView> {
    let (name, value) = crate::mail::sender_record(&state.store, &s).unwrap_or_else(|e| {
        (
            format!("{}._domainkey.{}", s.selector, s.domain()),
            e.to_string(),
        )
    });
    let verified = s.status == crate::store::mail::SenderStatus::Verified;
    Ok(SenderView {
        dkim: DnsRecord {
            r#type: "TXT",
            name,
            value,
            found: s.dkim_found,
        },
        spf: DnsRecord {
            r#type: "TXT",
            name: s.domain().to_string(),
            value: "v=spf1 … (a policy that allows your mail relay) ~all".into(),
            found: s.spf_found,
        },
        sending_from: if verified {
            s.from.clone()
        } else {
            state.mailer.default_from.clone()
        },
        status: s.status.name(),
        next_check_at: (!verified).then_some(s.next_check_at),
        from: s.from,
        name: s.name,
        error: s.error,
        last_checked_at: s.last_checked_at,
        verified_at: s.verified_at,
    })
}

fn own_sender(state: &AppState, reseller: &Reseller) -> ApiResult<Sender> {
    state
        .store
        .mail()
        .sender(&reseller.id)?
        .ok_or(ApiError::NotFound("notification email"))
}

#[utoipa::path(
get, path = "/api/v1/reseller/notification_email", tag = "mail",
    responses((status = 200, description = "The sender, the DNS records to publish and whether they were found; 404 if no notification email is set", body = SenderView))
)]
async fn sender(state: web::Data<AppState>, who: Key<SettingsWrite>) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let sender = own_sender(&state, reseller)?;
    Ok(HttpResponse::Ok().json(sender_view(&state, sender)?))
}

#[utoipa::path(
post, path = "/api/v1/reseller/notification_email/verify", tag = "mail",
    responses((status = 200, description = "Checked now: the sender as DNS shows it", body = SenderView))
)]
async fn verify(state: web::Data<AppState>, who: Key<SettingsWrite>) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let sender = own_sender(&state, reseller)?;
    // The lookups run outside the write gate (`GateMode::WaitsOnNetwork`); the result is one
    // atomic write of the sender record.
    let checked = crate::mail::verify_sender(&state.mailer, sender).await?;
    Ok(HttpResponse::Ok().json(sender_view(&state, checked)?))
}

/// A template kind.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    #[schema(example = "deploy_ready")]
    pub kind: &'static str,
    /// True if the reseller's own template is used, false for the built-in one.
    pub custom: bool,
    /// The template's HTML (its `<title>` is the subject).
    pub html: String,
    /// The `{{placeholders}}` it may use.
    pub placeholders: Vec<&'static str>,
}

fn kind_of(raw: &str) -> ApiResult<Kind> {
    Kind::parse(raw).ok_or(ApiError::NotFound("mail template"))
}

fn template_view(state: &AppState, reseller: &Reseller, kind: Kind) -> ApiResult<TemplateView> {
    let custom = state.store.mail().template(&reseller.id, kind.name())?;
    let mut placeholders = vec!["reseller_name", "user_email"];
    placeholders.extend_from_slice(kind.placeholders());
    Ok(TemplateView {
        kind: kind.name(),
        custom: custom.is_some(),
        html: custom.unwrap_or_else(|| kind.builtin().to_string()),
        placeholders,
    })
}

#[utoipa::path(
get, path = "/api/v1/reseller/emails", tag = "mail",
    responses((status = 200, description = "Every template kind, the reseller's or the built-in one", body = Vec<TemplateView>))
)]
async fn list_templates(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let all = Kind::ALL
        .into_iter()
        .map(|k| template_view(&state, reseller, k))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(all))
}

#[utoipa::path(
get, path = "/api/v1/reseller/emails/{kind}", tag = "mail",
    params(("kind" = String, Path, description = "A template kind, e.g. deploy_ready")),
    responses((status = 200, description = "The template in use", body = TemplateView))
)]
async fn get_template(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    kind: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let kind = kind_of(&kind)?;
    Ok(HttpResponse::Ok().json(template_view(&state, reseller, kind)?))
}

/// A template sent as `text/html`.
async fn html_body(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
) -> ApiResult<String> {
    let limit = crate::store::mail::MAX_TEMPLATE_BYTES;
    super::html_body(
        req,
        payload,
        limit,
        state.settings.body_timeout(),
        "templates",
    )
    .await
}

#[utoipa::path(
put, path = "/api/v1/reseller/emails/{kind}", tag = "mail",
    params(("kind" = String, Path, description = "A template kind, e.g. deploy_ready")),
    request_body(content = String, content_type = "text/html", description = "The template's HTML, at most 64 KiB; its <title> is the subject"),
    responses((status = 204, description = "Stored"))
)]
async fn put_template(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    kind: web::Path<String>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let kind = kind_of(&kind)?;
    let html = html_body(&req, &state, payload).await?;
    state
        .store
        .mail()
        .put_template(&reseller.id, kind.name(), &html)?;
    Ok(no_content())
}

#[utoipa::path(
delete, path = "/api/v1/reseller/emails/{kind}", tag = "mail",
    params(("kind" = String, Path, description = "A template kind, e.g. deploy_ready")),
    responses((status = 204, description = "Back to the built-in template"))
)]
async fn delete_template(
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    kind: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let kind = kind_of(&kind)?;
    state
        .store
        .mail()
        .delete_template(&reseller.id, kind.name())?;
    Ok(no_content())
}

#[utoipa::path(
post, path = "/api/v1/reseller/emails/{kind}/preview", tag = "mail",
    params(("kind" = String, Path, description = "A template kind, e.g. deploy_ready")),
    request_body(content = String, content_type = "text/html", description = "Optional: a template to preview instead of the stored one"),
    responses((status = 200, description = "The mail as it would be sent, with sample values", body = Rendered))
)]
async fn preview(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<SettingsWrite>,
    kind: web::Path<String>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let kind = kind_of(&kind)?;
    let sent_length = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let html = if sent_length > 0 {
        Some(html_body(&req, &state, payload).await?)
    } else {
        state.store.mail().template(&reseller.id, kind.name())?
    };
    let vars = Vars::sample(kind, &reseller.name);
    Ok(HttpResponse::Ok().json(templates::render(kind, html.as_deref(), &vars)))
}
