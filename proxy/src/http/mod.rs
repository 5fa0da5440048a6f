//! The HTTP API on `--dapr-http-port`, served by pingora.
//!
//! `serve` decodes the call, runs the filter chain and writes the answer
//! itself; service invocation is the one call sent upstream (the chain
//! picks the peer; the fast path or pingora-proxy streams the body).

pub mod bindings;
pub mod conversation;
mod crypto;
pub mod decode;
pub mod encode;
mod forward;
pub mod h1;
pub mod internal;
pub mod jobs;
pub mod lock;
mod on_invoke;
pub mod protojson;
mod resilient;
pub mod server;
mod up_conn;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::http::RequestHeader;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use spar_filters::handlers::invoke::Upstream;
use spar_filters::metrics::invocation::CallType;
use spar_filters::metrics::Metrics;
use spar_filters::{Chain, Ctx, Protocol, Runtime};
use spar_resolvers::Target;

use crate::security::Identity;
use spar_filters::{Request, Response};

#[derive(Clone)]
pub struct HttpApi {
    chain: Chain,
    rt: Arc<Runtime>,
    max_body: usize,
    /// For proxied calls, recorded once the app's status is known.
    metrics: Option<(Arc<Metrics>, String)>,
    /// This sidecar's certificate for sidecar-to-sidecar calls (mTLS).
    mtls: Option<Arc<Identity>>,
    app_h2: bool,
    /// A gRPC app: self-invocations go to its `AppCallback/OnInvoke`.
    grpc_app: Option<Arc<crate::app_grpc::GrpcAppChannel>>,
    /// For calls to apps with a resiliency policy (buffered, retried).
    peers: Arc<crate::peer_client::PeerClient>,
    /// The public port's face: health and metadata only, no API token.
    public: bool,
    /// The largest request head read (`--read-buffer-size` + 4 KiB).
    max_head: usize,
}

/// Per-request state of a proxied (invocation) call.
pub struct Call {
    up: Option<Upstream>,
    /// The app id as the caller named it (`app` or `app.namespace`).
    target: String,
    method: &'static str,
    started: Instant,
    retries: u32,
    /// The caller-side invocation span, ended in `logging`.
    span: Option<spar_filters::trace::Span>,
    /// Headers the chain's filters add to the answer (pingora-proxy's
    /// response filter adds them).
    answer_headers: AnswerHeaders,
}

