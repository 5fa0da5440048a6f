//! The invocation fast path on pingora's sessions, and the upstream pool
//! both HTTP/1 paths share. Invocations spar's own path (`h1/`) does not
//! take but pingora's session reads — absolute-form calls, encoded or URL
//! app ids, heads h1 leaves to pingora — are forwarded here
//! when HTTP/1.1 in and to an HTTP/1.1 upstream (the peer sidecar, over
//! mTLS or not, or this sidecar's app), in one task, without pingora-proxy.
//!
//! pingora-proxy's upstream phase (connector and pool watcher task, the
//! two body-pump tasks and their channels, module hooks) costs more per
//! call than the forwarding itself: a proxy written this way on pingora-core
//! measured 1.3–1.5× the throughput of bare pingora-proxy and half its tails
//! at 5,000 req/s (bench/README.md). Everything else — external endpoints,
//! HTTP/2, upgrades, `Expect: 100-continue`, a peer that cannot be reached
//! (with its re-resolution and retries) — still goes through pingora-proxy.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http::header::{self, HeaderName};
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::http::ServerSession as Session;
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

use super::up_conn::UpConn;
use crate::security::identity::{Identity, Issued};

/// Idle connections kept per upstream and thread; more are closed.
const POOL_PER_ADDR: usize = 128;
/// Pooled connections idle longer than this are closed, not reused.
const MAX_IDLE: Duration = Duration::from_secs(50);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bodies up to this size are read before sending, so a call on a pooled
/// connection the upstream closed meanwhile can be sent again on a new one.
const RESEND_LIMIT: usize = 64 * 1024;
/// Interim (1xx) answers skipped before an upstream counts as broken.
const MAX_INTERIM: usize = 16;

/// Where a call goes.
#[derive(Clone, Copy)]
pub enum Dest<'a> {
    /// Plain TCP: the app, or a peer sidecar without mTLS.
    Plain(SocketAddr),
    /// A peer sidecar's internal listener over mTLS, as this identity.
    Mtls(SocketAddr, &'a Identity),
}

impl Dest<'_> {
    pub(crate) fn key(self) -> (SocketAddr, bool) {
        match self {
            Dest::Plain(a) => (a, false),
            Dest::Mtls(a, _) => (a, true),
        }
    }

    /// The certificate a new connection presents.
    pub(crate) fn cert(self) -> Option<Arc<Issued>> {
        match self {
            Dest::Plain(_) => None,
            Dest::Mtls(_, id) => Some(id.current()),
        }
    }
}

/// A kept-alive upstream connection.
struct Idle {
    stream: UpConn,
    since: Instant,
    /// The certificate it was opened with (mTLS): after a renewal, old
    /// connections are retired rather than reused.
    cert: Option<Arc<Issued>>,
}

thread_local! {
    /// A listener's runtime is current-thread (or work-stealing with
    /// SPAR_HTTP_THREADS): the pool is only touched between awaits.
    static POOL: RefCell<rustc_hash::FxHashMap<(SocketAddr, bool), Vec<Idle>>> =
        RefCell::default();
}

/// Headers for one connection only (RFC 9110 §7.6.1), never forwarded.
fn is_hop_by_hop(n: &HeaderName) -> bool {
    super::h1::head::is_hop_by_hop(n.as_str().as_bytes())
}

/// The hop-by-hop headers present, and those `Connection` names
/// (`Transfer-Encoding` excepted: it frames the body the upstream session
/// re-encodes). One pass over the names: most calls carry none, and
/// removing by name costs a parse each.
fn hop_by_hop(h: &http::HeaderMap) -> Vec<HeaderName> {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "transfer-encoding" && t != "host")
        .collect();
    h.keys()
        .filter(|k| is_hop_by_hop(k) || named.iter().any(|n| n == k.as_str()))
        .cloned()
        .collect()
}

pub enum Forwarded {
    /// The answer (or an error answer) went to the caller.
    Done,
    /// No connection could be made; nothing was read from the caller, so
    /// pingora-proxy's path (re-resolution, retries, error mapping) takes
    /// the call.
    NotConnected,
}

/// `SPAR_HTTP_FAST_PATH=off` sends every call through pingora-proxy (read
/// once; for comparison and troubleshooting).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("SPAR_HTTP_FAST_PATH")
            .map_or(true, |v| !matches!(v.trim(), "off" | "0" | "false"))
    })
}

/// Whether the caller's request can take the fast path.
pub fn eligible(session: &Session) -> bool {
    let req = session.req_header();
    enabled()
        && !session.is_http2()
        && req.version == http::Version::HTTP_11
        && !req.headers.contains_key(header::UPGRADE)
        && !req.headers.contains_key(header::EXPECT)
}

