//! The upstream request's head: the caller's head written again with the
//! edits `upstream::rewrite` makes spliced in.

use std::ops::Range;

use bytes::{BufMut, BytesMut};
use http::HeaderName;
use pingora::prelude::*;

use super::head::ReqHead;
use crate::http::upstream::{HeadView, UpHead};

/// The upstream request, written from the caller's head and the edits
/// `upstream::rewrite` makes: names kept as the caller spelled them, the
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
        if let (true, super::head::Framing::Length(n)) = (h.length_once, h.framing) {
            // The caller repeated its length; the upstream gets it once.
            out.put_slice(b"content-length: ");
            out.put_slice(n.to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
    }
}

/// Bytes a request target may carry as they are (visible ASCII; `#`
/// would start a fragment).
fn plain_target(b: &[u8]) -> bool {
    // No early exit: the compiler checks many bytes at a time.
    b.iter().fold(true, |ok, c| {
        ok & (c.wrapping_sub(0x21) < 0x5e) & (*c != b'#')
    })
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
            let pq = super::super::upstream::path_and_query(path, self.query())?;
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

#[cfg(test)]
mod tests {
    use super::super::head::tests::parse;
    use super::*;

    #[test]
    fn plain_targets_are_visible_ascii_without_fragments() {
        assert!(plain_target(b"/v1.0/invoke/a/method/x~!$&'()*+,;=:@%20"));
        assert!(plain_target(b""));
        for c in 0u8..=255 {
            let want = (0x21..=0x7e).contains(&c) && c != b'#';
            assert_eq!(plain_target(&[b'/', c, b'x']), want, "byte {c:#x}");
        }
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
}
