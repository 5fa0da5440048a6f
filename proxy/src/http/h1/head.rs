//! Request and response heads as parsed by httparse: offsets into the
//! bytes as received, so forwarding writes those bytes again instead of
//! building header maps.

use std::ops::Range;

use bytes::{BufMut, BytesMut};
use http::HeaderName;
use pingora::prelude::*;

use crate::http::invoke::{HeadView, UpHead};

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
    method: Range<usize>,
    target: Range<usize>,
    headers: Vec<(Range<usize>, Range<usize>)>,
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
    buf: bytes::Bytes,
}

fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
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
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    names: bool,
}

impl ConnectionTokens {
    fn add(&mut self, value: &[u8]) {
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
fn lists(value: &[u8], token: &str) -> bool {
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
            buf: bytes::Bytes::new(),
        };
        let (mut length, mut chunked) = (None, false);
        let mut conn = ConnectionTokens::default();
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok());
                match (n, length) {
                    (Some(n), None) => length = Some(n),
                    _ => return Parsed::Other,
                }
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
        head.framing = match (length, chunked) {
            (Some(_), true) => return Parsed::Other,
            (_, true) => Framing::Chunked,
            (n, false) => Framing::Length(n.unwrap_or(0)),
        };
        Parsed::Head(head)
    }

    /// Keeps the head's bytes (split off the connection's buffer).
    pub fn attach(&mut self, bytes: bytes::Bytes) {
        self.buf = bytes;
    }

    fn at(&self, r: &Range<usize>) -> &[u8] {
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
    fn dropped(&self, name: &[u8]) -> bool {
        if !self.hop {
            return false;
        }
        is_hop_by_hop(name)
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
    fn at(self, r: &Range<usize>) -> &'a [u8] {
        &self.buf[r.clone()]
    }

    fn text(self, r: &Range<usize>) -> &'a str {
        std::str::from_utf8(self.at(r)).unwrap_or("")
    }

    fn path_in(self) -> &'a str {
        let t = self.at(&self.head.target);
        std::str::from_utf8(t.split(|b| *b == b'?').next().unwrap_or(t)).unwrap_or("")
    }

    fn header_in(self, name: &str) -> Option<&'a str> {
        let (_, v) = self
            .head
            .headers
            .iter()
            .find(|(n, _)| self.at(n).eq_ignore_ascii_case(name.as_bytes()))?;
        std::str::from_utf8(self.at(v)).ok()
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

/// The upstream request, written from the caller's head and the edits
/// `invoke::rewrite` makes: names kept as the caller spelled them, the
/// edited headers after the rest.
pub struct Outgoing<'h> {
    head: &'h ReqHead,
    /// The new path and the caller's query (a range of `vals`).
    path: Option<Range<usize>>,
    /// Headers set (a value range of `vals`) or removed (`None`), in order.
    edits: Vec<(HeaderName, Option<Range<usize>>)>,
    /// Every edited value in one buffer (one allocation per call).
    vals: BytesMut,
}

impl<'h> Outgoing<'h> {
    pub fn new(head: &'h ReqHead) -> Self {
        Outgoing {
            head,
            path: None,
            edits: Vec::with_capacity(6),
            vals: BytesMut::with_capacity(256),
        }
    }

    fn edited(&self, name: &[u8]) -> bool {
        self.edits
            .iter()
            .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    fn stash(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.vals.len();
        self.vals.put_slice(bytes);
        start..self.vals.len()
    }

    fn query_bytes(&self) -> Option<&'h [u8]> {
        let t = self.head.view(&self.head.buf).at(&self.head.target);
        let i = t.iter().position(|b| *b == b'?')?;
        Some(&t[i + 1..])
    }

    /// The head as the upstream gets it.
    pub fn write(&self, out: &mut BytesMut) {
        let h = self.head;
        out.put_slice(h.at(&h.method));
        out.put_u8(b' ');
        match &self.path {
            Some(p) => out.put_slice(&self.vals[p.clone()]),
            None => out.put_slice(h.at(&h.target)),
        }
        out.put_slice(b" HTTP/1.1\r\n");
        for (n, v) in &h.headers {
            let name = h.at(n);
            if h.dropped(name) || self.edited(name) {
                continue;
            }
            out.put_slice(name);
            out.put_slice(b": ");
            out.put_slice(h.at(v));
            out.put_slice(b"\r\n");
        }
        for (n, v) in &self.edits {
            if let Some(v) = v {
                out.put_slice(n.as_str().as_bytes());
                out.put_slice(b": ");
                out.put_slice(&self.vals[v.clone()]);
                out.put_slice(b"\r\n");
            }
        }
        out.put_slice(b"\r\n");
    }
}

