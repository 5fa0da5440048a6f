//! The bindings kind: the [`Binding`] trait and its components.
//!
//! One component may have an output side (`invoke` of the operations it
//! lists) and an input side (`read`: events from the outside world handed
//! to the runtime, which delivers them to the app). The runtime decides
//! which sides are used (`direction` metadata, as daprd); a component only
//! says which it has.

pub mod broker;
pub mod conformance;
pub mod cron;
pub mod http;
pub mod localstorage;
pub mod redis;
pub mod smtp;
pub mod sql;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use crate::pubsub::Subscription as Reading;

/// daprd's operation names (`bindings.OperationKind`).
pub mod ops {
    pub const CREATE: &str = "create";
    pub const GET: &str = "get";
    pub const LIST: &str = "list";
    pub const DELETE: &str = "delete";
}

/// One call of an output binding.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    pub operation: String,
    pub data: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

/// What an output binding answered. `None` from [`Binding::invoke`] means
/// "nothing to return" (daprd answers 204).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvokeResponse {
    pub data: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

/// One event an input binding read.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub data: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BindingError {
    /// The request lacks something the operation needs (a metadata key,
    /// a body field).
    #[error("{0}")]
    BadRequest(String),
    /// The backend refused or failed.
    #[error("{0}")]
    Backend(String),
    /// A failure that still carries the backend's answer metadata (the
    /// HTTP binding's `statusCode` and headers under `errorIfNot2XX`);
    /// daprd sends that metadata with the error.
    #[error("{message}")]
    WithMetadata {
        message: String,
        metadata: HashMap<String, String>,
    },
    /// The component has no such side (an output call on an input-only
    /// binding, or the reverse).
    #[error("{0}")]
    Unsupported(String),
}

impl BindingError {
    /// Answer metadata that goes with the error, if any.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        match self {
            BindingError::WithMetadata { metadata, .. } => Some(metadata),
            _ => None,
        }
    }
}

/// What the runtime does with an input event: `Ok(answer body)` when the
/// app took it (acknowledge), `Err(why)` when it did not (a broker-backed
/// binding redelivers).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, ev: Event) -> Result<Vec<u8>, String>;
}

#[async_trait]
pub trait Binding: Send + Sync + 'static {
    /// Reaches the backend, as daprd's component `Init` does; bounded by
    /// the component's `initTimeout`.
    async fn init(&self) -> Result<(), BindingError> {
        Ok(())
    }

    /// The output operations, in daprd's names; empty: no output side.
    fn operations(&self) -> &[&'static str] {
        &[]
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        Err(BindingError::Unsupported(format!(
            "operation {} is not supported",
            req.operation
        )))
    }

    /// Whether the component has an input side.
    fn is_input(&self) -> bool {
        false
    }

    /// Starts reading: every event goes to `handler`; the returned handle
    /// stops reading (and waits for handler calls in flight) when closed.
    async fn read(&self, handler: Arc<dyn EventHandler>) -> Result<Reading, BindingError> {
        let _ = handler;
        Err(BindingError::Unsupported(
            "this binding has no input side".into(),
        ))
    }
}

/// daprd's `direction` metadata: `input`, `output` or both
/// (comma-separated, any case). No `direction` allows both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    pub input: bool,
    pub output: bool,
    /// `direction` names `input` explicitly: the app is not asked whether it
    /// listens (daprd skips the OPTIONS / ListInputBindings probe).
    pub explicit_input: bool,
}

impl Direction {
    pub fn from_metadata(value: Option<&str>) -> Self {
        let Some(v) = value else {
            return Direction {
                input: true,
                output: true,
                explicit_input: false,
            };
        };
        let has = |d: &str| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(d));
        Direction {
            input: has("input"),
            output: has("output"),
            explicit_input: has("input"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_as_daprd() {
        let d = Direction::from_metadata(None);
        assert!(d.input && d.output && !d.explicit_input);
        let d = Direction::from_metadata(Some("input"));
        assert!(d.input && !d.output && d.explicit_input);
        let d = Direction::from_metadata(Some("Input, OUTPUT"));
        assert!(d.input && d.output && d.explicit_input);
        let d = Direction::from_metadata(Some("output"));
        assert!(!d.input && d.output);
        // A value naming neither allows neither, as daprd.
        let d = Direction::from_metadata(Some("sideways"));
        assert!(!d.input && !d.output);
    }
}
