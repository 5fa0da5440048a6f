//! Per-request context shared by every filter.

use std::time::Instant;

use crate::trace::{Span, SpanContext};

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
    /// The call came in on the public port (`--dapr-public-port`): health
    /// and metadata, served without the API token as daprd does.
    pub public: bool,
    /// The request headers some filter reads ([`crate::Filter::reads_headers`]),
    /// as the caller sent them.
    pub headers: Vec<(&'static str, String)>,
    /// Headers (HTTP) or metadata (gRPC) filters add to the answer, whatever
    /// it is — the handler's or an error (CORS grants, a middleware's own).
    pub answer_headers: Vec<(std::borrow::Cow<'static, str>, String)>,
    /// Request body size in bytes, as read by the front end.
    pub body_len: usize,
    /// Set by the front end when the body was larger than the limit (it stops
    /// reading at the limit, so nothing unbounded is ever buffered).
    pub body_too_large: bool,
    pub started: Instant,
    /// The caller's W3C trace context (`traceparent`/`tracestate`), if valid.
    pub trace_parent: Option<SpanContext>,
    /// The API call's span, left here by the tracing filter when the front
    /// end must end it (proxied calls) or propagate it (to the callee).
    pub span: Option<Span>,
}

impl Ctx {
    pub fn new(protocol: Protocol, method: &'static str, route: &'static str) -> Self {
        Ctx {
            protocol,
            method,
            route,
            path: String::new(),
            api_token: None,
            public: false,
            headers: Vec::new(),
            answer_headers: Vec::new(),
            body_len: 0,
            body_too_large: false,
            started: Instant::now(),
            trace_parent: None,
            span: None,
        }
    }
}

impl Ctx {
    /// A request header a filter asked for (see [`Ctx::headers`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The context to send on to the next hop: this call's span when there
    /// is one, else the caller's own context passed through unchanged.
    pub fn outgoing_trace(&self) -> Option<&SpanContext> {
        self.span
            .as_ref()
            .map(Span::context)
            .or(self.trace_parent.as_ref())
    }

    /// Reads `traceparent`/`tracestate` values into `trace_parent`.
    pub fn set_trace_headers(&mut self, traceparent: Option<&str>, tracestate: Option<&str>) {
        self.trace_parent = traceparent.and_then(|t| SpanContext::parse(t, tracestate));
    }
}
