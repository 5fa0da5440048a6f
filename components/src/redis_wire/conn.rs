//! One connection to Redis, used by one call at a time: the caller's task
//! writes its commands and reads the replies itself, with no driver task or
//! channel between them (each hop a task wake-up on the hot path).

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::resp::{self, Reply, MAX_BULK};
use super::WireError;

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub(super) struct Conn {
    io: Io,
    /// Bytes read and not yet parsed; empty between calls.
    buf: BytesMut,
}

/// Room made before each read: most replies fit in one.
const READ_ROOM: usize = 16 << 10;

impl Conn {
    pub fn plain(s: TcpStream) -> Conn {
        Conn {
            io: Io::Plain(s),
            buf: BytesMut::new(),
        }
    }

    pub fn tls(s: TlsStream<TcpStream>) -> Conn {
        Conn {
            io: Io::Tls(Box::new(s)),
            buf: BytesMut::new(),
        }
    }

    /// Whether the server has closed this idle connection (a restart, its
    /// `timeout` setting). Costs no system call while tokio has seen nothing
    /// arrive on the socket, the usual case for a live idle connection.
    pub fn looks_closed(&self) -> bool {
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        };
        // Anything readable on an idle connection — end of stream, an error,
        // stray bytes — makes it unusable.
        !matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Whether it can go back to the pool.
    pub fn is_clean(&self) -> bool {
        self.buf.is_empty()
    }

    /// Sends `commands` and reads `count` replies. Cancel-safe in the only
    /// way that matters here: a dropped call drops the connection with it.
    pub async fn exchange(
        &mut self,
        commands: &[u8],
        count: usize,
    ) -> Result<Vec<Reply>, WireError> {
        match &mut self.io {
            Io::Plain(s) => s.write_all(commands).await?,
            Io::Tls(s) => {
                s.write_all(commands).await?;
                s.flush().await?;
            }
        }
        let mut replies = Vec::with_capacity(count);
        while replies.len() < count {
            match resp::parse(&self.buf)? {
                Some((r, used)) => {
                    self.buf.advance(used);
                    replies.push(r);
                }
                None => self.read_more().await?,
            }
        }
        Ok(replies)
    }

    async fn read_more(&mut self) -> Result<(), WireError> {
        if self.buf.len() > MAX_BULK + READ_ROOM {
            return Err(resp::Malformed("reply larger than a bulk string may be").into());
        }
        self.buf.reserve(READ_ROOM);
        let n = match &mut self.io {
            Io::Plain(s) => read_into(s, &mut self.buf).await?,
            Io::Tls(s) => read_into(s.as_mut(), &mut self.buf).await?,
        };
        if n == 0 {
            return Err(WireError::Closed);
        }
        Ok(())
    }
}

async fn read_into<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    r.read_buf(buf).await
}
