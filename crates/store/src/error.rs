//! The store's errors: what went wrong in domain terms (not found, taken, invalid, disk full).
//! The API maps each to its HTTP status and machine code (`resellerd::error`); the store knows
//! nothing of HTTP.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input breaks a rule of the model (a bad path, a date in the past, a bad status).
    #[error("{0}")]
    InvalidRequest(String),
    #[error("a reseller has at most 6 live API keys; delete one first")]
    KeyLimitReached,
    /// A unique name is taken or a state forbids the change: (which, message).
    #[error("{1}")]
    Conflict(Conflict, String),
    /// A charge cannot be made (no such payment method, or the charge was refused).
    #[error("{0}")]
    PaymentRequired(String),
    /// The record (named by its kind) does not exist, or belongs to another tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a deploy has at most {0} files")]
    TooManyFiles(usize),
    /// A plan's or the reseller's limit is reached.
    #[error("the {limit} limit is reached ({used} of {max})")]
    QuotaExceeded {
        limit: &'static str,
        used: u64,
        max: u64,
    },
    #[error("{0}")]
    ChecksumMismatch(String),
    /// The disk (or the quota) is full.
    #[error("the server's disk is full")]
    InsufficientStorage,
    /// Any other failure to read or write the disk.
    #[error("the store cannot write right now ({0})")]
    StorageUnavailable(String),
    /// A bug or an impossible state; keeps its cause.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every "taken" or "not now" a call can meet, answered 400 with its machine code. Stated once
/// here: the API's error table maps them all, and a test checks each is in the documented table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    SiteNameTaken,
    DomainTaken,
    PreviewDomainTaken,
    PendingDomainLimit,
    PlanLimitReached,
    SigningKeyLimitReached,
    WebhookLimitReached,
    ProxyProfileLimitReached,
    BuildLimitReached,
    ProxyOriginTaken,
    ForbiddenTarget,
    FormFull,
    SenderKeyDeleted,
    CertificateFailed,
    RegistrationFailed,
    NameReserved,
}

impl Conflict {
    pub const ALL: [Conflict; 16] = [
        Conflict::SiteNameTaken,
        Conflict::DomainTaken,
        Conflict::PreviewDomainTaken,
        Conflict::PendingDomainLimit,
        Conflict::PlanLimitReached,
        Conflict::SigningKeyLimitReached,
        Conflict::WebhookLimitReached,
        Conflict::ProxyProfileLimitReached,
        Conflict::BuildLimitReached,
        Conflict::ProxyOriginTaken,
        Conflict::ForbiddenTarget,
        Conflict::FormFull,
        Conflict::SenderKeyDeleted,
        Conflict::CertificateFailed,
        Conflict::RegistrationFailed,
        Conflict::NameReserved,
    ];

    /// The machine code (the `error` field of the answer).
    pub fn code(self) -> &'static str {
        match self {
            Conflict::SiteNameTaken => "site_name_taken",
            Conflict::DomainTaken => "domain_taken",
            Conflict::PreviewDomainTaken => "preview_domain_taken",
            Conflict::PendingDomainLimit => "pending_domain_limit",
            Conflict::PlanLimitReached => "plan_limit_reached",
            Conflict::SigningKeyLimitReached => "signing_key_limit_reached",
            Conflict::WebhookLimitReached => "webhook_limit_reached",
            Conflict::ProxyProfileLimitReached => "proxy_profile_limit_reached",
            Conflict::BuildLimitReached => "build_limit_reached",
            Conflict::ProxyOriginTaken => "proxy_origin_taken",
            Conflict::ForbiddenTarget => "forbidden_target",
            Conflict::FormFull => "form_full",
            Conflict::SenderKeyDeleted => "sender_key_deleted",
            Conflict::CertificateFailed => "certificate_failed",
            Conflict::RegistrationFailed => "registration_failed",
            Conflict::NameReserved => "name_reserved",
        }
    }
}

impl StoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        StoreError::InvalidRequest(msg.into())
    }

    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Internal(err.into())
    }
}

/// A failed disk operation: `InsufficientStorage` for a full disk (or quota), `StorageUnavailable`
/// for any other I/O failure.
pub fn from_io(what: &str, e: &std::io::Error) -> StoreError {
    if crate::kv::is_disk_full(e) {
        StoreError::InsufficientStorage
    } else {
        StoreError::StorageUnavailable(format!("{what}: {e}"))
    }
}

impl From<crate::kv::Error> for StoreError {
    fn from(e: crate::kv::Error) -> Self {
        match &e {
            crate::kv::Error::Io(io) => from_io("store", io),
            crate::kv::Error::Corruption(_) => {
                StoreError::StorageUnavailable(format!("store: {e}"))
            }
            _ => StoreError::Internal(Box::new(e)),
        }
    }
}

impl From<crate::kv::TransactionError<StoreError>> for StoreError {
    fn from(e: crate::kv::TransactionError<StoreError>) -> Self {
        match e {
            crate::kv::TransactionError::Abort(err) => err,
            crate::kv::TransactionError::Storage(e) => e.into(),
        }
    }
}
