//! The layers every request passes, one module each, put together in order here (outermost
//! first):
//!
//! 1. `access`: the client's address, the request metrics and the access line;
//! 2. `errors`: JSON for an error answered without a body (actix's 404/405, a failed extractor);
//! 3. `uri`: over-long URIs refused (414);
//! 4. `host`: the instance's own names reach the app, every other host the edge (an API host
//!    never looks up a site);
//!
//! then, under `/api/v1` only (`configure_app`):
//!
//! 5. `rate_limit`: the client IP's and the credential's buckets;
//! 6. `write_gate`: for a mutating call, the disk reserve, the caller authenticated once (the
//!    handler gets the same `Principal`), the body read, the store's write gate, the audit entry
//!    and one flush.

pub mod access;
pub mod errors;
pub mod host;
pub mod rate_limit;
pub mod uri;
pub mod write_gate;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::App;

/// An app with layers 1 to 4 around everything it will route.
pub fn around_every_request() -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // actix runs the last `wrap` first.
    App::new()
        .wrap(from_fn(host::layer))
        .wrap(from_fn(uri::layer))
        .wrap(ErrorHandlers::new().default_handler(errors::json_error_fallback))
        .wrap(from_fn(access::layer))
}
