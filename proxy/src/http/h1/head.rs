//! A request's head as parsed by httparse: offsets into the bytes as
//! received, so forwarding writes those bytes again instead of building
//! header maps; and the header rules both heads share (framing,
//! hop-by-hop, `Connection` tokens). The upstream head is `outgoing.rs`,
//! the answer's `answer.rs`.

use std::ops::Range;

use bytes::BytesMut;

use super::refuse::{content_length, Refusal};
use crate::http::upstream::HeadView;

/// Headers a request may carry on this path; more go to pingora.
pub const MAX_HEADERS: usize = 64;
/// A head longer than this goes to pingora (which answers 431 or 400).
pub const MAX_HEAD: usize = 64 * 1024;

/// How a message's body is framed (RFC 9112 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A parsed request head; the bytes stay in the connection's buffer.
pub struct ReqHead {
    /// Bytes of the head, `\r\n\r\n` included.
    pub len: usize,
    pub(super) method: Range<usize>,
    pub(super) target: Range<usize>,
    pub(super) headers: Vec<(Range<usize>, Range<usize>)>,
    pub framing: Framing,
    /// `Connection: close` (the caller's connection ends after the answer).
    pub close: bool,
    /// Hop-by-hop headers present (so the head cannot go on as it is).
    hop: bool,
    /// `Connection` names other headers.
    names: bool,
    /// `Expect: 100-continue`: the caller waits for a 100 before the body
    /// (answered here, and not passed on).
    pub expect_continue: bool,
    /// The length came repeated (`5, 5`, or two fields): it goes on as one
    /// `Content-Length` field.
    pub(super) length_once: bool,
    pub(super) buf: bytes::Bytes,
}

pub(super) fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// Headers that hold for one connection only (RFC 9110 §7.6.1); by
/// length first, as this runs for every header line.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |h: &[u8]| h.eq_ignore_ascii_case(name);
    match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        14 => is(b"http2-settings"),
        16 => is(b"proxy-connection"),
        _ => false,
    }
}

/// What a `Connection` value says: `close`, `keep-alive`, and whether it
/// names other headers (to be dropped too).
#[derive(Default, Clone, Copy)]
pub(super) struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub names: bool,
}

impl ConnectionTokens {
    pub fn add(&mut self, value: &[u8]) {
        for t in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !t.is_empty() {
                self.names = true;
            }
        }
    }
}

/// Whether a comma-separated header value lists `token`.
pub(super) fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

pub enum Parsed {
    Head(ReqHead),
    /// More bytes are needed.
    Partial,
    /// Not for this path (malformed, HTTP/1.0, upgrades, an `Expect` other
    /// than `100-continue`, unusual
    /// framing, absolute form, too many headers): pingora reads it.
    Other,
    /// Refused as RFC 9112 says (the same on pingora's session,
    /// `refuse.rs`): answered and the connection closed. The range is the
    /// request target's.
    Refused(Refusal, Range<usize>),
    /// Longer than the listener reads (`--read-buffer-size`): 431.
    TooLarge,
}