/// Bytes a request target may carry as they are (visible ASCII; `#`
/// would start a fragment).
fn plain_target(b: &[u8]) -> bool {
    b.iter().all(|c| (0x21..=0x7e).contains(c) && *c != b'#')
}

impl UpHead for Outgoing<'_> {
    fn query(&self) -> Option<&str> {
        std::str::from_utf8(self.query_bytes()?).ok()
    }
    fn authority(&self) -> Option<String> {
        None
    }
    fn has_header(&self, name: &HeaderName) -> bool {
        match self.edits.iter().find(|(n, _)| n == name) {
            Some((_, v)) => v.is_some(),
            None => self.head.header(name.as_str()).is_some(),
        }
    }
    fn set_path(&mut self, path: &str) -> Result<()> {
        let q = self.query_bytes();
        let start = self.vals.len();
        if path.starts_with('/') && plain_target(path.as_bytes()) && q.is_none_or(plain_target) {
            self.vals.put_slice(path.as_bytes());
            if let Some(q) = q {
                self.vals.put_u8(b'?');
                self.vals.put_slice(q);
            }
        } else {
            // Anything unusual is normalised (or refused) as a URI would be.
            let pq = super::super::invoke::path_and_query(path, self.query())?;
            self.vals.put_slice(pq.as_str().as_bytes());
        }
        self.path = Some(start..self.vals.len());
        Ok(())
    }
    fn insert(&mut self, name: HeaderName, value: &[u8]) -> Result<()> {
        // The same rule as a header map's: visible text, no line breaks.
        if value
            .iter()
            .any(|b| (*b < b' ' && *b != b'\t') || *b == 0x7f)
        {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "bad header value");
        }
        let v = Some(self.stash(value));
        match self.edits.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => *old = v,
            None => self.edits.push((name, v)),
        }
        Ok(())
    }
    fn remove(&mut self, name: &HeaderName) {
        match self.edits.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = None,
            None => self.edits.push((name.clone(), None)),
        }
    }
}

/// A parsed response head.
pub struct RespHead {
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The upstream keeps the connection open after this answer.
    pub keepalive: bool,
    /// The head can go on byte for byte (HTTP/1.1, no hop-by-hop headers).
    pub verbatim: bool,
    http11: bool,
    /// Where the status line, the header lines and the blank line start.
    start: usize,
    fields: usize,
    blank: usize,
    /// Header lines (CRLF included) that stay on this hop.
    dropped: Vec<Range<usize>>,
}