/// What filters add to an answer ([`Ctx::answer_headers`]).
type AnswerHeaders = Vec<(std::borrow::Cow<'static, str>, String)>;

/// Connection failures (nothing sent yet, so safe for every verb) are
/// retried this many times, with exponential backoff from `RETRY_BASE`, on
/// a freshly resolved instance.
const MAX_RETRIES: u32 = 3;
const RETRY_BASE: Duration = Duration::from_millis(100);

const CALLER_APP_ID: http::HeaderName = http::HeaderName::from_static("dapr-caller-app-id");
const CALLEE_APP_ID: http::HeaderName = http::HeaderName::from_static("dapr-callee-app-id");

/// Where the chain sent an invocation.
enum Routed {
    /// Answered with this error.
    Error(spar_filters::ApiError),
    /// To a peer sidecar under the target's resiliency policy.
    Resilient(std::net::SocketAddr, String),
    /// To `call.up`.
    Upstream,
    /// Answered by a filter with this status and no body (a CORS preflight).
    Answer(u16),
}

/// `app` of `app.namespace`.
fn app_name(target: &str) -> &str {
    target.split_once('.').map_or(target, |(a, _)| a)
}

impl HttpApi {
    /// A call to an app with a resiliency policy: buffered and sent under
    /// the policy (`resilient.rs`).
    async fn invoke_resilient(
        &self,
        session: &mut ServerSession,
        call: &mut Call,
        addr: std::net::SocketAddr,
        path: &str,
    ) -> Result<()> {
        let Some(policy) = self
            .rt
            .live()
            .resiliency
            .app(app_name(&call.target))
            .cloned()
        else {
            return Ok(());
        };
        let (body, too_large) = self.read_body(session).await?;
        if too_large {
            session.set_keepalive(None);
            let e = spar_filters::ApiError::BodyTooLarge {
                limit: self.max_body,
            };
            return upstream::write_error(session, &e).await;
        }
        let c = resilient::Call {
            app_id: &call.target,
            addr,
            path,
            body: body.freeze(),
            max_body: self.max_body,
            trace: call.span.as_ref().map(|s| {
                let c = s.context();
                (c.traceparent(), c.tracestate.as_deref().map(str::to_owned))
            }),
        };
        if let Some(m) = &self.rt.metrics {
            m.invoke_sent(app_name(&call.target), CallType::Unary);
        }
        let r = resilient::invoke(session, &self.peers, &policy, c).await;
        if let Some(m) = &self.rt.metrics {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            m.invoke_answered(
                app_name(&call.target),
                spar_filters::metrics::http_status_label(status),
                CallType::Unary,
                call.started,
            );
        }
        if let Some((m, app_id)) = &self.metrics {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            let ms = call.started.elapsed().as_secs_f64() * 1000.0;
            if let Some(mut s) = call.span.take() {
                s.http_status(status);
            }
            m.record_http(
                app_id,
                static_method(session.req_header().method.as_str()),
                "",
                status,
                ms,
            );
        }
        r
    }

    /// Runs an invocation through the chain (both paths).
    async fn route(
        &self,
        req: &(impl upstream::HeadView + Sync),
        target: spar_filters::handlers::invoke::InvokeRequest,
        call: &mut Call,
    ) -> Routed {
        let method = static_method(req.method());
        let mut ctx = Ctx::new(Protocol::Http, method, "/v1.0/invoke/{id}/method/{method}");
        ctx.api_token = req.header("dapr-api-token").map(str::to_owned);
        ctx.path = req.path().to_owned();
        ctx.set_trace_headers(req.header("traceparent"), req.header("tracestate"));
        ctx.headers = self
            .chain
            .read_headers(|n| req.header(n).map(str::to_owned));
        call.target = target.app_id.clone();
        let r = self.chain.handle(&mut ctx, Request::Invoke(target)).await;
        call.answer_headers = std::mem::take(&mut ctx.answer_headers);
        match r {
            Ok(Response::Proxy(Upstream::Sidecar { addr, path })) if self.policy(&call.target) => {
                call.span = ctx.span.take();
                Routed::Resilient(addr, path)
            }
            Ok(Response::Proxy(u)) => {
                if let (Some(m), Upstream::Sidecar { .. } | Upstream::App { .. }) =
                    (&self.rt.metrics, &u)
                {
                    m.invoke_sent(app_name(&call.target), CallType::Unary);
                }
                call.up = Some(u);
                call.method = ctx.method;
                call.span = ctx.span.take();
                Routed::Upstream
            }
            Ok(Response::Bare(status)) => Routed::Answer(status),
            Ok(_) => Routed::Error(spar_filters::ApiError::Internal(
                "invocation answered without a target".into(),
            )),
            Err(e) => Routed::Error(e),
        }
    }

    /// Whether calls to this app (`app` or `app.namespace`) run under a
    /// resiliency policy.
    fn policy(&self, target: &str) -> bool {
        let live = self.rt.peek();
        live.resiliency.any_app() && live.resiliency.app(app_name(target)).is_some()
    }

    pub fn new(
        chain: Chain,
        rt: Arc<Runtime>,
        max_body: usize,
        metrics: Option<(Arc<Metrics>, String)>,
        mtls: Option<Arc<Identity>>,
    ) -> Self {
        let app_h2 = rt
            .app
            .as_ref()
            .is_some_and(|a| upstream::app_h2(&a.protocol));
        let peers = Arc::new(
            crate::peer_client::PeerClient::new(mtls.as_ref()).unwrap_or_else(|e| {
                tracing::error!("peer client for resilient invocation: {e}");
                crate::peer_client::PeerClient::new(None).expect("plain peer client")
            }),
        );
        let grpc_app = crate::app_grpc::GrpcAppChannel::for_runtime(&rt);
        HttpApi {
            peers,
            chain,
            rt,
            max_body,
            metrics,
            mtls,
            app_h2,
            public: false,
            max_head: h1::head::MAX_HEAD,
            grpc_app,
        }
    }

    pub fn with_max_head(mut self, bytes: usize) -> Self {
        self.max_head = bytes;
        self
    }

    /// The same API as daprd's public port serves it: health and metadata,
    /// without the API token.
    pub fn public(&self) -> Self {
        HttpApi {
            public: true,
            ..self.clone()
        }
    }

    /// The request as the upstream gets it (both paths).
    fn prepare_upstream(&self, req: &mut impl upstream::UpHead, call: &Call) -> Result<()> {
        if let Some(u) = call.up.as_ref() {
            upstream::rewrite(req, u, self.rt.app_token.as_deref())?;
            if let Upstream::Sidecar { .. } | Upstream::App { .. } = u {
                // daprd's caller/callee headers, for the callee and its app;
                // set over whatever the caller sent, on a self-invocation
                // too (daprd's invokeLocal), so no app can pose as another.
                req.insert(CALLER_APP_ID, self.rt.app_id.as_bytes())?;
                req.insert(CALLEE_APP_ID, app_name(&call.target).as_bytes())?;
            }
            // External endpoints get the context too: they may trace.
            if let Some(s) = &call.span {
                upstream::set_trace(req, s.context())?;
            }
        }
        Ok(())
    }

    /// Where the fast path (`forward.rs`) sends this call, when it can: a
    /// peer sidecar over HTTP/1.1 (mTLS or not), or an HTTP/1.1 app.
    fn fast_path(&self, call: &Call) -> Option<forward::Dest<'_>> {
        match call.up.as_ref()? {
            Upstream::Sidecar { addr, .. } => Some(match self.mtls.as_deref() {
                Some(id) => forward::Dest::Mtls(*addr, id),
                None => forward::Dest::Plain(*addr),
            }),
            Upstream::App { addr, .. } if !self.app_h2 => Some(forward::Dest::Plain(*addr)),
            _ => None,
        }
    }

    /// A self-invocation of a gRPC app, answered here (`on_invoke.rs`);
    /// `false` for every other call.
    async fn call_grpc_app(&self, session: &mut ServerSession, call: &Call) -> Result<bool> {
        let (Some(app), Some(Upstream::App { path, .. })) = (&self.grpc_app, &call.up) else {
            return Ok(false);
        };
        let c = on_invoke::Call {
            method: path.trim_start_matches('/'),
            timeout: None,
            trace: call.span.as_ref().map(|s| s.context()),
            max_body: self.max_body,
        };
        // Boxed: this path's state (a gRPC call) would otherwise size
        // every call's future.
        Box::pin(on_invoke::serve(session, app, c)).await?;
        Ok(true)
    }

    fn target(call: &Call) -> Target {
        match call.target.split_once('.') {
            Some((a, n)) => Target {
                app_id: a.to_string(),
                namespace: Some(n.to_string()),
            },
            None => Target {
                app_id: call.target.clone(),
                namespace: None,
            },
        }
    }

    /// Reads the body up to the limit. Past it, stops reading (never buffers
    /// more than limit + one chunk) and reports the overflow.
    async fn read_body(&self, session: &mut ServerSession) -> Result<(BytesMut, bool)> {
        server::read_body(session, self.max_body).await
    }
}

