//! Bounds on the gRPC API's and the internal listener's connections: a
//! connection must send HTTP/2's client preface (the magic line and its
//! SETTINGS frame) within the handshake timeout, and each listener keeps
//! at most so many connections open at once; one past it is closed at
//! accept. Neither tonic nor pingora bounds a connection that stalls in
//! the preface (pingora's own limit covers only the TLS handshake, 60 s;
//! `TlsStart` makes a TLS connection start it within the timeout too).
//!
//! A connection whose first bytes are not HTTP/2's preface (HTTP/1 on the
//! internal listener) stops being watched at the first byte that differs:
//! the HTTP/1 path closes idle partial heads itself (`h1::conn`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Default for `SPAR_HANDSHAKE_TIMEOUT` (seconds).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `SPAR_MAX_CONNECTIONS` (per listener).
const MAX_CONNECTIONS: usize = 10_000;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame's header: length (3 bytes), type, flags, stream id.
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;

/// The bounds of one kind of listener, from the environment.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub handshake: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// `SPAR_HANDSHAKE_TIMEOUT` (seconds, fractions allowed) and
    /// `SPAR_MAX_CONNECTIONS`; unset or invalid values take the defaults.
    pub fn from_env() -> Self {
        let secs = std::env::var("SPAR_HANDSHAKE_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64);
        let max = std::env::var("SPAR_MAX_CONNECTIONS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0);
        Limits {
            handshake: secs.unwrap_or(HANDSHAKE_TIMEOUT),
            max_connections: max.unwrap_or(MAX_CONNECTIONS),
        }
    }
}

/// One listener's open connections, counted.
#[derive(Clone)]
pub struct Slots {
    open: Arc<AtomicUsize>,
    limits: Limits,
}

impl Slots {
    pub fn new(limits: Limits) -> Self {
        Slots {
            open: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    /// A new connection, watched until its handshake is done; `None` when
    /// the listener is full (the caller closes it).
    pub fn admit<S>(&self, inner: S) -> Option<Guarded<S>> {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.open.clone());
        if prev >= self.limits.max_connections {
            tracing::debug!(
                limit = self.limits.max_connections,
                "connection refused: listener full"
            );
            return None;
        }
        Some(Guarded {
            inner,
            handshake: Some(Handshake::new(self.limits.handshake)),
            _slot: slot,
        })
    }
}

/// A counted connection: uncounted when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a connection is in HTTP/2's client preface.
struct Handshake {
    timer: Pin<Box<Sleep>>,
    /// Bytes of the preface read so far.
    seen: usize,
    /// Bytes the preface has (known once its SETTINGS frame's header is in).
    need: usize,
    header: [u8; FRAME_HEADER],
}

impl Handshake {
    fn new(timeout: Duration) -> Self {
        Handshake {
            timer: Box::pin(tokio::time::sleep(timeout)),
            seen: 0,
            need: PREFACE.len() + FRAME_HEADER,
            header: [0; FRAME_HEADER],
        }
    }

    /// Takes bytes read; `true` once the preface is whole, or the bytes are
    /// not HTTP/2's (watching stops either way).
    fn take(&mut self, mut got: &[u8]) -> bool {
        while !got.is_empty() && self.seen < self.need {
            let b = got[0];
            got = &got[1..];
            let at = self.seen;
            self.seen += 1;
            if at < PREFACE.len() {
                if b != PREFACE[at] {
                    return true;
                }
                continue;
            }
            let i = at - PREFACE.len();
            if i < FRAME_HEADER {
                self.header[i] = b;
                if i + 1 == FRAME_HEADER {
                    if self.header[3] != SETTINGS {
                        return true;
                    }
                    let h = &self.header;
                    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                    self.need += len;
                }
            }
        }
        self.seen >= self.need
    }
}

/// A connection with its handshake deadline and its listener slot.
pub struct Guarded<S> {
    inner: S,
    /// Until the preface is in.
    handshake: Option<Handshake>,
    _slot: Slot,
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "HTTP/2 preface not received in time",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(h) = this.handshake.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if h.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(timed_out()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let got = &buf.filled()[before..];
            // End of stream ends the watch too.
            if got.is_empty() || h.take(got) {
                this.handshake = None;
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Guarded<S> {
    /// When the handshake must be done by, while it is not.
    fn deadline(&self) -> Option<Instant> {
        self.handshake.as_ref().map(|h| h.timer.deadline())
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// tonic: the same connection information as the TCP stream's.
impl tonic::transport::server::Connected for Guarded<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// pingora: a listener's stream, wrapped; everything but reads passes to
/// the stream as it is.
mod pingora_io {
    use super::*;
    use async_trait::async_trait;
    use pingora::protocols::raw_connect::ProxyDigest;
    use pingora::protocols::tls::SslDigest;
    use pingora::protocols::{
        GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest,
    };
    use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};

    #[async_trait]
    impl Shutdown for Guarded<Stream> {
        async fn shutdown(&mut self) {
            self.inner.shutdown().await
        }
    }

    impl UniqueID for Guarded<Stream> {
        fn id(&self) -> UniqueIDType {
            self.inner.id()
        }
    }

    impl Ssl for Guarded<Stream> {
        fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
            self.inner.get_ssl()
        }
        fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
            self.inner.get_ssl_digest()
        }
        fn selected_alpn_proto(&self) -> Option<ALPN> {
            self.inner.selected_alpn_proto()
        }
    }

    impl GetTimingDigest for Guarded<Stream> {
        fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
            self.inner.get_timing_digest()
        }
        fn get_read_pending_time(&self) -> Duration {
            self.inner.get_read_pending_time()
        }
        fn get_write_pending_time(&self) -> Duration {
            self.inner.get_write_pending_time()
        }
    }

    impl GetProxyDigest for Guarded<Stream> {
        fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
            self.inner.get_proxy_digest()
        }
        fn set_proxy_digest(&mut self, d: ProxyDigest) {
            self.inner.set_proxy_digest(d)
        }
    }

    impl GetSocketDigest for Guarded<Stream> {
        fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
            self.inner.get_socket_digest()
        }
        fn set_socket_digest(&mut self, d: SocketDigest) {
            self.inner.set_socket_digest(d)
        }
    }

    /// pingora peeks for the h2c preface before reading: bounded by the
    /// handshake's deadline too.
    #[async_trait]
    impl Peek for Guarded<Stream> {
        async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
            match self.deadline() {
                None => self.inner.try_peek(buf).await,
                Some(d) => tokio::time::timeout_at(d, self.inner.try_peek(buf))
                    .await
                    .unwrap_or_else(|_| Err(timed_out())),
            }
        }
    }
}

