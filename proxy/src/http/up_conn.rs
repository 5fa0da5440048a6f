//! An upstream connection in the invocation pool: a plain TCP socket read
//! and written directly, or a pingora stream (TLS to a peer sidecar, or a
//! connection that has been through pingora's client session).
//!
//! Plain sockets skip pingora's stream layers — a boxed `IO`, a buffered
//! reader and writer of capacity 0, a clock read around every pending
//! read — which cost about 700 instructions per relayed call
//! (bench/README.md, instructions per call).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum UpConn {
    Tcp(TcpStream),
    Pingora(Stream),
}

impl UpConn {
    /// For pingora's client session (`forward.rs`); the connection stays a
    /// pingora stream from then on.
    pub fn into_stream(self) -> Stream {
        match self {
            UpConn::Tcp(t) => Box::new(pingora::protocols::l4::stream::Stream::from(t)),
            UpConn::Pingora(s) => s,
        }
    }
}

impl AsyncRead for UpConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpConn::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            UpConn::Pingora(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpConn::Tcp(t) => Pin::new(t).poll_write(cx, buf),
            UpConn::Pingora(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            // Unbuffered: nothing to flush.
            UpConn::Tcp(_) => Poll::Ready(Ok(())),
            UpConn::Pingora(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpConn::Tcp(t) => Pin::new(t).poll_shutdown(cx),
            UpConn::Pingora(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
