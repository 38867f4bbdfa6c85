//! The engine layer's own vocabulary: the bytes a tree holds, its errors and its transactions'
//! results. Every engine (`kv::redb`, `kv::sled`, `kv::pg`) answers in these, so nothing above
//! `kv` names an engine's types.

use std::sync::Arc;

/// A key or a value: immutable bytes, cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IVec(Arc<[u8]>);

impl Default for IVec {
    fn default() -> Self {
        IVec(Arc::from(&[][..]))
    }
}

impl std::ops::Deref for IVec {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for IVec {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::borrow::Borrow<[u8]> for IVec {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for IVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<&[u8]> for IVec {
    fn from(b: &[u8]) -> Self {
        IVec(Arc::from(b))
    }
}

impl<const N: usize> From<&[u8; N]> for IVec {
    fn from(b: &[u8; N]) -> Self {
        IVec::from(&b[..])
    }
}

impl From<Vec<u8>> for IVec {
    fn from(b: Vec<u8>) -> Self {
        IVec(Arc::from(b))
    }
}

impl From<&Vec<u8>> for IVec {
    fn from(b: &Vec<u8>) -> Self {
        IVec::from(&b[..])
    }
}

impl From<&str> for IVec {
    fn from(s: &str) -> Self {
        IVec::from(s.as_bytes())
    }
}

impl From<String> for IVec {
    fn from(s: String) -> Self {
        IVec::from(s.into_bytes())
    }
}

impl From<&String> for IVec {
    fn from(s: &String) -> Self {
        IVec::from(s.as_bytes())
    }
}

impl From<&IVec> for IVec {
    fn from(v: &IVec) -> Self {
        v.clone()
    }
}

impl From<Box<[u8]>> for IVec {
    fn from(b: Box<[u8]>) -> Self {
        IVec(Arc::from(b))
    }
}

impl PartialEq<[u8]> for IVec {
    fn eq(&self, other: &[u8]) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&[u8]> for IVec {
    fn eq(&self, other: &&[u8]) -> bool {
        *self.0 == **other
    }
}

/// True if `e` says the disk (or the user's quota on it) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Why an engine could not read or write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk, the file or the connection failed; the kind is kept (a full disk stays one).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// What was read is not what was written.
    #[error("the database is corrupt: {0}")]
    Corruption(String),
    /// A call the engine cannot serve (a backup of PostgreSQL, a tree name that is not UTF-8).
    #[error("{0}")]
    Unsupported(String),
    /// A state the store's own code should never reach.
    #[error("a bug in resellerd's store: {0}")]
    ReportableBug(String),
}

/// An engine's own failure (redb's, PostgreSQL's) as an I/O error of the layer: its message
/// for people, and the engine's error itself as the source, for code and for the log's chain.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineFailure {
    pub message: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl EngineFailure {
    pub fn io(
        message: String,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> std::io::Error {
        std::io::Error::other(EngineFailure {
            message,
            source: Box::new(source),
        })
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// How a transaction ended without committing: the closure gave up (`Abort`), or the engine
/// failed.
#[derive(Debug)]
pub enum TransactionError<E> {
    Abort(E),
    Storage(Error),
}

impl<E: std::fmt::Display> std::fmt::Display for TransactionError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransactionError::Abort(e) => e.fmt(f),
            TransactionError::Storage(e) => e.fmt(f),
        }
    }
}

impl<E: std::fmt::Display + std::fmt::Debug> std::error::Error for TransactionError<E> {}

pub type TransactionResult<T, E> = std::result::Result<T, TransactionError<E>>;

/// What a transaction's closure returns on failure: give up with `E`, run again (`Conflict`:
/// the engine saw another writer), or an engine failure.
#[derive(Debug)]
pub enum ConflictableTransactionError<E> {
    Abort(E),
    Conflict,
    Storage(Error),
}

pub type ConflictableTransactionResult<T, E> =
    std::result::Result<T, ConflictableTransactionError<E>>;

/// What a read or write inside a transaction fails with: run the transaction again
/// (`Conflict`), or an engine failure.
#[derive(Debug)]
pub enum UnabortableTransactionError {
    Conflict,
    Storage(Error),
}

/// What a read or write inside a transaction returns.
pub type UnabortableTransactionResult<T> = std::result::Result<T, UnabortableTransactionError>;

impl<E> From<UnabortableTransactionError> for ConflictableTransactionError<E> {
    fn from(e: UnabortableTransactionError) -> Self {
        match e {
            UnabortableTransactionError::Conflict => ConflictableTransactionError::Conflict,
            UnabortableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
        }
    }
}

impl<E> From<Error> for ConflictableTransactionError<E> {
    fn from(e: Error) -> Self {
        ConflictableTransactionError::Storage(e)
    }
}

impl From<Error> for UnabortableTransactionError {
    fn from(e: Error) -> Self {
        UnabortableTransactionError::Storage(e)
    }
}

impl<E> From<Error> for TransactionError<E> {
    fn from(e: Error) -> Self {
        TransactionError::Storage(e)
    }
}

/// A compare-and-swap that found another value: what is there now, and what was proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareAndSwapError {
    pub current: Option<IVec>,
    pub proposed: Option<IVec>,
}

/// A failure handed to several waiters (the token issuer answers each queued request with it).
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Corruption(s) => Error::Corruption(s.clone()),
            Error::Unsupported(s) => Error::Unsupported(s.clone()),
            Error::ReportableBug(s) => Error::ReportableBug(s.clone()),
        }
    }
}
