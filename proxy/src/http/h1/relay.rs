//! One call relayed: the request's head as `Outgoing` wrote it, its body
//! and the answer passed on as bytes, framed as they came (a length, or
//! chunks scanned for their end, never decoded and encoded again).

use std::cell::RefCell;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pingora::prelude::*;
use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::answer::{parse_response, RespHead};
use super::chunked::ChunkedScan;
use super::head::{Framing, ReqHead};
use crate::http::forward::{self, Dest};
use crate::http::up_conn::UpConn;

/// Bodies up to this size are gathered before sending, so a call on a
/// pooled connection the upstream closed meanwhile can be sent again.
const RESEND_LIMIT: u64 = 64 * 1024;
/// Interim (1xx) answers skipped before an upstream counts as broken.
const MAX_INTERIM: usize = 16;
/// Each wait for the caller's body bytes.
pub const DOWN_TIMEOUT: Duration = Duration::from_secs(60);
const READ_SIZE: usize = 16 * 1024;
/// Answer buffers kept per thread for the next calls.
const SPARES: usize = 8;

thread_local! {
    /// Read buffers of answers passed on whole, reused: a 16 KB allocation
    /// and its release cost a few hundred instructions per call. A
    /// listener's runtime is current-thread, so a thread keeps about as
    /// many as it has calls in flight (bounded).
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

fn read_buffer() -> BytesMut {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_SIZE))
}

/// Keeps an emptied answer buffer for a later call.
fn give_back(mut b: BytesMut) {
    if !b.is_empty() {
        return;
    }
    // Moves the (empty) window back to the start of its allocation: no
    // copy, no allocation while the buffer is the allocation's only owner.
    b.reserve(READ_SIZE);
    if b.capacity() <= 2 * READ_SIZE {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARES {
                s.push(b);
            }
        });
    }
}

pub struct Relayed {
    pub status: u16,
    /// Body bytes read from the caller and sent back to it.
    pub body: (usize, usize),
    /// The caller's connection may serve another request.
    pub reusable: bool,
}

pub enum Outcome {
    Done(Relayed),
    /// No connection could be made: nothing was read or sent.
    NotConnected,
}

/// A call that failed; `answered`: the answer's head had gone to the
/// caller (only closing the connection is left).
pub struct Failed {
    pub error: Box<Error>,
    pub answered: Option<u16>,
}

fn up_err(e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::ReadError, "upstream", e).into_up()
}

fn down_err(e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::ReadError, "caller", e).into_down()
}

/// Reads more bytes into `buf`; `Ok(0)` is end of stream.
async fn read_more(
    s: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    limit: Option<Duration>,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_SIZE);
    }
    match limit {
        None => s.read_buf(buf).await,
        Some(t) => match tokio::time::timeout(t, s.read_buf(buf)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        },
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
}

