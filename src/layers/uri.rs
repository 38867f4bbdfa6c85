//! The URI-length check (414), before anything else looks at the request.

use crate::error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

/// Refuses over-long URIs (414) before anything else looks at the request.
pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let uri = req.uri();
    if uri.path_and_query().map_or(0, |p| p.as_str().len()) > error::MAX_URI {
        return Ok(req.error_response(error::ApiError::UriTooLong));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}
