//! Host routing: the instance's names reach the app, every other host the edge.

use crate::{edge, error, AppState};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

/// The instance's own names (`--api-host`, loopback names, IP literals) are the app's on every
/// path: no site can answer there, whatever a tenant named or deployed. Any other host is a
/// site's on every path (only an ACME HTTP-01 token in flight for that very host is answered by
/// the app), or the edge's "No site here" page: never the API, so a name nobody configured
/// cannot reach the API or the panel's origin.
pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::FromRequest;
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let host = crate::http::host(req.request());
    let acme_token = || {
        req.path()
            .strip_prefix("/.well-known/acme-challenge/")
            .is_some_and(|token| state.acme.challenge_response(&host, token).is_some())
    };
    if state.names.is_instance_name(&host) || acme_token() {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let Some(edge) = req.app_data::<web::Data<edge::Edge>>().cloned() else {
        return Ok(req.error_response(error::ApiError::internal("the edge is not configured")));
    };
    let target = match state.hosts.site_for_host(&state.store, &host) {
        Ok(t) => t,
        Err(e) => return Ok(req.error_response(e)),
    };
    let (http_req, mut raw) = req.into_parts();
    // Named for the access line, when there is one.
    if let Some(target) = target
        .as_ref()
        .filter(|_| crate::telemetry::access_enabled())
    {
        use actix_web::HttpMessage;
        http_req
            .extensions_mut()
            .insert(crate::http::ServedSite(target.site.id.clone()));
    }
    let payload = web::Payload::from_request(&http_req, &mut raw).await?;
    let resp = match &target {
        Some(target) => edge::serve(&http_req, payload, &state, &edge, target).await,
        None => edge::no_site(&http_req),
    };
    Ok(ServiceResponse::new(http_req, resp))
}