/// Relays the call whose head is `upstream_head` (the caller's head already
/// taken off `dbuf`, which holds what followed it) to `dest`.
pub async fn relay(
    down: &mut Stream,
    dbuf: &mut BytesMut,
    head: &ReqHead,
    upstream_head: BytesMut,
    dest: Dest<'_>,
    read_timeout: Option<Duration>,
    close_after: bool,
) -> Result<Outcome, Failed> {
    let failed = |error| Failed {
        error,
        answered: None,
    };
    let cert = dest.cert();
    let (mut up, mut pooled) = match forward::checkout(dest.key(), cert.as_ref()) {
        Some(s) => (s, true),
        // Boxed: a TLS handshake's state would otherwise size every call.
        None => match Box::pin(forward::connect(dest)).await {
            Some(s) => (s, false),
            None => return Ok(Outcome::NotConnected),
        },
    };
    let mut req = upstream_head;
    let mut sent_body = 0usize;
    // A caller that waits before sending its body (none of it here yet) is
    // asked for it now that the call has somewhere to go.
    if head.expect_continue && dbuf.is_empty() && head.framing != Framing::Length(0) {
        let go_on = async {
            down.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            down.flush().await
        };
        if let Err(e) = go_on.await {
            return Err(failed(down_err(e)));
        }
    }
    // A small body (or one already here whole) is gathered first.
    let whole = match head.framing {
        Framing::Length(n) if n <= RESEND_LIMIT => {
            let n = n as usize;
            while dbuf.len() < n {
                match read_more(down, dbuf, Some(DOWN_TIMEOUT)).await {
                    Ok(0) => {
                        return Err(failed(down_err(std::io::ErrorKind::UnexpectedEof.into())))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(failed(down_err(e))),
                }
            }
            req.extend_from_slice(&dbuf[..n]);
            dbuf.advance(n);
            sent_body = n;
            true
        }
        Framing::Chunked => {
            let mut scan = ChunkedScan::new();
            let n = scan.feed(dbuf).map_err(|e| {
                failed(Error::explain(ErrorType::InvalidHTTPHeader, e.to_string()).into_down())
            })?;
            if scan.is_done() {
                req.extend_from_slice(&dbuf[..n]);
                dbuf.advance(n);
                sent_body = n;
            }
            scan.is_done()
        }
        _ => false,
    };
    let (mut rbuf, r) = loop {
        let attempt = send(down, dbuf, &mut up, &req, head, whole, read_timeout).await;
        match attempt {
            Ok((rbuf, r, n)) => {
                sent_body += n;
                break (rbuf, r);
            }
            // A pooled connection the upstream closed meanwhile: once more on
            // a fresh one, when the body can be sent again and the upstream
            // cannot have acted on the call (not all sent, or an idempotent
            // method). Never after a timeout: the deadline is spent.
            Err(Attempt {
                error,
                written,
                retry_ok,
            }) => {
                let again = pooled && whole && retry_ok && (!written || head.is_idempotent());
                if !again {
                    return Err(failed(error));
                }
                let Some(fresh) = Box::pin(forward::connect(dest)).await else {
                    return Err(failed(error));
                };
                (up, pooled) = (fresh, false);
            }
        }
    };
    let passed = answer(down, up, &mut rbuf, r, read_timeout, close_after).await;
    give_back(rbuf);
    let (answer, reusable_up) = passed?;
    if let Some(up) = reusable_up {
        forward::checkin(dest.key(), up, cert);
    }
    Ok(Outcome::Done(Relayed {
        status: answer.0,
        body: (sent_body, answer.1),
        reusable: answer.2,
    }))
}

struct Attempt {
    error: Box<Error>,
    /// The whole request had been written.
    written: bool,
    /// The failure is one a stale pooled connection gives.
    retry_ok: bool,
}

/// Sends the request (streaming the body from the caller unless it is in
/// `req` already) and reads up to the final answer's head: returns the
/// upstream's bytes from that head on, and the body bytes streamed.
async fn send(
    down: &mut Stream,
    dbuf: &mut BytesMut,
    up: &mut UpConn,
    req: &[u8],
    head: &ReqHead,
    whole: bool,
    read_timeout: Option<Duration>,
) -> Result<(BytesMut, RespHead, usize), Attempt> {
    let unsent = |e: std::io::Error| Attempt {
        error: up_err(e),
        written: false,
        retry_ok: true,
    };
    up.write_all(req).await.map_err(unsent)?;
    let mut streamed = 0;
    if !whole {
        streamed = stream_body(down, dbuf, up, head.framing).await?;
    }
    up.flush().await.map_err(unsent)?;
    let mut rbuf = read_buffer();
    let mut interim = 0;
    loop {
        let parsed = parse_response(&rbuf, head.is_head()).map_err(|e| Attempt {
            error: e.into_up(),
            written: true,
            retry_ok: false,
        })?;
        match parsed {
            Some(r) if (100..200).contains(&r.status) => {
                // Interim answers (100, 103) are not passed on. A 101 is a
                // broken upstream (upgrades never take this path), and
                // endless interim answers are one too.
                interim += 1;
                let why = if r.status == 101 {
                    "upstream switched protocols on a request that asked for no upgrade"
                } else if interim > MAX_INTERIM {
                    "upstream sent too many interim (1xx) answers"
                } else {
                    rbuf.advance(r.len);
                    continue;
                };
                return Err(Attempt {
                    error: Error::explain(ErrorType::InvalidHTTPHeader, why).into_up(),
                    written: true,
                    retry_ok: false,
                });
            }
            Some(r) => return Ok((rbuf, r, streamed)),
            None => {}
        }
        match read_more(up, &mut rbuf, read_timeout).await {
            // Closed before a byte of answer: what a stale pooled connection
            // does.
            Ok(0) => {
                return Err(Attempt {
                    error: Error::explain(
                        ErrorType::ConnectionClosed,
                        "upstream closed the connection",
                    )
                    .into_up(),
                    written: true,
                    retry_ok: rbuf.is_empty() && interim == 0,
                })
            }
            Ok(_) => {}
            Err(e) => {
                let error = if timed_out(&e) {
                    Error::explain(ErrorType::ReadTimedout, "upstream did not answer in time")
                        .into_up()
                } else {
                    up_err(e)
                };
                return Err(Attempt {
                    error,
                    written: true,
                    retry_ok: false,
                });
            }
        }
    }
}

/// The caller's body, streamed by its framing; what follows it stays in
/// `dbuf`.
async fn stream_body(
    down: &mut Stream,
    dbuf: &mut BytesMut,
    up: &mut UpConn,
    framing: Framing,
) -> Result<usize, Attempt> {
    let fail = |error, written| Attempt {
        error,
        written,
        retry_ok: false,
    };
    let (mut left, mut scan) = match framing {
        Framing::Length(n) => (n, None),
        _ => (u64::MAX, Some(ChunkedScan::new())),
    };
    let mut sent = 0;
    loop {
        let n = match scan.as_mut() {
            Some(s) => s.feed(dbuf).map_err(|e| {
                fail(
                    Error::explain(ErrorType::InvalidHTTPHeader, e.to_string()).into_down(),
                    false,
                )
            })?,
            None => left.min(dbuf.len() as u64) as usize,
        };
        if n > 0 {
            // Flushed per piece: a streaming upload must not wait in a
            // buffer for the next one.
            up.write_all(&dbuf[..n])
                .await
                .map_err(|e| fail(up_err(e), false))?;
            up.flush().await.map_err(|e| fail(up_err(e), false))?;
            dbuf.advance(n);
            sent += n;
            left -= n as u64;
        }
        let done = scan.as_ref().map_or(left == 0, |s| s.is_done());
        if done {
            return Ok(sent);
        }
        match read_more(down, dbuf, Some(DOWN_TIMEOUT)).await {
            Ok(0) => {
                return Err(fail(
                    down_err(std::io::ErrorKind::UnexpectedEof.into()),
                    false,
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(fail(down_err(e), false)),
        }
    }
}

/// Passes the answer (its head at the start of `rbuf`) to the caller:
/// `(status, body bytes, caller's connection reusable)`, and the upstream
/// connection when it can serve another call.
async fn answer(
    down: &mut Stream,
    mut up: UpConn,
    rbuf: &mut BytesMut,
    r: RespHead,
    read_timeout: Option<Duration>,
    close_after: bool,
) -> Result<((u16, usize, bool), Option<UpConn>), Failed> {
    let close = close_after || r.framing == Framing::Close;
    let answered = Some(r.status);
    let to_caller = |e: std::io::Error| Failed {
        error: down_err(e),
        answered,
    };
    let from_up = |e: std::io::Error| Failed {
        error: if timed_out(&e) {
            Error::explain(ErrorType::ReadTimedout, "upstream body timed out").into_up()
        } else {
            up_err(e)
        },
        answered,
    };
    // The head: as received when it can be (it then goes out from `rbuf`
    // with the first body bytes), else rewritten.
    let (mut out, mut lead) = if r.verbatim && !close {
        (BytesMut::new(), r.len)
    } else {
        let mut o = BytesMut::with_capacity(r.len + 32);
        r.rewrite(&rbuf[..r.len], close, &mut o);
        rbuf.advance(r.len);
        (o, 0)
    };
    let mut scan = (r.framing == Framing::Chunked).then(ChunkedScan::new);
    let mut left = match r.framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut body = 0usize;
    // Nothing went to the caller yet: a failure can still be answered.
    let mut sent = false;
    loop {
        let at_hand = &rbuf[lead..];
        let n = match scan.as_mut() {
            Some(s) => s.feed(at_hand).map_err(|e| Failed {
                error: Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    format!("upstream answer's chunked body: {e}"),
                )
                .into_up(),
                answered: answered.filter(|_| sent),
            })?,
            None => left.min(at_hand.len() as u64) as usize,
        };
        // Head and the body bytes at hand go in one write.
        if out.is_empty() {
            down.write_all(&rbuf[..lead + n]).await.map_err(to_caller)?;
        } else {
            out.extend_from_slice(&at_hand[..n]);
            down.write_all(&out).await.map_err(to_caller)?;
            out.clear();
        }
        // Flushed per piece: a streamed answer (server-sent events, long
        // polls) reaches the caller as it comes, not when a buffer fills.
        down.flush().await.map_err(to_caller)?;
        sent = true;
        rbuf.advance(lead + n);
        lead = 0;
        body += n;
        left = left.saturating_sub(n as u64);
        let done = match (&scan, r.framing) {
            (Some(s), _) => s.is_done(),
            (None, Framing::Close) => false,
            _ => left == 0,
        };
        if done {
            break;
        }
        match read_more(&mut up, rbuf, read_timeout).await {
            Ok(0) if r.framing == Framing::Close => break,
            Ok(0) => return Err(from_up(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(e) => return Err(from_up(e)),
        }
    }
    // Bytes past the answer: the upstream is out of step.
    let reusable_up = (r.keepalive && rbuf.is_empty()).then_some(up);
    Ok(((r.status, body, !close), reusable_up))
}
