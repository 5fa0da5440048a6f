//! The scheduler's errors and, in one place, the gRPC status each becomes.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// Bad schedule, dueTime, ttl, name or policy: nothing was stored.
    #[error("{0}")]
    BadJob(String),
    #[error("job already exists: {0}")]
    Exists(String),
    #[error("job not found: {0}")]
    NotFound(String),
    /// No leader, or leadership moved while the call ran: try again.
    #[error("scheduler unavailable: {0}")]
    Unavailable(String),
    #[error("scheduler storage: {0}")]
    Storage(String),
}

impl From<SchedError> for Status {
    fn from(e: SchedError) -> Status {
        let code = match e {
            SchedError::BadJob(_) => Code::InvalidArgument,
            SchedError::Exists(_) => Code::AlreadyExists,
            SchedError::NotFound(_) => Code::NotFound,
            SchedError::Unavailable(_) => Code::Unavailable,
            SchedError::Storage(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}
