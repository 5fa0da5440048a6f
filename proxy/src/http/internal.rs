//! The internal listener (`--dapr-internal-grpc-port`): peer sidecars send
//! invocations here over HTTP/2 (h2c, or TLS with client certificates under
//! mTLS). This is the callee's inbound path: it checks the target is its
//! app, applies access control to the caller's SPIFFE identity, bounds the
//! call by the caller's deadline, adds `APP_API_TOKEN`, and streams the call
//! to its app.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::listeners::TlsAccept;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use spar_filters::access_control::AccessControl;
use spar_filters::handlers::invoke::Upstream;
use spar_filters::spiffe::SpiffeId;
use spar_filters::trace::{Span, SpanContext, SpanKind};
use spar_filters::{ApiError, Runtime};

use super::h1::{HeadIn, Outgoing, ReqHead};
use super::server::{Decision, End};
use super::upstream::{self, HeadView};

#[derive(Clone)]
pub struct InternalApi {
    rt: Arc<Runtime>,
    acl: Option<AccessControl>,
    app_h2: bool,
    /// A gRPC app: invocations (not transparent gRPC calls) go to its
    /// `AppCallback/OnInvoke`.
    grpc_app: Option<Arc<crate::app_grpc::GrpcAppChannel>>,
    /// Bounds only calls handed to pingora-proxy over HTTP/1 (read first),
    /// and the bodies sent to a gRPC app.
    max_body: usize,
}

impl InternalApi {
    pub fn new(rt: Arc<Runtime>, acl: Option<AccessControl>, max_body: usize) -> Self {
        let app_h2 = rt
            .app
            .as_ref()
            .is_some_and(|a| upstream::app_h2(&a.protocol));
        let grpc_app = crate::app_grpc::GrpcAppChannel::for_runtime(&rt);
        InternalApi {
            rt,
            acl,
            app_h2,
            grpc_app,
            max_body,
        }
    }

    /// The request as the app gets it (both paths).
    fn prepare_upstream(&self, req: &mut impl upstream::UpHead, ctx: &Inbound) -> Result<()> {
        if let Some(up) = ctx.up.as_ref() {
            upstream::rewrite(req, up, self.rt.app_token.as_deref())?;
        }
        if let Some(s) = &ctx.span {
            upstream::set_trace(req, s.context())?;
        }
        if let Some(id) = &ctx.caller {
            // Under mTLS the caller is known for certain: its certificate
            // names it, whatever its headers say.
            req.insert(CALLER_APP_ID, id.as_bytes())?;
        }
        Ok(())
    }
}

/// Per call: where it goes and by when.
#[derive(Default)]
pub struct Inbound {
    up: Option<Upstream>,
    deadline: Option<Instant>,
    /// The callee-side span (`CallLocal/{app}/{method}`, kind SERVER),
    /// ended once the app has answered.
    span: Option<Span>,
    /// The calling app (SPIFFE ID under mTLS, else `dapr-caller-app-id`).
    src: String,
    method: &'static str,
    started: Option<Instant>,
    /// To the gRPC app's `OnInvoke` (not proxied to it as it came).
    on_invoke: bool,
    /// The caller's app id from its client certificate (mTLS).
    caller: Option<String>,
}

const CALLER_APP_ID: http::HeaderName = http::HeaderName::from_static("dapr-caller-app-id");

/// Puts the caller's SPIFFE ID (from its client certificate) on the
/// connection, where each request reads it.
pub struct PeerIdentity;

#[async_trait]
impl TlsAccept for PeerIdentity {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let id = crate::security::tls::spiffe_of(tls.peer_certificate_der()?)?;
        Some(Arc::new(id))
    }
}

fn caller(session: &ServerSession) -> Option<SpiffeId> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<SpiffeId>()
        .cloned()
}