/// Parses an answer's head at the start of `buf`; `Ok(None)`: more bytes
/// are needed. `head_req`: the request was HEAD (no body, whatever the
/// length says).
pub fn parse_response(buf: &[u8], head_req: bool) -> Result<Option<RespHead>> {
    let mut raw = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; 128];
    let mut resp = httparse::Response::new(&mut []);
    let bad = |why: &'static str| Error::explain(ErrorType::InvalidHTTPHeader, why);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(bad("upstream answer's head too large")),
        Err(_) => return Err(bad("upstream answer's head malformed")),
    };
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let headers = &*resp.headers;
    let (mut length, mut te, mut hop) = (None, None, false);
    let mut conn = ConnectionTokens::default();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| bad("upstream answer's content-length malformed"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("upstream answer has conflicting lengths"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked when it is the last coding; any other: until close.
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            te = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if is_hop_by_hop(name) {
            hop = true;
            if name.eq_ignore_ascii_case(b"connection") {
                conn.add(h.value);
            }
        }
    }
    if te.is_some() && length.is_some() {
        // Two framings: how a response is split or smuggled (RFC 9112 §6.3).
        return Err(bad(
            "upstream answer has both a length and a transfer coding",
        ));
    }
    let framing = if head_req || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else {
        match (te, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    // httparse skips empty lines before the status line, and takes bare
    // LF line ends.
    let start = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let blank = if buf[..len].ends_with(b"\r\n\r\n") || buf[..len].ends_with(b"\n\r\n") {
        len - 2
    } else {
        len - 1
    };
    // A line runs from its name to the next line's name (or the blank line).
    let line = |i: usize| {
        let start = offset(buf, headers[i].name.as_bytes()).start;
        let end = headers
            .get(i + 1)
            .map_or(blank, |n| offset(buf, n.name.as_bytes()).start);
        start..end
    };
    let mut dropped = Vec::new();
    if hop {
        let named = |name: &[u8]| {
            headers.iter().any(|h| {
                conn.names
                    && h.name.eq_ignore_ascii_case("connection")
                    && !name.eq_ignore_ascii_case(b"transfer-encoding")
                    && lists(h.value, std::str::from_utf8(name).unwrap_or("\0"))
            })
        };
        for (i, h) in headers.iter().enumerate() {
            if is_hop_by_hop(h.name.as_bytes()) || named(h.name.as_bytes()) {
                dropped.push(line(i));
            }
        }
    }
    Ok(Some(RespHead {
        len,
        status,
        framing,
        keepalive: !conn.close && (http11 || conn.keep_alive) && framing != Framing::Close,
        verbatim: http11 && !hop && start == 0 && te.is_none_or(|c| c) && framing != Framing::Close,
        http11,
        start,
        fields: if headers.is_empty() {
            blank
        } else {
            line(0).start
        },
        blank,
        dropped,
    }))
}

impl RespHead {
    /// The head for the caller when it cannot go on as received: HTTP/1.1,
    /// hop-by-hop headers out, `Connection: close` when the caller's
    /// connection ends with it. `buf` holds the head as received.
    pub fn rewrite(&self, buf: &[u8], close: bool, out: &mut BytesMut) {
        if self.http11 {
            out.put_slice(&buf[self.start..self.fields]);
        } else {
            // `HTTP/1.0 200 OK\r\n`: the same status line, our version.
            out.put_slice(b"HTTP/1.1");
            out.put_slice(&buf[self.start + 8..self.fields]);
        }
        let mut at = self.fields;
        for d in &self.dropped {
            out.put_slice(&buf[at..d.start]);
            at = d.end;
        }
        out.put_slice(&buf[at..self.blank]);
        if close {
            out.put_slice(b"connection: close\r\n");
        }
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::invoke::HeadView;

    fn parse(s: &str) -> Option<ReqHead> {
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
        let h = parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.close);
    }

    #[test]
    fn unusual_requests_go_to_pingora() {
        for s in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(parse(s).is_none(), "{s:?}");
        }
        let buf = BytesMut::from(&b"GET / HTTP/1.1\r\nA: b"[..]);
        assert!(matches!(ReqHead::parse(&buf), Parsed::Partial));
    }

    #[test]
    fn outgoing_head_drops_hop_by_hop_and_applies_edits() {
        let h = parse(
            "POST /v1.0/invoke/b/method/x?q=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nExpect: 100-Continue\r\nDapr-Api-Token: t\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n",
        )
        .unwrap();
        assert!(h.expect_continue);
        let mut o = Outgoing::new(&h);
        o.set_path("/x").unwrap();
        o.remove(&HeaderName::from_static("dapr-api-token"));
        o.insert(HeaderName::from_static("traceparent"), b"00-1")
            .unwrap();
        assert!(o
            .insert(HeaderName::from_static("x-bad"), b"a\r\nb: c")
            .is_err());
        let mut out = BytesMut::new();
        o.write(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /x?q=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\ntraceparent: 00-1\r\n\r\n"
        );
    }

    #[test]
    fn response_framing() {
        let r = |s: &str, head| parse_response(s.as_bytes(), head).unwrap().unwrap();
        let a = r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", false);
        assert_eq!(
            (a.status, a.framing, a.keepalive, a.verbatim),
            (200, Framing::Length(3), true, true)
        );
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).framing,
            Framing::Length(0)
        );
        assert_eq!(
            r("HTTP/1.1 204 No\r\n\r\n", false).framing,
            Framing::Length(0)
        );
        let c = r(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!((c.framing, c.verbatim), (Framing::Chunked, true));
        let e = r("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(
            (e.framing, e.keepalive, e.verbatim),
            (Framing::Close, false, false)
        );
        let k = r("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!k.keepalive && !k.verbatim);
        let x = r(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(!x.keepalive && !x.verbatim);
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        )
        .is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n", false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn rewritten_response_head() {
        let rewrite = |head: &[u8], close| {
            let r = parse_response(head, false).unwrap().unwrap();
            let mut out = BytesMut::new();
            r.rewrite(head, close, &mut out);
            String::from_utf8(out.to_vec()).unwrap()
        };
        assert_eq!(
            rewrite(b"HTTP/1.0 201 Created\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n", true),
            "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            rewrite(b"HTTP/1.1 200 OK\r\nServer: n\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false),
            "HTTP/1.1 200 OK\r\nServer: n\r\nContent-Length: 2\r\n\r\n"
        );
        assert_eq!(
            rewrite(b"HTTP/1.1 204 No Content\r\n\r\n", true),
            "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
        );
        // Empty lines before the status line go; bare LF lines stay as
        // they came.
        let head = b"\r\n\nHTTP/1.0 200 OK\nA: 1\nConnection: x\nX: 2\n\n";
        assert!(!parse_response(head, false).unwrap().unwrap().verbatim);
        assert_eq!(
            rewrite(head, true),
            "HTTP/1.1 200 OK\nA: 1\nconnection: close\r\n\r\n"
        );
    }
}
