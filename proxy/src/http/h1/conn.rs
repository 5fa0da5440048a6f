//! A listener's HTTP/1 connection on spar's own path: each request's head
//! is parsed where it lies in the read buffer; an invocation the API takes
//! here is decided and relayed as bytes (`relay.rs`), every other request
//! is served by pingora's session from the bytes read so far.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use spar_filters::ApiError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::head::{Framing, Parsed, ReqHead};
use super::outgoing::Outgoing;
use super::refuse::{self, Refusal};
use super::relay::{self, Outcome};
use crate::http::server::{ApiServer, Decision, End, Front, HandedOff, Next};
use crate::http::upstream::HeadView;

/// How long an idle connection waits for its next request (pingora's own
/// keep-alive default).
pub const KEEPALIVE: Duration = Duration::from_secs(60);

impl<F: Front> ApiServer<F>
where
    F::CTX: Send + Sync + 'static,
{
    /// Serves an HTTP/1 connection until it closes, or until a call goes to
    /// pingora-proxy (the connection then stays on pingora's sessions).
    pub(crate) async fn serve_h1(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let mut buf = BytesMut::with_capacity(4096);
        let tls = stream.get_ssl_digest();
        // One idle timer for the connection, moved on lazily: a timer set
        // and cancelled around every read costs more than the read's own
        // bookkeeping.
        let idle_timer = tokio::time::sleep(KEEPALIVE);
        tokio::pin!(idle_timer);
        let mut last_read = tokio::time::Instant::now();
        loop {
            let max_head = self.front.max_head();
            let parsed = loop {
                match ReqHead::parse(&buf) {
                    Parsed::Partial if buf.len() > max_head => break Parsed::TooLarge,
                    Parsed::Head(h) if h.len > max_head => break Parsed::TooLarge,
                    Parsed::Partial => {}
                    p => break p,
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(16 * 1024);
                }
                let idle = buf.is_empty();
                let read = loop {
                    tokio::select! {
                        biased;
                        r = stream.read_buf(&mut buf) => break r,
                        _ = &mut idle_timer => {
                            // Idle too long: nothing to answer.
                            let due = last_read + KEEPALIVE;
                            if tokio::time::Instant::now() >= due {
                                return None;
                            }
                            idle_timer.as_mut().reset(due);
                        }
                        _ = self.closing(), if idle => return None,
                    }
                };
                match read {
                    Ok(n) if n > 0 => last_read = tokio::time::Instant::now(),
                    // Closed or failed.
                    _ => return None,
                }
            };
            let head = match parsed {
                Parsed::Head(h) if self.front.takes(&h.view(&buf)) => h,
                // `--read-buffer-size`: daprd's server answers 431 too.
                Parsed::TooLarge => {
                    let e = ApiError::HeadersTooLarge { limit: max_head };
                    if write_error(&mut stream, &e, true).await.is_ok() {
                        Box::pin(linger_close(&mut stream)).await;
                    }
                    return None;
                }
                Parsed::Refused(r, target) => {
                    let path = String::from_utf8_lossy(&buf[target]);
                    if write_error(&mut stream, &r.api_error(&path), true)
                        .await
                        .is_ok()
                    {
                        Box::pin(linger_close(&mut stream)).await;
                    }
                    return None;
                }
                _ => match self.session(stream, buf, shutdown).await {
                    Next::Reuse(r, _) => {
                        let (s, rest) = r.into_parts();
                        (stream, buf) = (s, rest.unwrap_or_default());
                        continue;
                    }
                    Next::Done(r) => return r,
                },
            };
            let closing = *shutdown.borrow();
            match self
                .call(&mut stream, buf, head, tls.as_deref(), closing)
                .await
            {
                Step::Next(rest) if !closing => buf = rest,
                Step::Next(_) | Step::Close => return None,
                Step::Proxy(prefix, ctx) => {
                    return self.proxied(stream, prefix, ctx, shutdown).await
                }
            }
        }
    }

    /// One invocation on this path.
    async fn call(
        &self,
        stream: &mut Stream,
        mut buf: BytesMut,
        mut head: ReqHead,
        tls: Option<&pingora::protocols::tls::SslDigest>,
        closing: bool,
    ) -> Step<F::CTX> {
        let head_bytes = buf.split_to(head.len).freeze();
        head.attach(head_bytes);
        let mut ctx = self.front.new_ctx();
        let close = head.close || closing;
        let (status, body, reusable) = match self.front.decide(&head, tls, &mut ctx).await {
            Decision::Error(e) => {
                // A body already here is skipped; one still on its way
                // closes the connection after the answer.
                let unread = match head.framing {
                    Framing::Length(n) if n as usize <= buf.len() => {
                        buf.advance(n as usize);
                        false
                    }
                    _ => true,
                };
                let ok = write_error(stream, &e, close || unread).await.is_ok();
                (e.http_status(), (0, 0), ok && !unread)
            }
            Decision::Proxy => return Step::Proxy(rejoin(&head, buf), ctx),
            Decision::Relay { dest, read_timeout } => {
                let mut out = Outgoing::new(&head);
                let mut up = BytesMut::with_capacity(head.len + 256);
                if let Err(e) = self.front.edit(&mut out, &ctx) {
                    let e = self.front.relay_error(&e, &ctx);
                    let _ = write_error(stream, &e, true).await;
                    self.front
                        .end(&End::new(&head, e.http_status(), (0, 0)), &mut ctx);
                    return Step::Close;
                }
                out.write(&mut up);
                match relay::relay(stream, &mut buf, &head, up, dest, read_timeout, close).await {
                    Ok(Outcome::Done(r)) => (r.status, r.body, r.reusable),
                    Ok(Outcome::NotConnected) => return Step::Proxy(rejoin(&head, buf), ctx),
                    Err(f) => {
                        if matches!(f.error.esource(), pingora::ErrorSource::Upstream) {
                            // The caller cannot be told any more: said here.
                            if f.answered.is_some() {
                                tracing::warn!(
                                    path = head.path(),
                                    "invocation's answer cut short: {}",
                                    f.error
                                );
                            } else {
                                tracing::debug!(
                                    path = head.path(),
                                    "invocation failed: {}",
                                    f.error
                                );
                            }
                        }
                        let status = match f.answered {
                            // Cut short after its head went out: the
                            // caller saw the upstream's status, the
                            // metrics count a bad gateway.
                            Some(_)
                                if matches!(f.error.esource(), pingora::ErrorSource::Upstream) =>
                            {
                                502
                            }
                            Some(s) => s,
                            // The caller's chunks were malformed: 400, and
                            // the connection closes (out of step).
                            None if refuse::is_request_framing(&f.error) => {
                                let why = f.error.context.as_ref().map(|c| c.to_string());
                                let e = Refusal::Chunked(why.unwrap_or_default()).api_error("");
                                if write_error(stream, &e, true).await.is_ok() {
                                    Box::pin(linger_close(stream)).await;
                                }
                                e.http_status()
                            }
                            None if matches!(
                                f.error.esource(),
                                pingora::ErrorSource::Downstream
                            ) =>
                            {
                                0
                            }
                            None => {
                                let e = self.front.relay_error(&f.error, &ctx);
                                let _ = write_error(stream, &e, true).await;
                                e.http_status()
                            }
                        };
                        self.front.end(&End::new(&head, status, (0, 0)), &mut ctx);
                        return Step::Close;
                    }
                }
            }
        };
        self.front.end(&End::new(&head, status, body), &mut ctx);
        if reusable && !close {
            Step::Next(buf)
        } else {
            Step::Close
        }
    }

    /// The request at the start of `buf` on pingora's session.
    async fn session(
        self: &Arc<Self>,
        stream: Stream,
        buf: BytesMut,
        shutdown: &ShutdownWatch,
    ) -> Next {
        let mut s = ServerSession::new_http1(stream);
        s.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE.as_secs()));
        // What the client sent past this request comes back from `finish`.
        s.set_pipelining_enabled(true);
        if !buf.is_empty() {
            s.set_pipelined_prefix(buf);
        }
        self.serve_session(s, shutdown).await
    }

    /// A decided call to pingora-proxy: it reads the request again from
    /// `prefix` (what was read of it, and all that followed).
    async fn proxied(
        self: &Arc<Self>,
        stream: Stream,
        prefix: BytesMut,
        ctx: F::CTX,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let mut s = ServerSession::new_http1(stream);
        s.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE.as_secs()));
        s.set_pipelining_enabled(true);
        s.set_pipelined_prefix(prefix);
        s.set_connection_user_context(Some(Box::new(HandedOff(ctx))));
        crate::http::server::sticky(self.proxy.process_new_http(s, shutdown).await)
    }
}

