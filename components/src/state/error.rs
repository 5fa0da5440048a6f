use thiserror::Error;

/// What can go wrong in a state store. The API layer maps these to Dapr's
/// error codes and statuses (see `spar_filters::error`).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The supplied ETag does not match the stored one (HTTP 409).
    #[error("possible etag mismatch. error from state store: {0}")]
    EtagMismatch(String),
    /// The supplied ETag is not a valid ETag for this store (HTTP 400).
    #[error("invalid etag value: {0}")]
    EtagInvalid(String),
    /// The request itself is wrong (bad metadata value, bad query…).
    #[error("{0}")]
    InvalidRequest(String),
    /// The store does not implement an optional feature.
    #[error("{0} not supported by this state store")]
    NotSupported(&'static str),
    /// The backend failed (I/O, driver, timeout). Retriable.
    #[error("{0}")]
    Backend(String),
}