/// Sends the caller's request — its header rewritten by `prepare` — and
/// body to `dest`, and streams the answer back. `read_timeout` bounds each
/// wait for the upstream.
pub async fn forward(
    session: &mut Session,
    dest: Dest<'_>,
    prepare: impl Fn(&mut RequestHeader) -> Result<()>,
    read_timeout: Option<Duration>,
) -> Result<Forwarded> {
    // Built again only for a resend, so the common call clones it once.
    let request = |session: &Session| -> Result<RequestHeader> {
        let mut req = session.req_header().clone();
        prepare(&mut req)?;
        strip_hop_by_hop(&mut req);
        Ok(req)
    };
    let req = request(session)?;
    let cert = dest.cert();
    let (stream, pooled) = match checkout(dest.key(), cert.as_ref()) {
        Some(s) => (s, true),
        // Boxed: a TLS handshake's state would otherwise size every call's
        // future, and a new connection is the rare case.
        None => match Box::pin(connect(dest)).await {
            Some(s) => (s, false),
            None => return Ok(Forwarded::NotConnected),
        },
    };
    let stream = stream.into_stream();
    let idempotent = matches!(
        req.method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::PUT
            | http::Method::DELETE
            | http::Method::OPTIONS
    );
    // A small body is read first, so the call can be sent again.
    let small = declared_len(&req).is_some_and(|n| n <= RESEND_LIMIT);
    let body = if small {
        Some(read_body(session).await?)
    } else {
        None
    };
    let mut up = new_session(stream, read_timeout);
    if let Err((e, written)) = send(session, &mut up, req, body.as_ref()).await {
        // A pooled connection the upstream closed meanwhile: once more on a
        // fresh one, when the body can be sent again and the upstream cannot
        // have acted on the call (not all sent, or an idempotent method) —
        // the rule Go's HTTP client follows. Never after a timeout: the
        // deadline is spent.
        let timed_out = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        let Some(body) = body
            .as_ref()
            .filter(|_| pooled && !timed_out && (!written || idempotent))
        else {
            return Err(e);
        };
        let Some(fresh) = Box::pin(connect(dest)).await else {
            return Err(e);
        };
        up = new_session(fresh.into_stream(), read_timeout);
        send(session, &mut up, request(session)?, Some(body))
            .await
            .map_err(|(e, _)| e)?;
    }
    answer(session, &mut up).await?;
    up.respect_keepalive();
    if let Some(stream) = up.reuse().await {
        checkin(dest.key(), UpConn::Pingora(stream), cert);
    }
    Ok(Forwarded::Done)
}

fn new_session(stream: Stream, read_timeout: Option<Duration>) -> HttpSession {
    let mut up = HttpSession::new(stream);
    up.read_timeout = read_timeout;
    up
}

/// The request header, the body, and the answer's header. A failure says
/// whether the whole request had been written.
async fn send(
    session: &mut Session,
    up: &mut HttpSession,
    req: RequestHeader,
    body: Option<&Bytes>,
) -> std::result::Result<(), (Box<Error>, bool)> {
    let unsent = |e: Box<Error>| (e.into_up(), false);
    up.write_request_header(Box::new(req))
        .await
        .map_err(unsent)?;
    match body {
        Some(b) => {
            if !b.is_empty() {
                up.write_body(b).await.map_err(unsent)?;
            }
        }
        None => {
            while let Some(chunk) = session
                .read_request_body()
                .await
                .map_err(|e| (e.into_down(), false))?
            {
                // A read that ended inside a chunk's size line yields no
                // data; written upstream it would be a last-chunk (`0`).
                if !chunk.is_empty() {
                    up.write_body(&chunk).await.map_err(unsent)?;
                }
            }
        }
    }
    up.finish_body().await.map_err(unsent)?;
    up.read_response().await.map_err(|e| (e.into_up(), true))?;
    // Interim answers (100, 103) are not passed on: the caller gets the
    // final one. A 101 is a broken upstream (upgrades never take this
    // path), and endless interim answers are one too.
    let mut interim = 0;
    while let Some(status) = up.get_status().filter(|s| s.is_informational()) {
        interim += 1;
        let broken = if status == http::StatusCode::SWITCHING_PROTOCOLS {
            Some("upstream switched protocols on a request that asked for no upgrade")
        } else if interim > MAX_INTERIM {
            Some("upstream sent too many interim (1xx) answers")
        } else {
            None
        };
        if let Some(why) = broken {
            return Err((
                Error::explain(ErrorType::InvalidHTTPHeader, why).into_up(),
                true,
            ));
        }
        up.read_response().await.map_err(|e| (e.into_up(), true))?;
    }
    Ok(())
}