enum Step<C> {
    /// Done; the connection goes on with these bytes.
    Next(BytesMut),
    Close,
    /// pingora-proxy takes the call: the request's bytes, and the call.
    Proxy(BytesMut, C),
}

/// The request's head and what followed it, as one buffer again.
fn rejoin(head: &ReqHead, rest: BytesMut) -> BytesMut {
    let mut b = BytesMut::with_capacity(head.len + rest.len());
    b.put_slice(head.bytes());
    b.put_slice(&rest);
    b
}

/// An error answer in Dapr's format.
async fn write_error(stream: &mut Stream, e: &ApiError, close: bool) -> std::io::Result<()> {
    let body = e.to_json();
    let status = http::StatusCode::from_u16(e.http_status())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = BytesMut::with_capacity(128 + body.len());
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    out.put_slice(body.len().to_string().as_bytes());
    if close {
        out.put_slice(b"\r\nconnection: close");
    }
    out.put_slice(b"\r\n\r\n");
    out.put_slice(&body);
    stream.write_all(&out).await?;
    stream.flush().await
}

/// How long, and how much, a refused client may still send before the
/// connection is dropped (`linger_close`).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Ends a connection after an error answer without losing the answer:
/// the write side closes first, then what the client still sends is read
/// and dropped (bounded), so unread bytes do not make the kernel reset the
/// connection before the client has read its answer.
async fn linger_close(stream: &mut Stream) {
    if AsyncWriteExt::shutdown(stream).await.is_err() {
        return;
    }
    let mut scratch = vec![0u8; 16 * 1024];
    let drain = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

impl<'a> End<'a> {
    fn new(head: &'a ReqHead, status: u16, body: (usize, usize)) -> Self {
        End {
            status,
            path: head.path(),
            body,
        }
    }
}
