//! How a listener serves HTTP/1: each request is read and answered on
//! pingora-core's own session, by the listener's API (`Front::serve`), and
//! only the calls it cannot answer alone — invocations of HTTP/2 apps and
//! external endpoints, upgrades, `Expect: 100-continue`, a peer that could
//! not be reached — go on to pingora-proxy, with the call as already
//! decided (the chain is not run twice).
//!
//! pingora-proxy accepting every request costs more than most requests
//! need: its request future is moved on every call, and each request sets
//! up its module and phase state (bench/README.md: a forwarding proxy on
//! pingora-core alone measured 1.2–1.5× bare pingora-proxy's throughput).
//! HTTP/2 connections (the internal listener's h2c and TLS peers) go to
//! pingora-proxy whole: their streams are served concurrently there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::v1::client::http_req_header_to_wire;
use pingora::protocols::http::{ReusableHttpStream, ServerSession};
use pingora::protocols::tls::SslDigest;
use spar_filters::ApiError;

use super::forward::Dest;
use super::h1::refuse;
use super::h1::{HeadIn, Outgoing, ReqHead};
use pingora::proxy::{FailToProxy, HttpProxy, ProxyHttp};
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

/// A listener's API, served by [`ApiServer`].
#[async_trait]
pub trait Front: ProxyHttp + Clone + Send + Sync + 'static
where
    Self::CTX: Send + Sync + 'static,
{
    /// Answers one request (header read). `Ok(false)`: pingora-proxy takes
    /// it on, with `ctx` as `serve` left it.
    async fn serve(&self, s: &mut ServerSession, ctx: &mut Self::CTX) -> Result<bool>;

    /// Writes the error answer for a call `serve` failed.
    async fn fail(&self, s: &mut ServerSession, e: &Error, ctx: &mut Self::CTX) -> FailToProxy;

    /// After the answer: metrics, spans, the API log.
    fn end(&self, end: &End<'_>, ctx: &mut Self::CTX);

    /// `end` for a request served on pingora's session.
    fn log(&self, s: &ServerSession, ctx: &mut Self::CTX) {
        let req = s.req_header();
        let end = End {
            status: s.response_written().map_or(0, |r| r.status.as_u16()),
            path: req.uri.path(),
            body: (s.body_bytes_read(), s.body_bytes_sent()),
        };
        self.end(&end, ctx);
    }

    /// Whether spar's own HTTP/1 path (`h1`) takes this request; asked
    /// before anything about the call is decided.
    fn takes(&self, head: &HeadIn<'_>) -> bool;

    /// Decides a call `takes` accepted.
    async fn decide<'a>(
        &'a self,
        head: &ReqHead,
        tls: Option<&SslDigest>,
        ctx: &mut Self::CTX,
    ) -> Decision<'a>;

    /// The upstream request's edits (both paths' `prepare_upstream`).
    fn edit(&self, out: &mut Outgoing<'_>, ctx: &Self::CTX) -> Result<()>;

    /// The Dapr error for a call that failed upstream.
    fn relay_error(&self, e: &Error, ctx: &Self::CTX) -> ApiError;

    /// The body limit a handed-off request is read within.
    fn max_body(&self) -> usize;

    /// The largest request head read (a longer one is answered 431).
    fn max_head(&self) -> usize {
        super::h1::head::MAX_HEAD
    }
}

/// How a call on spar's own HTTP/1 path goes on.
pub enum Decision<'a> {
    /// Answered here, with Dapr's error.
    Error(ApiError),
    /// Relayed by `h1`; `read_timeout` bounds each wait for the upstream.
    Relay {
        dest: Dest<'a>,
        read_timeout: Option<std::time::Duration>,
    },
    /// Sent by pingora-proxy, as decided (HTTP/2 apps, external endpoints).
    Proxy,
}

/// What `Front::end` records of an answered call.
pub struct End<'a> {
    /// 0 when no answer was sent.
    pub status: u16,
    pub path: &'a str,
    /// Body bytes read from the caller, and sent to it.
    pub body: (usize, usize),
}

/// How a request served on pingora's session left the connection.
pub enum Next {
    /// Finished: the connection (with the bytes read past the request).
    Reuse(ReusableHttpStream, HttpPersistentSettings),
    /// Closed, or handed to pingora's accept loop.
    Done(Option<ReusedHttpStream>),
}

