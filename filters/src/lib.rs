//! The request filter chain shared by spar's HTTP and gRPC front ends.
//!
//! A front end decodes a call into a typed [`Request`] plus a [`Ctx`], runs it
//! through the [`Chain`] (built once at start), and encodes the [`Response`]
//! or [`ApiError`] back. Built-in filters (metrics, tracing, auth, size
//! limit, httpPipeline middleware) run first; the chain ends in the [`handlers`]
//! router, which hands each building block's request to its handler filter.

pub mod access_control;
pub mod api;
pub mod builtin;
pub mod cel;
pub mod chain;
pub mod cloudevent;
pub mod context;
pub mod error;
pub mod error_details;
pub mod handlers;
pub mod metrics;
pub mod outbox;
pub mod pii;
pub mod resiliency;
pub mod runtime;
pub mod spiffe;
pub mod trace;

pub use api::{Request, Response};
pub use chain::{Chain, Filter, Next};
pub use context::{Ctx, Protocol};
pub use error::ApiError;
pub use runtime::Runtime;

/// The outcome of a request through the chain.
pub type ApiResult = Result<Response, ApiError>;