impl ReqHead {
    /// Parses the head at the start of `buf` (frozen so the head's bytes
    /// can be shared without copying).
    pub fn parse(buf: &BytesMut) -> Parsed {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut raw);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
            _ => return Parsed::Other,
        };
        let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
            return Parsed::Other;
        };
        let target_at = offset(buf, target.as_bytes());
        if method == "CONNECT" {
            return Parsed::Refused(Refusal::Connect, target_at);
        }
        if !target.starts_with('/') {
            return Parsed::Other;
        }
        let mut head = ReqHead {
            len,
            method: offset(buf, method.as_bytes()),
            target: offset(buf, target.as_bytes()),
            headers: Vec::with_capacity(req.headers.len()),
            framing: Framing::Length(0),
            close: false,
            hop: false,
            names: false,
            expect_continue: false,
            length_once: false,
            buf: bytes::Bytes::new(),
        };
        let (mut lengths, mut chunked, mut hosts) = (0, false, 0);
        let mut first_length: &[u8] = &[];
        let mut conn = ConnectionTokens::default();
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                lengths += 1;
                head.length_once |= lengths > 1 || h.value.contains(&b',');
                if lengths == 1 {
                    first_length = h.value;
                }
            } else if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if chunked || !h.value.eq_ignore_ascii_case(b"chunked") {
                    return Parsed::Other;
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"expect") {
                // Any other expectation: pingora answers it.
                if head.expect_continue || !h.value.eq_ignore_ascii_case(b"100-continue") {
                    return Parsed::Other;
                }
                head.expect_continue = true;
                head.hop = true;
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                return Parsed::Other;
            } else if is_hop_by_hop(name) {
                head.hop = true;
                if name.eq_ignore_ascii_case(b"connection") {
                    conn.add(h.value);
                }
            }
            head.headers.push((offset(buf, name), offset(buf, h.value)));
        }
        (head.close, head.names) = (conn.close, conn.names);
        let refused = |r| Parsed::Refused(r, target_at.clone());
        match hosts {
            0 => return refused(Refusal::MissingHost),
            1 => {}
            _ => return refused(Refusal::DuplicateHost),
        }
        head.framing = match (lengths, chunked) {
            // Both: pingora frames it by the chunks, drops the length and
            // closes the connection after the answer (RFC 9112 §6.1).
            (1.., true) => return Parsed::Other,
            (_, true) => Framing::Chunked,
            (0, false) => Framing::Length(0),
            (_, false) => {
                // The common single field is read as it was found; a
                // repeated one needs every field.
                let all = req.headers.iter().filter_map(|h| {
                    h.name
                        .eq_ignore_ascii_case("content-length")
                        .then_some(h.value)
                });
                let n = if lengths == 1 {
                    content_length(std::iter::once(first_length))
                } else {
                    content_length(all)
                };
                match n {
                    Ok(n) => Framing::Length(n.unwrap_or(0)),
                    Err(r) => return refused(r),
                }
            }
        };
        // A repeated length goes on once (`dropped` and `Outgoing`).
        head.hop |= head.length_once;
        Parsed::Head(head)
    }

    /// Keeps the head's bytes (split off the connection's buffer).
    pub fn attach(&mut self, bytes: bytes::Bytes) {
        self.buf = bytes;
    }

    pub(super) fn at(&self, r: &Range<usize>) -> &[u8] {
        &self.buf[r.clone()]
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.at(&self.method),
            b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS"
        )
    }

    pub fn is_head(&self) -> bool {
        self.at(&self.method) == b"HEAD"
    }

    /// Headers to leave out when forwarding: the hop-by-hop ones and those
    /// `Connection` names (`Transfer-Encoding` excepted: the body goes on
    /// with its framing as it came).
    pub(super) fn dropped(&self, name: &[u8]) -> bool {
        if !self.hop {
            return false;
        }
        is_hop_by_hop(name)
            || (self.length_once && name.eq_ignore_ascii_case(b"content-length"))
            || (self.expect_continue && name.eq_ignore_ascii_case(b"expect"))
            || self.names
                && self.headers.iter().any(|(n, v)| {
                    self.at(n).eq_ignore_ascii_case(b"connection")
                        && !name.eq_ignore_ascii_case(b"transfer-encoding")
                        && lists(self.at(v), std::str::from_utf8(name).unwrap_or("\0"))
                })
    }
}

/// A head read where it lies (before `attach`, or after it).
#[derive(Clone, Copy)]
pub struct HeadIn<'a> {
    head: &'a ReqHead,
    buf: &'a [u8],
}

impl ReqHead {
    /// The head over the buffer it was parsed from (before `attach`).
    pub fn view<'a>(&'a self, buf: &'a [u8]) -> HeadIn<'a> {
        HeadIn { head: self, buf }
    }
}