impl InternalApi {
    /// Checks the call (target, access control) and sets where it goes
    /// (both paths): the app's address.
    fn route(
        &self,
        req: &impl HeadView,
        caller: Option<SpiffeId>,
        ctx: &mut Inbound,
    ) -> Result<SocketAddr, ApiError> {
        let Some(target) = upstream::target_ref(req) else {
            return Err(ApiError::RouteNotFound(req.path().to_string()));
        };
        let app = target.app_id.split('.').next().unwrap_or_default();
        if app != self.rt.app_id {
            return Err(ApiError::DirectInvoke {
                app_id: target.app_id.into_owned(),
                reason: format!("this sidecar serves {:?}", self.rt.app_id),
            });
        }
        if let Some(acl) = &self.acl {
            let grpc = req
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/grpc"));
            let verb = (!grpc).then(|| req.method());
            let op = target.method.split('?').next().unwrap_or_default();
            if let Err(reason) = acl.check(caller.as_ref(), op, verb) {
                tracing::debug!(%reason, "access denied");
                return Err(ApiError::DirectInvokeDenied {
                    app_id: target.app_id.into_owned(),
                    reason,
                });
            }
        }
        ctx.caller = caller.as_ref().map(|id| id.app_id.clone());
        if let Some(m) = &self.rt.metrics {
            ctx.src = caller
                .map(|id| id.app_id)
                .or_else(|| req.header("dapr-caller-app-id").map(str::to_owned))
                .unwrap_or_default();
            ctx.method = super::static_method(req.method());
            ctx.started = Some(Instant::now());
            m.invoke_received(&ctx.src);
        }
        let Some(addr) = self.rt.app_addr() else {
            return Err(ApiError::AppChannelNotInitialized);
        };
        // A gRPC call is transparent proxying: it goes to the app as it is.
        ctx.on_invoke = self.grpc_app.is_some()
            && !req
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/grpc"));
        ctx.deadline = req
            .header("grpc-timeout")
            .and_then(crate::grpc::invoke_service::parse_grpc_timeout)
            .map(|d| Instant::now() + d);
        let tracer = self.rt.peek().tracer.clone();
        if tracer.enabled() {
            let parent = req
                .header("traceparent")
                .and_then(|t| SpanContext::parse(t, req.header("tracestate")));
            let op = target.method.split('?').next().unwrap_or_default();
            let mut span = tracer.start(
                parent.as_ref(),
                format!(
                    "CallLocal/{}/{}",
                    self.rt.app_id,
                    op.trim_start_matches('/')
                ),
                SpanKind::Server,
            );
            span.attr("rpc.service", "ServiceInvocation");
            span.attr("dapr.invoke_method", op.trim_start_matches('/').to_owned());
            ctx.span = Some(span);
        }
        let method = target.method.trim_start_matches('/');
        let mut path = String::with_capacity(method.len() + 1);
        path.push('/');
        path.push_str(method);
        ctx.up = Some(Upstream::App { addr, path });
        Ok(addr)
    }

    /// An invocation of the gRPC app, answered here (`on_invoke.rs`).
    async fn call_grpc_app(&self, session: &mut ServerSession, ctx: &Inbound) -> Result<()> {
        let (Some(app), Some(Upstream::App { path, .. })) = (&self.grpc_app, &ctx.up) else {
            return Err(Error::explain(ErrorType::InternalError, "no gRPC app"));
        };
        let call = super::on_invoke::Call {
            method: path.trim_start_matches('/'),
            timeout: Self::time_left(ctx),
            trace: ctx.span.as_ref().map(|s| s.context()),
            max_body: self.max_body,
        };
        // Boxed: this path's state (a gRPC call) would otherwise size
        // every call's future.
        Box::pin(super::on_invoke::serve(session, app, call)).await
    }

    /// What is left of the caller's deadline: it bounds each wait for the
    /// app.
    fn time_left(ctx: &Inbound) -> Option<Duration> {
        ctx.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        })
    }
}

