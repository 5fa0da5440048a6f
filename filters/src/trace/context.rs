//! W3C trace context (`traceparent` / `tracestate`): parsing, formatting and
//! fresh ids.

use std::fmt::Write;

/// Longest `tracestate` passed on, as daprd (longer ones are dropped).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The part of a span that travels between processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    pub tracestate: Option<Box<str>>,
}

impl SpanContext {
    /// Reads a `traceparent` header (and its `tracestate`). `None` for
    /// anything the W3C spec says to ignore: wrong lengths, upper-case or
    /// non-hex digits, version `ff`, all-zero ids.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let t = traceparent.trim();
        let b = t.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        // Version 00 is exactly 55 bytes; later versions may append fields.
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, out) in span_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE_LEN)
            .map(Into::into);
        Some(SpanContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            tracestate,
        })
    }

    /// Reads the binary form carried in gRPC `grpc-trace-bin`: version 0,
    /// then field 0 (trace id), 1 (span id), 2 (options), each tagged.
    pub fn from_binary(b: &[u8]) -> Option<Self> {
        if b.len() < 29 || b[0] != 0 || b[1] != 0 || b[18] != 1 || b[27] != 2 {
            return None;
        }
        let trace_id: [u8; 16] = b[2..18].try_into().ok()?;
        let span_id: [u8; 8] = b[19..27].try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            sampled: b[28] & 1 == 1,
            tracestate: None,
        })
    }

    /// A root context with fresh ids.
    pub fn root(sampled: bool) -> Self {
        let (trace_id, span_id) = new_ids();
        SpanContext {
            trace_id,
            span_id,
            sampled,
            tracestate: None,
        }
    }

    /// A child of this context: same trace, fresh span id.
    pub fn child(&self, sampled: bool) -> Self {
        SpanContext {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            sampled,
            tracestate: self.tracestate.clone(),
        }
    }

    /// The `traceparent` header value (version 00).
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

/// Two lower-case hex digits (the spec forbids upper case).
fn hex_byte(b: &[u8]) -> Option<u8> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nibble(b[0])? << 4 | nibble(b[1])?)
}

fn new_ids() -> ([u8; 16], [u8; 8]) {
    loop {
        let t: u128 = rand::random();
        if t != 0 {
            return (t.to_be_bytes(), new_span_id());
        }
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let s: u64 = rand::random();
        if s != 0 {
            return s.to_be_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn parses_and_formats_round_trip() {
        let c = SpanContext::parse(TP, Some("congo=t61rcWkgMzE")).unwrap();
        assert!(c.sampled);
        assert_eq!(c.traceparent(), TP);
        assert_eq!(c.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(c.span_id_hex(), "b7ad6b7169203331");
        assert_eq!(c.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
    }

    #[test]
    fn rejects_what_the_spec_says_to_ignore() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(SpanContext::parse(bad, None).is_none(), "{bad}");
        }
        // A later version may carry more fields.
        assert!(SpanContext::parse(
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            None
        )
        .is_some());
    }

    #[test]
    fn binary_form_of_grpc_trace_bin() {
        let c = SpanContext::parse(TP, None).unwrap();
        let mut b = vec![0u8, 0];
        b.extend_from_slice(&c.trace_id);
        b.push(1);
        b.extend_from_slice(&c.span_id);
        b.extend_from_slice(&[2, 1]);
        assert_eq!(SpanContext::from_binary(&b), Some(c));
        assert!(SpanContext::from_binary(&b[..20]).is_none());
    }

    #[test]
    fn children_keep_the_trace_and_oversized_tracestate_is_dropped() {
        let long = "a=".to_string() + &"x".repeat(MAX_TRACESTATE_LEN);
        let c = SpanContext::parse(TP, Some(&long)).unwrap();
        assert!(c.tracestate.is_none());
        let k = c.child(true);
        assert_eq!(k.trace_id, c.trace_id);
        assert_ne!(k.span_id, c.span_id);
        let r = SpanContext::root(false);
        assert!(r.traceparent().ends_with("-00"));
    }
}