/// A filter's answer: a status, its headers, no body.
async fn write_bare(
    session: &mut ServerSession,
    status: u16,
    headers: &AnswerHeaders,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 1))?;
    for (k, v) in headers {
        upstream::append_header(&mut resp, k.clone(), v)?;
    }
    resp.insert_header("content-length", "0")?;
    session.write_response_header(Box::new(resp)).await?;
    session.write_response_body(bytes::Bytes::new(), true).await
}

/// The routes daprd's public port serves: health and metadata.
fn public_route(path: &str) -> bool {
    ["/v1.0/healthz", "/v1.0/metadata"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

pub(crate) fn static_method(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "UNKNOWN",
    }
}

#[async_trait]
impl server::Front for HttpApi {
    /// Every API route; invocation through the chain to its upstream.
    async fn serve(&self, session: &mut ServerSession, call: &mut Call) -> Result<bool> {
        if self.public && !public_route(session.req_header().uri.path()) {
            let e = spar_filters::ApiError::RouteNotFound(session.req_header().uri.path().into());
            upstream::write_error(session, &e).await?;
            return Ok(true);
        }
        if let Some(target) = upstream::target(session.req_header()).filter(|_| !self.public) {
            // Invocation: the chain decides where; the body is never read
            // here, it streams to the upstream.
            return match self.route(session.req_header(), target, call).await {
                Routed::Error(e) => {
                    upstream::write_error_with(session, &e, &call.answer_headers).await?;
                    Ok(true)
                }
                Routed::Answer(status) => {
                    write_bare(session, status, &call.answer_headers).await?;
                    Ok(true)
                }
                Routed::Resilient(addr, path) => {
                    // Boxed: this rare path's state (peer client, policy)
                    // would otherwise size every call's future.
                    Box::pin(self.invoke_resilient(session, call, addr, &path)).await?;
                    Ok(true)
                }
                Routed::Upstream => {
                    // With headers to add, pingora-proxy sends the call
                    // (its response filter adds them).
                    if let Some(dest) = self
                        .fast_path(call)
                        .filter(|_| call.answer_headers.is_empty() && forward::eligible(session))
                    {
                        let prepare = |req: &mut RequestHeader| self.prepare_upstream(req, call);
                        if let forward::Forwarded::Done =
                            forward::forward(session, dest, prepare, None).await?
                        {
                            return Ok(true);
                        }
                    }
                    self.call_grpc_app(session, call).await
                }
            };
        }
        let (body, too_large) = self.read_body(session).await?;
        let req = session.req_header();
        let method = static_method(req.method.as_str());
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let head = decode::Head {
            app_id: &self.rt.app_id,
            method,
            path: req.uri.path(),
            query: req.uri.query(),
            if_match: header("if-match"),
            content_type: header("content-type"),
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
            header: &header,
        };
        let decoded = decode::decode(&head, &body);
        let mut ctx = Ctx::new(Protocol::Http, method, decoded.route);
        ctx.path = req.uri.path().to_owned();
        ctx.api_token = header("dapr-api-token");
        ctx.public = self.public;
        ctx.set_trace_headers(head.traceparent.as_deref(), head.tracestate.as_deref());
        ctx.body_len = body.len();
        ctx.body_too_large = too_large;
        ctx.headers = self.chain.read_headers(header);
        let out = match self.chain.handle(&mut ctx, decoded.req).await {
            Ok(r) => {
                // An HTTP configuration subscription delivers to the app.
                if let spar_filters::Response::Configuration(
                    spar_filters::handlers::configuration::ConfigurationResponse::Subscribed(s),
                ) = &r
                {
                    crate::configuration_app::spawn(self.rt.clone(), s);
                }
                encode::response(r)
            }
            Err(e) => encode::error(&e),
        };
        if too_large {
            // The rest of the body was never read: the connection can't be reused.
            session.set_keepalive(None);
        }
        let mut resp = ResponseHeader::build(out.status, Some(out.headers.len() + 1))?;
        for (k, v) in out.headers {
            resp.insert_header(k, v)?;
        }
        for (k, v) in &ctx.answer_headers {
            upstream::append_header(&mut resp, k.clone(), v)?;
        }
        if out.status != 204 {
            resp.insert_header("content-length", out.body.len().to_string())?;
        }
        session.write_response_header(Box::new(resp)).await?;
        let body = if method == "HEAD" {
            bytes::Bytes::new()
        } else {
            out.body
        };
        session.write_response_body(body, true).await?;
        Ok(true)
    }

    async fn fail(&self, session: &mut ServerSession, e: &Error, call: &mut Call) -> FailToProxy {
        let app = upstream::target(session.req_header())
            .map(|t| t.app_id)
            .unwrap_or_default();
        upstream::fail(session, e, &app, &call.answer_headers).await
    }

    fn end(&self, end: &server::End<'_>, call: &mut Call) {
        if call.up.is_none() {
            return;
        }
        let status = end.status;
        if let Some(mut s) = call.span.take() {
            s.http_status(if status == 0 { 502 } else { status });
        }
        if let (Some(m), Some(Upstream::Sidecar { .. } | Upstream::App { .. })) =
            (&self.rt.metrics, &call.up)
        {
            m.invoke_answered(
                app_name(&call.target),
                spar_filters::metrics::http_status_label(if status == 0 { 500 } else { status }),
                CallType::Unary,
                call.started,
            );
        }
        let ms = call.started.elapsed().as_secs_f64() * 1000.0;
        if let Some((m, app_id)) = &self.metrics {
            m.record_http(app_id, call.method, "", status, ms);
        }
        if let Some(l) = &self.rt.peek().api_log {
            l.http(
                call.method,
                "/v1.0/invoke/{id}/method/{method}",
                end.path,
                status,
                ms,
            );
        }
    }

    /// An invocation — `/v1.0/invoke/{app}/method/…`, or a `dapr-app-id`
    /// header on a non-API path — to an app without a resiliency policy
    /// (those are buffered and retried on pingora's session).
    fn takes(&self, head: &h1::HeadIn<'_>) -> bool {
        use upstream::HeadView;
        // The public port's calls, and calls carrying a header some filter
        // reads (it may add answer headers), are served on pingora's session.
        if self.public || self.chain.reads_any(|n| head.header(n).is_some()) {
            return false;
        }
        let path = head.path();
        let app = match path.strip_prefix("/v1.0/invoke/") {
            Some(rest) => rest.split('/').next().unwrap_or_default(),
            None if path.starts_with("/v1.0/") || path.starts_with("/v1.0-alpha1/") => {
                return false
            }
            None => head.header("dapr-app-id").unwrap_or_default(),
        };
        // Encoded or URL targets are rare: pingora's session reads them.
        !app.is_empty() && !app.contains(['%', ':', '/']) && !self.policy(app)
    }

    async fn decide<'a>(
        &'a self,
        head: &h1::ReqHead,
        _: Option<&pingora::protocols::tls::SslDigest>,
        call: &mut Call,
    ) -> server::Decision<'a> {
        let Some(target) = upstream::target(head) else {
            let e = spar_filters::ApiError::RouteNotFound(upstream::HeadView::path(head).into());
            return server::Decision::Error(e);
        };
        match self.route(head, target, call).await {
            Routed::Error(e) => server::Decision::Error(e),
            // `takes` leaves out apps with a policy: only a reload between
            // the two could get here.
            Routed::Resilient(..) => server::Decision::Error(spar_filters::ApiError::Internal(
                "resiliency policy changed during the call".into(),
            )),
            // `takes` leaves out calls carrying headers filters read.
            Routed::Answer(_) => server::Decision::Error(spar_filters::ApiError::Internal(
                "a filter answered a relayed call".into(),
            )),
            Routed::Upstream => match self.fast_path(call) {
                Some(dest) => server::Decision::Relay {
                    dest,
                    read_timeout: None,
                },
                None => server::Decision::Proxy,
            },
        }
    }

    fn edit(&self, out: &mut h1::Outgoing<'_>, call: &Call) -> Result<()> {
        self.prepare_upstream(out, call)
    }

    fn relay_error(&self, e: &Error, call: &Call) -> spar_filters::ApiError {
        upstream::invoke_error(e, &call.target)
    }

    fn max_body(&self) -> usize {
        self.max_body
    }

    fn max_head(&self) -> usize {
        self.max_head
    }
}