#[async_trait]
impl super::server::Front for InternalApi {
    /// Checks the call and sends it to the app.
    async fn serve(&self, session: &mut ServerSession, ctx: &mut Inbound) -> Result<bool> {
        let addr = match self.route(session.req_header(), caller(session), ctx) {
            Ok(addr) => addr,
            Err(e) => {
                upstream::write_error(session, &e).await?;
                return Ok(true);
            }
        };
        if ctx.on_invoke {
            self.call_grpc_app(session, ctx).await?;
            return Ok(true);
        }
        if !self.app_h2 && super::forward::eligible(session) {
            let left = Self::time_left(ctx);
            let prepare = |req: &mut RequestHeader| self.prepare_upstream(req, ctx);
            if let super::forward::Forwarded::Done =
                super::forward::forward(session, super::forward::Dest::Plain(addr), prepare, left)
                    .await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every call to this listener is an invocation of its app.
    fn takes(&self, _: &HeadIn<'_>) -> bool {
        true
    }

    async fn decide<'a>(
        &'a self,
        head: &ReqHead,
        tls: Option<&SslDigest>,
        ctx: &mut Inbound,
    ) -> Decision<'a> {
        let caller = tls.and_then(|d| d.extension.get::<SpiffeId>().cloned());
        match self.route(head, caller, ctx) {
            Err(e) => Decision::Error(e),
            Ok(_) if self.app_h2 => Decision::Proxy,
            Ok(addr) => Decision::Relay {
                dest: super::forward::Dest::Plain(addr),
                read_timeout: Self::time_left(ctx),
            },
        }
    }

    fn edit(&self, out: &mut Outgoing<'_>, ctx: &Inbound) -> Result<()> {
        self.prepare_upstream(out, ctx)
    }

    fn relay_error(&self, e: &Error, _: &Inbound) -> ApiError {
        upstream::invoke_error(e, &self.rt.app_id)
    }

    async fn fail(&self, session: &mut ServerSession, e: &Error, _: &mut Inbound) -> FailToProxy {
        upstream::fail(session, e, &self.rt.app_id, &[]).await
    }

    fn end(&self, end: &End<'_>, ctx: &mut Inbound) {
        let status = if end.status == 0 { 502 } else { end.status };
        if let Some(mut s) = ctx.span.take() {
            s.http_status(status);
        }
        if let (Some(m), Some(started)) = (&self.rt.metrics, ctx.started) {
            // Bodies stream through unchanged: what was read from the
            // caller went to the app, what was sent back came from it.
            m.invoke_replied(
                &ctx.src,
                ctx.method,
                spar_filters::metrics::http_status_label(status),
                started,
                end.body,
            );
        }
    }

    fn max_body(&self) -> usize {
        self.max_body
    }
}

/// pingora-proxy's face: HTTP/2 connections, every request when
/// `SPAR_HTTP_FAST_PATH=off`, and the calls `serve` handed off.
#[async_trait]
impl ProxyHttp for InternalApi {
    type CTX = Inbound;

    fn new_ctx(&self) -> Self::CTX {
        Inbound::default()
    }

    fn on_connection_reuse(
        &self,
        _: &mut Session,
        ctx: &mut Inbound,
        prev: Box<dyn Any + Send + Sync>,
    ) {
        super::server::take_handed_off(ctx, prev);
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        // Handed-off calls too: pingora read the head again (a repeated
        // length is made one here).
        if let Err(r) = super::h1::refuse::check_session(session) {
            let e = r.api_error(session.req_header().uri.path());
            super::h1::refuse::write_closing(session, &e).await?;
            return Ok(true);
        }
        if ctx.up.is_some() {
            // Checked already (handed off by `serve`).
            if ctx.on_invoke {
                self.call_grpc_app(session, ctx).await?;
                return Ok(true);
            }
            return Ok(false);
        }
        super::server::Front::serve(self, session, ctx).await
    }

    async fn upstream_peer(&self, _: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let mut peer = ctx
            .up
            .as_ref()
            .map(|u| upstream::peer(u, None, self.app_h2))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no invocation target"))?;
        if let Some(d) = ctx.deadline {
            // The caller gives up at its deadline; so does the call to the app.
            let left = d
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            peer.options.read_timeout = Some(left);
            peer.options.total_connection_timeout = Some(left);
        }
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // A calling sidecar's `InvokeService` asks any app's sidecar for
        // the gRPC form; an app proxied to never sees the request for it.
        // (Only HTTP/2 callers send it: the HTTP/1 paths need not look.)
        req.remove_header(crate::app_grpc::REPLY_FORM);
        self.prepare_upstream(req, ctx)
    }

    async fn logging(&self, session: &mut Session, _: Option<&Error>, ctx: &mut Self::CTX) {
        super::server::Front::log(self, session, ctx);
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        super::server::Front::fail(self, session, e, ctx).await
    }
}