/// Before a TLS handshake (the internal listener under mTLS): the
/// connection must send its first bytes within the handshake timeout, not
/// pingora's 60 s for the whole handshake. (They are read ahead and given
/// back to the handshake.)
pub struct TlsStart(pub Duration);

#[async_trait::async_trait]
impl pingora::listeners::PreTlsProcess for TlsStart {
    async fn process(
        &self,
        stream: &mut pingora::protocols::l4::stream::Stream,
    ) -> pingora::Result<()> {
        use pingora::protocols::Peek;
        // A ClientHello is longer than this, whatever it carries.
        let mut start = [0u8; 24];
        match tokio::time::timeout(self.0, stream.try_peek(&mut start)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(pingora::Error::because(
                pingora::ErrorType::ReadError,
                "before the TLS handshake",
                e,
            )),
            Err(_) => pingora::Error::e_explain(
                pingora::ErrorType::ReadTimedout,
                "TLS handshake not started in time",
            ),
        }
    }
}

/// A pingora application behind the bounds: connections over the limit are
/// closed at once, the rest watched through their handshake.
pub struct GuardedApp<A> {
    app: Arc<A>,
    slots: Slots,
}

impl<A> GuardedApp<A> {
    pub fn new(app: A, limits: Limits) -> Self {
        GuardedApp {
            app: Arc::new(app),
            slots: Slots::new(limits),
        }
    }
}

#[async_trait::async_trait]
impl<A: pingora::apps::ServerApp + Send + Sync + 'static> pingora::apps::ServerApp
    for GuardedApp<A>
{
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora::protocols::Stream,
        shutdown: &pingora::server::ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        let guarded = self.slots.admit(stream)?;
        self.app.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(chunks: &[&[u8]]) -> bool {
        let mut h = Handshake::new(Duration::from_secs(1));
        chunks.iter().any(|c| h.take(c))
    }

    #[tokio::test]
    async fn preface_is_whole_with_its_settings_frame() {
        let settings = [0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let all = [&PREFACE[..], &settings].concat();
        assert!(whole(&[&all]));
        // Byte by byte: whole only at the last one.
        let mut h = Handshake::new(Duration::from_secs(1));
        for (i, b) in all.iter().enumerate() {
            assert_eq!(h.take(&[*b]), i + 1 == all.len(), "byte {i}");
        }
        // Partial: not whole.
        assert!(!whole(&[&PREFACE[..10]]));
        assert!(!whole(&[&PREFACE[..], &settings[..12]]));
        // Not HTTP/2 (HTTP/1, or another first frame): watching stops.
        assert!(whole(&[b"GET / HTTP/1.1\r\n"]));
        assert!(whole(&[&PREFACE[..], &[0, 0, 0, 1, 0, 0, 0, 0, 1]]));
    }
}