/// The upstream's answer to the caller. Once its header is sent, a failure
/// can only cut the connection: the error goes to `upstream::fail`, which
/// closes it without finishing the body, so the caller sees it cut short
/// (never a chunked body ended as if complete).
async fn answer(session: &mut Session, up: &mut HttpSession) -> Result<()> {
    let mut resp: Box<ResponseHeader> = Box::new(
        up.resp_header()
            .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))?
            .clone(),
    );
    for h in hop_by_hop(&resp.headers) {
        resp.remove_header(&h);
    }
    let empty = up.is_body_done();
    session
        .write_response_header(resp)
        .await
        .map_err(|e| e.into_down())?;
    if empty {
        return session
            .write_response_body(Bytes::new(), true)
            .await
            .map_err(|e| e.into_down());
    }
    loop {
        match up.read_body_bytes().await {
            Ok(Some(b)) => session
                .write_response_body(b, false)
                .await
                .map_err(|e| e.into_down())?,
            Ok(None) => break,
            Err(e) => return Err(e.into_up()),
        }
    }
    session
        .write_response_body(Bytes::new(), true)
        .await
        .map_err(|e| e.into_down())
}

async fn read_body(session: &mut Session) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| e.into_down())?
    {
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn declared_len(req: &RequestHeader) -> Option<usize> {
    if req.headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    match req.headers.get(header::CONTENT_LENGTH) {
        None => Some(0),
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
    }
}

/// Hop-by-hop headers stay with the caller's connection.
fn strip_hop_by_hop(req: &mut RequestHeader) {
    for h in hop_by_hop(&req.headers) {
        req.remove_header(&h);
    }
}

pub(crate) async fn connect(dest: Dest<'_>) -> Option<UpConn> {
    match dest {
        Dest::Plain(addr) => {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                .await
                .ok()?
                .ok()?;
            tcp.set_nodelay(true).ok()?;
            Some(UpConn::Tcp(tcp))
        }
        // pingora's connector does the handshake (peer chain checked against
        // the trust anchors, this sidecar's certificate presented); the
        // stream then lives in this pool, not pingora's.
        Dest::Mtls(addr, id) => {
            let peer = super::upstream::sidecar_peer(addr, Some(id));
            tokio::time::timeout(CONNECT_TIMEOUT, tls_connector().new_stream(&*peer))
                .await
                .ok()?
                .ok()
                .map(UpConn::Pingora)
        }
    }
}

/// One per process, made on the first mTLS call.
fn tls_connector() -> &'static TransportConnector {
    static C: OnceLock<TransportConnector> = OnceLock::new();
    C.get_or_init(|| TransportConnector::new(None))
}

/// A pooled connection still open: the newest first (the likeliest to be
/// warm); closed, stale, unexpectedly readable or opened with a replaced
/// certificate ones are dropped.
pub(crate) fn checkout(key: (SocketAddr, bool), cert: Option<&Arc<Issued>>) -> Option<UpConn> {
    loop {
        let mut idle = POOL.with(|p| p.borrow_mut().get_mut(&key)?.pop())?;
        let same_cert = match (cert, &idle.cert) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if same_cert && idle.since.elapsed() < MAX_IDLE && idle_and_open(&mut idle.stream) {
            return Some(idle.stream);
        }
    }
}

pub(crate) fn checkin(key: (SocketAddr, bool), stream: UpConn, cert: Option<Arc<Issued>>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.entry(key).or_default();
        if idle.len() < POOL_PER_ADDR {
            idle.push(Idle {
                stream,
                since: Instant::now(),
                cert,
            });
        }
    });
}

/// An idle HTTP/1 connection has nothing to read: EOF means the upstream
/// closed it, bytes mean it is out of step.
fn idle_and_open(s: &mut UpConn) -> bool {
    let mut b = [0u8; 1];
    s.read(&mut b).now_or_never().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_are_dropped() {
        let mut r = req(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut r);
        for gone in ["connection", "keep-alive", "x-secret", "te"] {
            assert!(r.headers.get(gone).is_none(), "{gone}");
        }
        assert!(r.headers.get("transfer-encoding").is_some());
        assert!(r.headers.get("x-kept").is_some());
    }

    #[test]
    fn only_known_small_bodies_are_read_first() {
        assert_eq!(declared_len(&req(&[])), Some(0));
        assert_eq!(declared_len(&req(&[("content-length", "10")])), Some(10));
        assert_eq!(
            declared_len(&req(&[("transfer-encoding", "chunked")])),
            None
        );
        assert_eq!(declared_len(&req(&[("content-length", "x")])), None);
    }
}
