//! The HTTP/1 request rules of RFC 9112 that both HTTP/1 paths apply the
//! same way (spar's own path in `head.rs`, pingora's session here): what is
//! refused with 400 (or 405 for `CONNECT`) and a closed connection, and
//! what is normalised before the request goes on.
//!
//! pingora's session already refuses a second `Host` and differing
//! `Content-Length` values when it reads the head; the rest is checked
//! here after it.

use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use spar_filters::ApiError;

/// Why a request is refused; its connection closes after the answer
/// (what follows the head cannot be trusted to be in step).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("HTTP/1.1 request without a Host header")]
    MissingHost,
    #[error("Content-Length values differ")]
    ConflictingLength,
    #[error("invalid Content-Length")]
    BadLength,
    /// Tunnels are not offered: spar would go on reading HTTP on a
    /// connection the client believes is a byte stream.
    #[error("CONNECT is not supported")]
    Connect,
    #[error("invalid chunked body: {0}")]
    Chunked(String),
    /// As pingora's parser says it.
    #[error("{0}")]
    Head(String),
}

impl Refusal {
    pub fn api_error(&self, path: &str) -> ApiError {
        match self {
            Refusal::Connect => ApiError::MethodNotAllowed {
                method: "CONNECT".into(),
                path: path.into(),
            },
            r => ApiError::BadHttpFraming(r.to_string()),
        }
    }
}

/// One `Content-Length` value out of every field line and list element:
/// `Ok(None)` when there is none; identical repeats count as one
/// (RFC 9112 §6.3 item 5), differing or non-numeric ones are refused.
pub fn content_length<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, Refusal> {
    let mut length = None;
    for v in values {
        for t in v.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            let n = std::str::from_utf8(t)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or(Refusal::BadLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(Refusal::ConflictingLength);
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// Checks a request head pingora's session read (HTTP/1 only), and leaves
/// one `Content-Length` where the caller repeated the same value.
pub fn check_session(s: &mut ServerSession) -> Result<(), Refusal> {
    if s.is_http2() {
        return Ok(());
    }
    let req = s.req_header_mut();
    if req.method == http::Method::CONNECT {
        return Err(Refusal::Connect);
    }
    // A second Host pingora's reader refused already.
    if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
        return Err(Refusal::MissingHost);
    }
    // Runs for every API call (state reads too): one lookup when the
    // length is given once.
    let lengths = req.headers.get_all(http::header::CONTENT_LENGTH);
    let mut each = lengths.iter();
    let first = each.next();
    let repeated = each.next().is_some() || first.is_some_and(|v| v.as_bytes().contains(&b','));
    if repeated && !req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        let n = content_length(lengths.iter().map(|v| v.as_bytes()))?;
        if let Some(n) = n {
            req.insert_header(http::header::CONTENT_LENGTH, n.to_string())
                .map_err(|_| Refusal::BadLength)?;
        }
    }
    Ok(())
}

/// pingora's error types for a chunked body whose framing is broken.
const INVALID_CHUNK: &str = "InvalidChunk";
const INVALID_TRAILER_END: &str = "InvalidTrailerEnd";

/// Whether `e` is broken request framing (a bad chunk, trailer or head)
/// rather than a caller that went away or an upstream failure.
pub fn is_request_framing(e: &Error) -> bool {
    if matches!(e.esource(), ErrorSource::Upstream) {
        return false;
    }
    match e.etype() {
        ErrorType::InvalidHTTPHeader => matches!(e.esource(), ErrorSource::Downstream),
        ErrorType::Custom(n) => *n == INVALID_CHUNK || *n == INVALID_TRAILER_END,
        _ => false,
    }
}

/// The refusal for broken request framing `e` (see `is_request_framing`).
pub fn of_framing(e: &Error) -> Refusal {
    let why = e
        .context
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    match e.etype() {
        ErrorType::Custom(_) => Refusal::Chunked(why),
        // pingora's parser puts the bytes it read in its context: not
        // echoed back.
        _ if why.is_empty() || why.starts_with("buf:") => {
            Refusal::Head("invalid request head".into())
        }
        _ => Refusal::Head(why),
    }
}

/// Writes `e` as the answer on pingora's session, saying the connection
/// closes (it does).
pub async fn write_closing(s: &mut ServerSession, e: &ApiError) -> Result<()> {
    let body = bytes::Bytes::from(e.to_json());
    let mut resp = pingora::http::ResponseHeader::build(e.http_status(), Some(2))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    s.write_error_response(resp, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_lengths_count_once_when_equal() {
        let cl = |v: &[&str]| content_length(v.iter().map(|s| s.as_bytes()));
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&["5"]), Ok(Some(5)));
        assert_eq!(cl(&["5, 5"]), Ok(Some(5)));
        assert_eq!(cl(&["5", "5"]), Ok(Some(5)));
        assert_eq!(cl(&["5", "6"]), Err(Refusal::ConflictingLength));
        assert_eq!(cl(&["5, 6"]), Err(Refusal::ConflictingLength));
        for bad in [
            "",
            "+1",
            "-1",
            "0x5",
            "5,",
            "1 2",
            "99999999999999999999999",
        ] {
            assert_eq!(cl(&[bad]), Err(Refusal::BadLength), "{bad:?}");
        }
    }
}
