//! The one API error type. Each variant maps to an HTTP status, a stable machine code and a
//! message, rendered as `{"code": status, "error": code, "message": message}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
pub use resellerd_store::error::Conflict;
use resellerd_store::error::StoreError;
use serde::Serialize;

/// The longest path plus query string accepted (longer gets 414).
pub const MAX_URI: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the cursor is not one this list gave out (it belongs to another list, tenant or filter, or was altered): start again from the first page")]
    InvalidCursor,
    #[error("a reseller has at most 6 live API keys; delete one first")]
    KeyLimitReached,
    #[error("{1}")]
    Conflict(Conflict, String),
    #[error("the password page must contain a form with an input named \"password\"")]
    InvalidPasswordPage,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    PaymentRequired(String),
    #[error("this credential lacks the {0} permission")]
    MissingPermission(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("this reseller account is suspended")]
    Suspended,
    #[error("this user is suspended; the reseller can lift it")]
    UserSuspended,
    #[error("requests from {0} are not allowed for this credential")]
    IpNotAllowed(std::net::IpAddr),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the {limit} limit of this plan is reached ({used} of {max})")]
    QuotaExceeded {
        limit: &'static str,
        used: u64,
        max: u64,
    },
    #[error("the method is not allowed on this path")]
    MethodNotAllowed,
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request path and query are longer than {MAX_URI} bytes")]
    UriTooLong,
    #[error("a deploy has at most {0} files")]
    TooManyFiles(usize),
    #[error("{0}")]
    ChecksumMismatch(String),
    #[error("this Idempotency-Key was used for another request (another body, path or method); send a new key for a new request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still running; retry once it has answered")]
    IdempotencyKeyInUse,
    #[error("too many requests; retry after {0} seconds")]
    RateLimited(u64),
    #[error("the request body did not arrive within {0} seconds")]
    BodyTimeout(u64),
    #[error("{0}")]
    RulesTooLarge(String),
    #[error("the server's disk is full; retry later (the operator has been told)")]
    InsufficientStorage,
    #[error("the store cannot write right now ({0}); retry later")]
    StorageUnavailable(String),
    /// Builds from git cannot run on this server (why, and what the operator can do).
    #[error("{0}")]
    BuildsUnavailable(String),
    /// Keeps its cause, whose whole chain is logged once, when the answer is made.
    #[error("internal error; the details are in the server log")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidRequest(msg.into())
    }

    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(err.into())
    }

    /// An internal error while doing `what`, keeping `err` as its cause.
    pub fn internal_in(
        what: &'static str,
        err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ApiError::internal(Doing {
            what,
            source: err.into(),
        })
    }

    /// The error and every cause under it, `outer: inner: …`, for the log.
    pub fn cause_chain(&self) -> String {
        match self {
            ApiError::Internal(cause) => chain(cause.as_ref()),
            other => chain(other),
        }
    }

    /// The table: variant -> (status, machine code).
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            InvalidCursor => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            KeyLimitReached => (StatusCode::BAD_REQUEST, "key_limit_reached"),
            Conflict(which, _) => (StatusCode::BAD_REQUEST, which.code()),
            InvalidPasswordPage => (StatusCode::BAD_REQUEST, "invalid_password_page"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            PaymentRequired(_) => (StatusCode::PAYMENT_REQUIRED, "payment_required"),
            MissingPermission(_) | Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Suspended => (StatusCode::FORBIDDEN, "reseller_suspended"),
            UserSuspended => (StatusCode::FORBIDDEN, "user_suspended"),
            IpNotAllowed(_) => (StatusCode::FORBIDDEN, "ip_not_allowed"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            QuotaExceeded { .. } => (StatusCode::FORBIDDEN, "quota_exceeded"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            UriTooLong => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            TooManyFiles(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_files"),
            ChecksumMismatch(_) => (StatusCode::UNPROCESSABLE_ENTITY, "checksum_mismatch"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            IdempotencyKeyInUse => (StatusCode::CONFLICT, "idempotency_key_in_use"),
            RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            RulesTooLarge(_) => (StatusCode::BAD_REQUEST, "rules_too_large"),
            InsufficientStorage => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            BuildsUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "builds_unavailable"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// What failed, with the error under it as its source (see `ApiError::internal_in`).
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
struct Doing {
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// The HTTP status.
    #[schema(example = 400)]
    pub code: u16,
    /// A stable snake_case machine code.
    #[schema(example = "domain_taken")]
    pub error: &'a str,
    /// For humans.
    #[schema(example = "example.com already belongs to a client")]
    pub message: String,
    /// With `quota_exceeded`: which limit, how much is used and the maximum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(_) = self {
            tracing::error!(error = %self.cause_chain(), "internal error");
        }
        let mut resp = HttpResponse::build(status);
        match self {
            ApiError::RateLimited(secs) => {
                let reset = crate::model::Timestamp::now().0 / 1000 + *secs as i64;
                resp.insert_header((header::RETRY_AFTER, secs.to_string()))
                    .insert_header(("X-RateLimit-Reset", reset.to_string()));
            }
            ApiError::InsufficientStorage => {
                resp.insert_header((header::RETRY_AFTER, "30"));
            }
            // The cause is logged once, where it happened (the flush thread), not per answer.
            ApiError::StorageUnavailable(_) => {
                resp.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        let (limit, used, max) = match self {
            ApiError::QuotaExceeded { limit, used, max } => (Some(*limit), Some(*used), Some(*max)),
            _ => (None, None, None),
        };
        resp.json(ErrorBody {
            code: status.as_u16(),
            error: code,
            message: self.to_string(),
            limit,
            used,
            max,
        })
    }
}

/// A failed disk operation: 507 for a full disk (or quota), 503 for any other I/O failure.
pub fn from_io(what: &str, e: &std::io::Error) -> ApiError {
    resellerd_store::error::from_io(what, e).into()
}

/// The store's domain errors, each to its place in the table.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidRequest(msg) => ApiError::InvalidRequest(msg),
            StoreError::KeyLimitReached => ApiError::KeyLimitReached,
            StoreError::Conflict(code, msg) => ApiError::Conflict(code, msg),
            StoreError::PaymentRequired(msg) => ApiError::PaymentRequired(msg),
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::TooManyFiles(max) => ApiError::TooManyFiles(max),
            StoreError::QuotaExceeded { limit, used, max } => {
                ApiError::QuotaExceeded { limit, used, max }
            }
            StoreError::ChecksumMismatch(msg) => ApiError::ChecksumMismatch(msg),
            StoreError::InsufficientStorage => ApiError::InsufficientStorage,
            StoreError::StorageUnavailable(msg) => ApiError::StorageUnavailable(msg),
            StoreError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<crate::kv::Error> for ApiError {
    fn from(e: crate::kv::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// Maps serde's complaint about a JSON body to our error: syntax errors are `invalid_json`,
/// well-formed JSON with a bad field is `invalid_request`.
pub fn json_error(err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => ApiError::InvalidRequest(format!("invalid request body: {err}")),
        _ => ApiError::InvalidJson(format!("malformed JSON body: {err}")),
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// An error and its causes, one after another: `outer: cause: root cause`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the blob")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn internal_errors_keep_their_whole_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let e = ApiError::internal(Outer(io));
        assert_eq!(e.cause_chain(), "cannot open the blob: permission denied");
        assert_eq!(e.status_and_code().1, "internal");
        assert!(
            !e.to_string().contains("permission"),
            "the cause stays out of the answer"
        );
        assert_eq!(
            ApiError::internal("plain").cause_chain(),
            "plain",
            "a message alone is its own cause"
        );
    }

    /// One error of each kind, so the documented table can be checked against the code.
    fn one_of_each() -> Vec<ApiError> {
        use ApiError::*;
        let mut all = vec![
            InvalidJson(String::new()),
            InvalidRequest(String::new()),
            InvalidCursor,
            KeyLimitReached,
            InvalidPasswordPage,
            Unauthorized(""),
            PaymentRequired(String::new()),
            MissingPermission(""),
            Forbidden(String::new()),
            Suspended,
            UserSuspended,
            IpNotAllowed(std::net::Ipv4Addr::LOCALHOST.into()),
            NotFound(""),
            QuotaExceeded {
                limit: "",
                used: 0,
                max: 0,
            },
            MethodNotAllowed,
            PayloadTooLarge(0),
            UriTooLong,
            TooManyFiles(0),
            ChecksumMismatch(String::new()),
            RateLimited(0),
            BodyTimeout(0),
            RulesTooLarge(String::new()),
            InsufficientStorage,
            StorageUnavailable(String::new()),
            BuildsUnavailable(String::new()),
            ApiError::internal("x"),
        ];
        all.extend(resellerd_store::error::Conflict::ALL.map(|c| Conflict(c, String::new())));
        // A new variant fails to compile here until it is added above.
        for e in &all {
            match e {
                InvalidJson(_)
                | InvalidRequest(_)
                | InvalidCursor
                | KeyLimitReached
                | Conflict(..)
                | InvalidPasswordPage
                | Unauthorized(_)
                | PaymentRequired(_)
                | MissingPermission(_)
                | Forbidden(_)
                | Suspended
                | UserSuspended
                | IpNotAllowed(_)
                | NotFound(_)
                | QuotaExceeded { .. }
                | MethodNotAllowed
                | PayloadTooLarge(_)
                | UriTooLong
                | TooManyFiles(_)
                | ChecksumMismatch(_)
                | IdempotencyKeyReused
                | IdempotencyKeyInUse
                | RateLimited(_)
                | BodyTimeout(_)
                | RulesTooLarge(_)
                | InsufficientStorage
                | StorageUnavailable(_)
                | BuildsUnavailable(_)
                | Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_error_code_is_in_the_documented_table_with_its_status() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api-notes.md"))
                .unwrap();
        let missing: Vec<String> = one_of_each()
            .iter()
            .map(|e| {
                let (status, code) = e.status_and_code();
                format!("| {} | `{code}` |", status.as_u16())
            })
            .filter(|row| !doc.contains(row))
            .collect();
        assert!(missing.is_empty(), "docs/api-notes.md lacks {missing:?}");
    }
}