/// pingora-proxy's face: every request when `SPAR_HTTP_FAST_PATH=off`,
/// else the invocations `serve` handed off.
#[async_trait]
impl ProxyHttp for HttpApi {
    type CTX = Call;

    fn new_ctx(&self) -> Self::CTX {
        Call {
            up: None,
            target: String::new(),
            method: "",
            started: Instant::now(),
            retries: 0,
            span: None,
            answer_headers: Vec::new(),
        }
    }

    fn on_connection_reuse(
        &self,
        _: &mut Session,
        call: &mut Call,
        prev: Box<dyn std::any::Any + Send + Sync>,
    ) {
        server::take_handed_off(call, prev);
    }

    async fn request_filter(&self, session: &mut Session, call: &mut Self::CTX) -> Result<bool> {
        // Handed-off calls too: pingora read the head again (a repeated
        // length is made one here).
        if let Err(r) = h1::refuse::check_session(session) {
            let e = r.api_error(session.req_header().uri.path());
            h1::refuse::write_closing(session, &e).await?;
            return Ok(true);
        }
        if call.up.is_some() {
            // Decided already (handed off by `serve`).
            return self.call_grpc_app(session, call).await;
        }
        server::Front::serve(self, session, call).await
    }

    async fn upstream_peer(&self, _: &mut Session, call: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        if call.retries > 0 {
            tokio::time::sleep(RETRY_BASE * 2u32.pow(call.retries - 1)).await;
            let target = Self::target(call);
            if let (Some(Upstream::Sidecar { addr, .. }), Some(r)) =
                (call.up.as_mut(), self.rt.resolver.as_ref())
            {
                if let Ok(a) = r.resolve(&target).await {
                    *addr = a;
                }
            }
        }
        call.up
            .as_ref()
            .map(|u| upstream::peer(u, self.mtls.as_deref(), self.app_h2))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no invocation target"))
    }

    fn fail_to_connect(
        &self,
        _: &mut Session,
        _: &HttpPeer,
        call: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(Upstream::Sidecar { addr, .. }), Some(r)) =
            (call.up.as_ref(), self.rt.resolver.as_ref())
        {
            r.report_failure(&Self::target(call), *addr);
        }
        if call.retries < MAX_RETRIES {
            call.retries += 1;
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        call: &mut Self::CTX,
    ) -> Result<()> {
        self.prepare_upstream(req, call)
    }

    async fn response_filter(
        &self,
        _: &mut Session,
        resp: &mut ResponseHeader,
        call: &mut Self::CTX,
    ) -> Result<()> {
        for (k, v) in std::mem::take(&mut call.answer_headers) {
            upstream::append_header(resp, k, &v)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        call: &mut Self::CTX,
    ) -> FailToProxy {
        server::Front::fail(self, session, e, call).await
    }

    async fn logging(&self, session: &mut Session, _: Option<&Error>, call: &mut Self::CTX) {
        server::Front::log(self, session, call);
    }
}
