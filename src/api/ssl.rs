//! Certificates as a paid action (Netlify reseller): `POST /sites/{id}/ssl` orders an ACME
//! certificate for the site's verified custom domain and charges the named payment method once
//! (retries with the same `Idempotency-Key` never charge twice); `GET /sites/{id}/ssl` shows it.

use super::sites::find_site;
use crate::auth::guard::{BillingWrite, Key, KeyOrUser, SitesRead};
use crate::auth::Tenant;
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::billing::PaidAction;
use crate::store::certs::{CertRecord, CertState};
use crate::store::domains::DomainStatus;
use crate::store::sites::Site;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

super::endpoints! { ENDPOINTS:
    "/sites/{site_id}/ssl" {
        post provision, WaitsOnNetwork;
        get show;
    }
}

/// A site's certificate.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Certificate {
    /// pending, issued, failed or uploaded
    #[schema(value_type = String)]
    state: CertState,
    domains: Vec<String>,
    issuer: Option<String>,
    expires_at: Option<Timestamp>,
    error: Option<String>,
    renewals: u32,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// The charge recorded for the certificate (POST only)
    charge_id: Option<String>,
}

fn cert_view(rec: &CertRecord, charge_id: Option<&str>) -> Certificate {
    Certificate {
        state: rec.state,
        domains: vec![rec.domain.clone()],
        issuer: rec.issuer.clone(),
        expires_at: rec.not_after,
        error: rec.error.clone(),
        renewals: rec.renewals,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        charge_id: charge_id.map(str::to_string),
    }
}

/// The site's verified custom domain: its `custom_domain` or a domain record attached to it.
fn verified_domain(state: &AppState, site: &Site) -> ApiResult<String> {
    let domains = state.store.domains();
    let mut candidates = Vec::new();
    if let Some(name) = &site.custom_domain {
        candidates.extend(domains.by_name(name.as_str())?);
    }
    candidates.extend(
        domains
            .list(&site.reseller_id)?
            .into_iter()
            .filter(|d| d.site_id.as_deref() == Some(&site.id)),
    );
    candidates
        .into_iter()
        .find(|d| d.reseller_id == site.reseller_id && d.status == DomainStatus::Verified)
        .map(|d| d.name.as_str().to_string())
        .ok_or_else(|| {
            ApiError::invalid("the site has no verified custom domain; add one with POST /domains and verify it first")
        })
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct Provision {
    payment_method_id: Option<String>,
}

#[utoipa::path(
post, path = "/api/v1/sites/{site_id}/ssl", tag = "billing", params(("site_id" = String, Path, description = "Site id, name or custom domain"),
        ("Idempotency-Key" = Option<String>, Header, description = "Names this request: a retry with the same key gets the first answer (and no second charge); the key on another request is 422")),
    request_body(content = Option<Provision>, description = "May be empty when the reseller has one payment method"),
    responses(
        (status = 200, description = "The issued certificate and its charge", body = Certificate),
        (status = 402, description = "No usable payment method of this reseller", body = crate::error::ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = crate::error::ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = crate::error::ErrorBody),
    )
)]
async fn provision(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<BillingWrite>,
    site_id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let body: Provision = super::json_or_default(&raw)?;
    let reseller = who.reseller();
    let tenant = Tenant {
        reseller: reseller.clone(),
        user: None,
    };
    let site = find_site(&state, &tenant, &site_id)?;
    let claimed = match super::billing::idempotency(
        &req,
        &state,
        &reseller.id,
        PaidAction::SslCertificate,
        &raw,
    )? {
        super::billing::Idempotency::Replay(answer) => return Ok(answer),
        super::billing::Idempotency::Run(claimed) => claimed,
    };
    let billing = state.store.billing();
    let domain = verified_domain(&state, &site)?;
    let method = billing.require_method(&reseller.id, body.payment_method_id.as_deref())?;
    if !state.acme.is_configured() {
        return Err(ApiError::invalid(
            "this server issues no certificates: the operator has not set --acme-directory",
        ));
    }
    let rec = state.acme.issue(&domain, &site.id, &reseller.id).await?;
    if rec.state != CertState::Issued || rec.error.is_some() {
        let why = rec
            .error
            .clone()
            .unwrap_or_else(|| "the certificate was not issued".into());
        return Err(ApiError::Conflict(
            crate::error::Conflict::CertificateFailed,
            format!("no certificate for {domain}: {why}"),
        ));
    }
    // The CA has answered: the charge is written under the gate (`GateMode::WaitsOnNetwork`),
    // with the answer a retry with the same key gets.
    let _gate = super::write_gate(&req, &state).await;
    let answer = |charge: &crate::store::billing::Charge| {
        serde_json::to_vec(&cert_view(&rec, Some(&charge.id))).unwrap_or_default()
    };
    let charge = billing.charge(
        &reseller.id,
        &method,
        PaidAction::SslCertificate,
        &domain,
        claimed.as_ref().map(|c| c.answer(200, &answer)),
        Timestamp::now(),
    )?;
    if let Some(claimed) = claimed {
        claimed.done();
    }
    Ok(HttpResponse::Ok().json(cert_view(&rec, Some(&charge.id))))
}

#[utoipa::path(
get, path = "/api/v1/sites/{site_id}/ssl", tag = "sites", params(("site_id" = String, Path, description = "Site id, name or custom domain")),
    responses((status = 200, description = "The site's latest certificate", body = Certificate))
)]
async fn show(
    state: web::Data<AppState>,
    who: KeyOrUser<SitesRead>,
    site_id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let tenant = who.tenant();
    let site = find_site(&state, &tenant, &site_id)?;
    let certs = state.store.certs();
    let rec = certs
        .all()?
        .into_iter()
        .filter(|c| c.site_id == site.id)
        .max_by_key(|c| c.updated_at)
        .ok_or(ApiError::NotFound("certificate"))?;
    Ok(HttpResponse::Ok().json(cert_view(&rec, None)))
}
