//! JSON for bare errors.

use crate::error;
use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::middleware::ErrorHandlerResponse;

/// Any error response without a body of its own (actix's 404/405, a failed extractor that did
/// not go through our handlers) gets the JSON error shape.
pub fn json_error_fallback<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    if res.headers().contains_key(header::CONTENT_TYPE) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let err = match status.as_u16() {
        404 => error::ApiError::NotFound("path"),
        405 => error::ApiError::MethodNotAllowed,
        413 => error::ApiError::PayloadTooLarge(0),
        s if s < 500 => {
            error::ApiError::invalid(status.canonical_reason().unwrap_or("bad request"))
        }
        _ => error::ApiError::internal(status.to_string()),
    };
    let (req, _) = res.into_parts();
    let body = actix_web::ResponseError::error_response(&err).map_into_boxed_body();
    let mut resp = ServiceResponse::new(req, body).map_into_right_body();
    *resp.response_mut().status_mut() = status;
    Ok(ErrorHandlerResponse::Response(resp))
}