/// Marks a connection that went to pingora-proxy: it stays on pingora's
/// sessions (their settings may hold bytes read ahead, which only pingora's
/// next session can take back).
struct Sticky;

pub(crate) fn sticky(r: Option<ReusedHttpStream>) -> Option<ReusedHttpStream> {
    let (stream, settings) = r?.consume();
    let mut settings = settings?;
    settings.set_user_context(Box::new(Sticky));
    Some(ReusedHttpStream::new(stream, Some(settings)))
}

/// A decided call on its way to pingora-proxy, carried on the connection:
/// the API's `on_connection_reuse` takes it back as the request's context.
pub struct HandedOff<C>(pub C);

/// Takes a handed-off call back as the context (pingora-proxy calls this
/// before `request_filter` of a request that came from [`ApiServer`]).
pub fn take_handed_off<C: 'static>(ctx: &mut C, prev: Box<dyn std::any::Any + Send + Sync>) {
    if let Ok(h) = prev.downcast::<HandedOff<C>>() {
        *ctx = h.0;
    }
}

pub struct ApiServer<F: Front>
where
    F::CTX: Send + Sync + 'static,
{
    pub(crate) front: F,
    pub(crate) proxy: Arc<HttpProxy<F>>,
    options: Option<HttpServerOptions>,
    closing: AtomicBool,
    closed: Notify,
}

impl<F: Front> ApiServer<F>
where
    F::CTX: Send + Sync + 'static,
{
    pub fn new(conf: &Arc<ServerConf>, front: F, options: Option<HttpServerOptions>) -> Self {
        let mut proxy = pingora::proxy::http_proxy(conf, front.clone());
        proxy.server_options = options.clone();
        ApiServer {
            front,
            proxy: Arc::new(proxy),
            options,
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        }
    }

    /// Waits for the listener to close (idle keep-alive reads give up).
    pub(crate) async fn closing(&self) {
        let notified = self.closed.notified();
        if !self.closing.load(Ordering::Acquire) {
            notified.await;
        }
    }

    /// pingora-proxy reads the request again: the header as it came (for
    /// a body sent chunked: with its length instead), the body read here
    /// within the limit, then whatever the client sent after it.
    async fn hand_off(
        self: &Arc<Self>,
        mut s: ServerSession,
        mut ctx: F::CTX,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let mut head: RequestHeader = s.req_header().clone();
        // The connection ends after this call (the caller asked, or its
        // framing was ambiguous): read again, the request says so.
        if s.get_keepalive().is_none() {
            head.insert_header(http::header::CONNECTION, "close").ok()?;
        }
        let (body, too_large) = match read_body(&mut s, self.front.max_body()).await {
            Ok(b) => b,
            Err(e) => {
                // Broken chunks: refused. Else the caller went away
                // mid-body.
                if refuse::is_request_framing(&e) {
                    let _ =
                        refuse::write_closing(&mut s, &refuse::of_framing(&e).api_error("")).await;
                }
                self.front.log(&s, &mut ctx);
                return None;
            }
        };
        if too_large {
            let e = spar_filters::ApiError::BodyTooLarge {
                limit: self.front.max_body(),
            };
            s.set_keepalive(None);
            let _ = super::upstream::write_error(&mut s, &e).await;
            self.front.log(&s, &mut ctx);
            let _ = s.finish().await;
            return None;
        }
        // The stream must come back from `finish` with what was read past
        // the body, whatever the request asked of the connection (read
        // again, the request asks the same).
        s.set_keepalive(Some(0));
        s.set_pipelining_enabled(true);
        let (stream, rest) = s.finish().await.ok()??.into_parts();
        head.remove_header(&http::header::TRANSFER_ENCODING);
        head.remove_header(&http::header::EXPECT);
        if !body.is_empty() || head.headers.contains_key(http::header::CONTENT_LENGTH) {
            head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())
                .ok()?;
        }
        let mut wire = http_req_header_to_wire(&head)?;
        wire.reserve(body.len() + rest.as_ref().map_or(0, |r| r.len()));
        wire.put_slice(&body);
        if let Some(r) = rest {
            wire.put_slice(&r);
        }
        let mut next = ServerSession::new_http1(stream);
        next.set_pipelined_prefix(wire);
        next.set_connection_user_context(Some(Box::new(HandedOff(ctx))));
        self.proxy.process_new_http(next, shutdown).await
    }
}

