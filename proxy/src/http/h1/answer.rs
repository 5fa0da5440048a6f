//! An answer's head as parsed by httparse: its status, framing and
//! keep-alive, and the hop-by-hop lines to cut when it goes on.

use std::ops::Range;

use bytes::{BufMut, BytesMut};
use pingora::prelude::*;

use super::head::{is_hop_by_hop, lists, offset, ConnectionTokens, Framing, MAX_HEAD};

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
    // httparse takes bare LF line ends; a request head with them is
    // refused, so an answer's is too. No early exit: checked a word at a
    // time.
    let head = &buf[..len];
    let after = head.get(1..).unwrap_or_default();
    let bare_lf = after
        .iter()
        .zip(head)
        .fold(head.first() == Some(&b'\n'), |bare, (b, prev)| {
            bare | ((*b == b'\n') & (*prev != b'\r'))
        });
    if bare_lf {
        return Err(bad("upstream answer's head has a bare LF line end"));
    }
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
        // Empty lines before the status line go.
        let head = b"\r\nHTTP/1.0 200 OK\r\nA: 1\r\nConnection: x\r\nX: 2\r\n\r\n";
        assert!(!parse_response(head, false).unwrap().unwrap().verbatim);
        assert_eq!(
            rewrite(head, true),
            "HTTP/1.1 200 OK\r\nA: 1\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn bare_lf_answer_heads_are_refused() {
        for head in [
            &b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
            b"\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(parse_response(head, false).is_err(), "{head:?}");
        }
    }
}
