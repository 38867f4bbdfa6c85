//! The write layer of every mutating API call: disk reserve, body read, write gate, audit, one
//! flush.

use crate::{error, AppState};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

/// Answers `e` to a request refused before its body was read, once the body is drained (see
/// `crate::http::drain`), so the client reads the refusal instead of a reset.
async fn refuse_unread(mut req: ServiceRequest, e: error::ApiError) -> ServiceResponse<BoxBody> {
    use actix_web::HttpMessage;
    crate::http::drain(req.take_payload()).await;
    req.error_response(e)
}

/// Every mutating API call, in one place: refused with 507/503 while the disk is below its
/// reserve or the store cannot write (deletes still go through); its whole body read first
/// (within `--max-body` and `--body-timeout`); run holding the store's write gate for reading, so
/// a backup (which holds it for writing) never captures half a request and a client trickling
/// its body never holds the gate; then its audit entry queued and everything made durable by one
/// group commit before it is answered. Routes that stream large bodies or wait on the network
/// take the gate themselves, only for their writes (`crate::api::GateMode`).
pub async fn layer(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::http::Method;
    use actix_web::HttpMessage;
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state.filter(|_| !reads) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if *req.method() != Method::DELETE {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        if let Err(e) = state.disk.check_room(declared) {
            return Ok(refuse_unread(req, e).await);
        }
        if let Some(e) = state.store.refusal() {
            return Ok(refuse_unread(req, error::ApiError::from(e)).await);
        }
    }
    // The caller is known before its body is read: an anonymous or bad credential is refused
    // without buffering up to `--max-body` for it. (Every mutating API call needs a credential,
    // but the public ones: their credential is in the URL or a signature of the body.)
    if !crate::api::is_public(&req) {
        use actix_web::FromRequest;
        let (http_req, payload) = req.parts_mut();
        if let Err(e) = crate::auth::Principal::from_request(http_req, payload).await {
            return Ok(refuse_unread(req, e).await);
        }
    }
    let mode = crate::api::gate_mode(&req);
    // A streaming handler's body stays reachable from here, so what it left unread when it
    // refused can be drained (see `crate::http::drain`).
    let mut streamed = None;
    let gate = if mode == crate::api::GateMode::StreamsBody {
        let shared = crate::http::SharedPayload::new(req.take_payload());
        req.set_payload(shared.clone().into_payload());
        streamed = Some(shared);
        None
    } else {
        let limit = state
            .settings
            .max_body()
            .max(crate::api::reseller::MAX_PAGE_BYTES);
        let timeout = state.settings.body_timeout();
        let mut payload = req.take_payload();
        let body = match crate::http::read_body(&mut payload, limit, timeout).await {
            Ok(body) => body.freeze(),
            Err(e @ error::ApiError::PayloadTooLarge(_)) => {
                crate::http::drain(payload).await;
                return Ok(req.error_response(e));
            }
            Err(e) => return Ok(req.error_response(e)),
        };
        req.set_payload(actix_web::dev::Payload::from(body));
        if mode == crate::api::GateMode::WaitsOnNetwork {
            None
        } else {
            let gate = state.store.write_gate().read_owned().await;
            req.extensions_mut().insert(crate::api::GateHeld);
            Some(gate)
        }
    };
    let res = next.call(req).await?;
    if let Some(body) =
        streamed.filter(|_| res.status().is_client_error() || res.status().is_server_error())
    {
        crate::http::drain(body).await;
    }
    let ip = crate::http::client_ip(res.request(), &state.trusted_proxies);
    crate::api::audit::record(&res, ip);
    let flushed = state.store.flush().await;
    drop(gate);
    match flushed {
        Ok(()) => Ok(res.map_into_boxed_body()),
        Err(e) => {
            let (req, _) = res.into_parts();
            let body = actix_web::ResponseError::error_response(&error::ApiError::from(e));
            Ok(ServiceResponse::new(req, body))
        }
    }
}