impl<'a> HeadIn<'a> {
    pub(super) fn at(self, r: &Range<usize>) -> &'a [u8] {
        &self.buf[r.clone()]
    }

    fn text(self, r: &Range<usize>) -> &'a str {
        as_text(self.at(r)).unwrap_or("")
    }

    fn path_in(self) -> &'a str {
        let t = self.at(&self.head.target);
        as_text(t.split(|b| *b == b'?').next().unwrap_or(t)).unwrap_or("")
    }

    fn header_in(self, name: &str) -> Option<&'a str> {
        let (_, v) = self
            .head
            .headers
            .iter()
            .find(|(n, _)| self.at(n).eq_ignore_ascii_case(name.as_bytes()))?;
        as_text(self.at(v))
    }
}

/// Bytes of the head as text. The method, the path and nearly every header
/// value are ASCII, and the routing asks for them several times per call,
/// so ASCII is recognised by the cheap check (a word at a time) instead of
/// a full UTF-8 validation each time.
fn as_text(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

impl HeadView for HeadIn<'_> {
    fn method(&self) -> &str {
        self.text(&self.head.method)
    }
    fn path(&self) -> &str {
        self.path_in()
    }
    fn raw_target(&self) -> &[u8] {
        self.at(&self.head.target)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.header_in(name)
    }
}

impl HeadView for ReqHead {
    fn method(&self) -> &str {
        self.view(&self.buf).text(&self.method)
    }
    fn path(&self) -> &str {
        self.view(&self.buf).path_in()
    }
    fn raw_target(&self) -> &[u8] {
        self.view(&self.buf).at(&self.target)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.view(&self.buf).header_in(name)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::http::upstream::HeadView;

    pub(in crate::http::h1) fn parse(s: &str) -> Option<ReqHead> {
        let buf = BytesMut::from(s.as_bytes());
        match ReqHead::parse(&buf) {
            Parsed::Head(mut h) => {
                h.attach(buf.freeze().slice(..h.len));
                Some(h)
            }
            _ => None,
        }
    }

    #[test]
    fn request_heads_this_path_takes() {
        let h = parse("POST /v1.0/invoke/b/method/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello").unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(h.path(), "/v1.0/invoke/b/method/x");
        assert_eq!(h.header("x-a"), Some("1"));
        assert!(!h.close);
        let h = parse(
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.close);
    }

    #[test]
    fn text_of_ascii_and_utf8_and_invalid_bytes() {
        assert_eq!(
            as_text(b"/v1.0/invoke/a/method/b"),
            Some("/v1.0/invoke/a/method/b")
        );
        assert_eq!(as_text("/caf\u{e9}".as_bytes()), Some("/caf\u{e9}"));
        assert_eq!(as_text(b"/bad\xff"), None);
        assert_eq!(as_text(b""), Some(""));
    }

    #[test]
    fn unusual_requests_go_to_pingora() {
        for s in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(parse(s).is_none(), "{s:?}");
        }
        let buf = BytesMut::from(&b"GET / HTTP/1.1\r\nA: b"[..]);
        assert!(matches!(ReqHead::parse(&buf), Parsed::Partial));
    }

    #[test]
    fn heads_refused_as_rfc_9112_says() {
        let refused = |s: &str| match ReqHead::parse(&BytesMut::from(s.as_bytes())) {
            Parsed::Refused(r, _) => Some(r),
            _ => None,
        };
        for (s, r) in [
            ("GET / HTTP/1.1\r\n\r\n", Refusal::MissingHost),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
                Refusal::DuplicateHost,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
                Refusal::ConflictingLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Refusal::ConflictingLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
                Refusal::BadLength,
            ),
            (
                "CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\n\r\n",
                Refusal::Connect,
            ),
        ] {
            assert_eq!(refused(s), Some(r), "{s:?}");
        }
        for s in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
        ] {
            let h = parse(s).unwrap();
            assert_eq!((h.framing, h.length_once), (Framing::Length(5), true));
            assert!(h.dropped(b"Content-Length"));
        }
    }
}