impl<F: Front> ApiServer<F>
where
    F::CTX: Send + Sync + 'static,
{
    /// One request on pingora's session: read, served by the API (or
    /// handed to pingora-proxy), logged, finished.
    pub(crate) async fn serve_session(
        self: &Arc<Self>,
        mut s: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Next {
        let read = tokio::select! {
            biased;
            r = s.read_request() => r,
            _ = self.closing() => return Next::Done(None),
        };
        match read {
            Ok(true) => {}
            Ok(false) => return Next::Done(None),
            Err(e) => {
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let e = refuse::of_framing(&e).api_error("");
                    let _ = refuse::write_closing(&mut s, &e).await;
                }
                s.shutdown().await;
                return Next::Done(None);
            }
        }
        if let Err(r) = refuse::check_session(&mut s) {
            let e = r.api_error(s.req_header().uri.path());
            let _ = refuse::write_closing(&mut s, &e).await;
            s.shutdown().await;
            return Next::Done(None);
        }
        if *shutdown.borrow() {
            s.set_keepalive(None);
        }
        let mut ctx = self.front.new_ctx();
        match self.front.serve(&mut s, &mut ctx).await {
            Ok(true) => {}
            // Boxed: the hand-off's state (a second session) would
            // otherwise size every request's future, copied per request.
            Ok(false) => {
                return Next::Done(sticky(Box::pin(self.hand_off(s, ctx, shutdown)).await))
            }
            Err(e) => {
                let f = self.front.fail(&mut s, &e, &mut ctx).await;
                if !f.can_reuse_downstream {
                    // Closed as it stands: `finish` would end a body cut
                    // short as if it were complete.
                    self.front.log(&s, &mut ctx);
                    s.shutdown().await;
                    return Next::Done(None);
                }
            }
        }
        self.front.log(&s, &mut ctx);
        let settings = HttpPersistentSettings::for_session(&s);
        match s.finish().await {
            Ok(Some(r)) => Next::Reuse(r, settings),
            _ => Next::Done(None),
        }
    }
}

/// The request body up to `limit`; past it, reading stops (refused at
/// once when its declared length is over).
pub(crate) async fn read_body(s: &mut ServerSession, limit: usize) -> Result<(BytesMut, bool)> {
    let mut buf = BytesMut::new();
    if s.is_body_done() {
        return Ok((buf, false));
    }
    let header = |n| s.req_header().headers.get(n).and_then(|v| v.to_str().ok());
    let declared =
        header(http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        // Refused before the client sends it.
        return Ok((buf, true));
    }
    let expects_continue =
        header(http::header::EXPECT).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        // Clients like curl and .NET wait for this before sending a body.
        s.write_continue_response().await?;
    }
    buf.reserve(declared.unwrap_or(0));
    while let Some(chunk) = s.read_request_body().await? {
        if buf.len() + chunk.len() > limit {
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

#[async_trait]
impl<F: Front> HttpServerApp for ApiServer<F>
where
    F::CTX: Send + Sync + 'static,
{
    async fn process_new_http(
        self: &Arc<Self>,
        mut s: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if s.is_http2() || !super::forward::enabled() {
            return self.proxy.process_new_http(s, shutdown).await;
        }
        let on_pingora = s
            .take_connection_user_context()
            .is_some_and(|c| c.is::<Sticky>());
        if on_pingora {
            return match self.serve_session(s, shutdown).await {
                Next::Reuse(r, settings) => {
                    sticky(Some(ReusedHttpStream::from_reusable_stream(r, settings)))
                }
                Next::Done(r) => r,
            };
        }
        match s {
            ServerSession::H1(v1) => self.serve_h1(v1.into_inner(), shutdown).await,
            s => self.proxy.process_new_http(s, shutdown).await,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.options.as_ref()
    }

    async fn http_cleanup(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
        self.proxy.http_cleanup().await;
    }
}
