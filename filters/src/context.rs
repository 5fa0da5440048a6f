//! Per-request context shared by every filter.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

/// What a front end knows about a call besides the typed request.
#[derive(Debug)]
pub struct Ctx {
    pub protocol: Protocol,
    /// HTTP verb, or "POST" for gRPC.
    pub method: &'static str,
    /// Route template ("/v1.0/state/{storeName}/{key}") or full gRPC method
    /// name: bounded cardinality, safe as a metric label.
    pub route: &'static str,
    /// The concrete request path (HTTP) for path-matching metrics; empty for gRPC.
    pub path: String,
    /// `dapr-api-token` as sent by the caller.
    pub api_token: Option<String>,
    /// Request body size in bytes, as read by the front end.
    pub body_len: usize,
    /// Set by the front end when the body was larger than the limit (it stops
    /// reading at the limit, so nothing unbounded is ever buffered).
    pub body_too_large: bool,
    pub started: Instant,
}

impl Ctx {
    pub fn new(protocol: Protocol, method: &'static str, route: &'static str) -> Self {
        Ctx {
            protocol,
            method,
            route,
            path: String::new(),
            api_token: None,
            body_len: 0,
            body_too_large: false,
            started: Instant::now(),
        }
    }
}
