//! Framing scanner for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
//!
//! The proxy relays chunked bodies unchanged, so it only tracks where the body ends: a
//! pipelined next message must not be sent as body. Parsing is strict (CRLF only, bounded
//! lines) because two hops disagreeing on where a body ends is how requests get smuggled.

/// Longest chunk-size line (digits and extensions, without CRLF) a peer may make us scan.
const MAX_SIZE_LINE: u32 = 4096;
/// Largest trailer section, CRLFs included; trailers are forwarded, so bound them.
const MAX_TRAILERS: u32 = 16 * 1024;
/// Sixteen hex digits always fit in a u64; one more may not.
const MAX_SIZE_DIGITS: u8 = 16;

/// Why a chunked body's framing was rejected; the connection is out of step and must close.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum FramingError {
    #[error("invalid chunk size")]
    BadChunkSize,
    #[error("chunk size too large")]
    ChunkSizeTooLarge,
    #[error("chunk size line too long")]
    LineTooLong,
    #[error("expected crlf")]
    MissingCrlf,
    #[error("trailer section too large")]
    TrailersTooLarge,
    /// Not `name: value` (no colon, obs-fold, control bytes): the same
    /// bytes in a head are refused.
    #[error("malformed trailer field")]
    BadTrailer,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Start of a chunk-size line: a hex digit must come first.
    #[default]
    SizeStart,
    Size,
    /// After the digits: only whitespace, `;` or CR may follow.
    AfterSize,
    /// Chunk extensions: skipped, not validated, up to CR.
    Ext,
    SizeLf,
    /// Chunk data; `ChunkedScan::size` bytes remain.
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer field line, or of the final empty line.
    TrailerStart,
    /// In a trailer field's name (a token), up to its colon.
    TrailerName,
    /// In a trailer field's value, up to CR.
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    /// Errors are sticky: later bytes cannot be trusted to be in step.
    Failed(FramingError),
}

/// Where a chunked body ends, found while its bytes pass through unchanged.
#[derive(Debug, Default)]
pub struct ChunkedScan {
    state: State,
    size: u64,        // chunk size being parsed, then data bytes left to skip
    digits: u8,       // significant (non-leading-zero) digits of the size
    line_len: u32,    // bytes of the current size line
    trailer_len: u32, // bytes of the trailer section
}

impl ChunkedScan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes as received. Returns how many of them belong to the body:
    /// all of `buf` while the body goes on; fewer (possibly 0) when the body ended inside `buf`
    /// (the rest is the next message). Once done, feeding returns Ok(0).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, FramingError> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Failed(e) => return Err(e),
                State::Data => {
                    // Data is only counted, never read: O(1) however large the chunk.
                    let n = usize::try_from(self.size)
                        .unwrap_or(usize::MAX)
                        .min(buf.len() - i);
                    i += n;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    self.state = self.step(buf[i]).unwrap_or_else(State::Failed);
                    i += 1;
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            _ => Ok(i),
        }
    }

    /// The final CRLF after the last chunk (and any trailer fields) has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advances over one framing byte (anything but chunk data).
    fn step(&mut self, b: u8) -> Result<State, FramingError> {
        use FramingError::*;
        use State::*;
        let state = self.state;
        if matches!(state, SizeStart | Size | AfterSize | Ext) && !matches!(b, b'\r' | b'\n') {
            self.line_len += 1;
            if self.line_len > MAX_SIZE_LINE {
                return Err(LineTooLong);
            }
        }
        if matches!(
            state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf
        ) {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILERS {
                return Err(TrailersTooLarge);
            }
        }
        if let (SizeStart | Size, Some(d)) = (state, (b as char).to_digit(16)) {
            // Leading zeros are free; only a 17th significant digit could overflow.
            self.digits += u8::from(self.digits > 0 || d != 0);
            if self.digits > MAX_SIZE_DIGITS {
                return Err(ChunkSizeTooLarge);
            }
            self.size = self.size << 4 | u64::from(d);
            return Ok(Size);
        }
        Ok(match (state, b) {
            (SizeStart, _) => return Err(BadChunkSize),
            (Size | AfterSize | Ext, b'\r') => SizeLf,
            (Size | AfterSize | Ext | TrailerStart | TrailerValue, b'\n') => {
                return Err(MissingCrlf)
            }
            (Size | AfterSize, b' ' | b'\t') => AfterSize,
            (Size | AfterSize, b';') | (Ext, _) => Ext,
            (Size | AfterSize, _) => return Err(BadChunkSize),
            (SizeLf, b'\n') if self.size == 0 => TrailerStart,
            (SizeLf, b'\n') => Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                (self.digits, self.line_len) = (0, 0);
                SizeStart
            }
            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart | TrailerName, b) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            // A leading space (obs-fold), a line without a colon, a space
            // before it, a control byte in the value.
            (TrailerStart | TrailerName, _) => return Err(BadTrailer),
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => TrailerValue,
            (TrailerValue, _) => return Err(BadTrailer),
            (TrailerLf, b'\n') => TrailerStart,
            (FinalLf, b'\n') => Done,
            // `feed` never steps these; keep them rather than panic.
            (Data | Done | Failed(_), _) => state,
            // A CR or LF that should be there is not: bare LF, lone CR, data overrun.
            _ => return Err(MissingCrlf),
        })
    }
}

/// A field name's byte (RFC 9110 §5.6.2 token).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::FramingError::*;
    use super::*;

    /// Feeds `input` split at `cuts`; returns the body length (or error) and `is_done`.
    fn scan_parts(input: &[u8], cuts: &[usize]) -> (Result<usize, FramingError>, bool) {
        let (mut s, mut total, mut start) = (ChunkedScan::new(), 0, 0);
        for &end in cuts.iter().chain([input.len()].iter()) {
            match s.feed(&input[start..end]) {
                Ok(n) => total += n,
                Err(e) => return (Err(e), s.is_done()),
            }
            start = end;
        }
        (Ok(total), s.is_done())
    }

    /// Checks `input` fails with `err`, whole and fed byte by byte.
    fn assert_err(input: &[u8], err: FramingError) {
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(scan_parts(input, &[]), (Err(err), false), "{input:?}");
        assert_eq!(scan_parts(input, &every), (Err(err), false), "{input:?}");
    }

    #[test]
    fn simple_body() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(scan_parts(body, &[]), (Ok(body.len()), true));
    }

    #[test]
    fn stops_before_pipelined_bytes_and_stays_done() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let mut s = ChunkedScan::new();
        assert_eq!(
            s.feed(&[&body[..], b"GET / HTTP/1.1\r\n\r\n"].concat()),
            Ok(body.len())
        );
        assert!(s.is_done());
        assert_eq!(s.feed(b"more"), Ok(0));
        assert_eq!(s.feed(b""), Ok(0));
    }

    #[test]
    fn every_split_point_agrees() {
        let body = b"4;a=b ; q=\"x;y\"\r\nWiki\r\n00000000000000000005 \t;e\r\npedia\r\n0;last\r\nX-Sum: 1\r\nY: 2 3\r\n\r\n";
        let input = [&body[..], b"NEXT"].concat();
        let want = (Ok(body.len()), true);
        for cut in 0..=input.len() {
            assert_eq!(scan_parts(&input, &[cut]), want, "cut {cut}");
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(scan_parts(&input, &every), want);
    }

    #[test]
    fn large_hex_sizes() {
        let mut s = ChunkedScan::new();
        assert_eq!(s.feed(b"0000000100000000\r\n"), Ok(18));
        let block = vec![0u8; 1 << 20];
        for _ in 0..4096 {
            assert_eq!(s.feed(&block), Ok(block.len()));
        }
        assert_eq!((s.feed(b"\r\n0\r\n\r\nX"), s.is_done()), (Ok(7), true));
        for line in ["FFFFFFFFFFFFFFFF\r\nab", "ffffffffffffffff\r\nab"] {
            assert_eq!(ChunkedScan::new().feed(line.as_bytes()), Ok(line.len()));
        }
    }

    #[test]
    fn rejects_malformed_framing() {
        for (input, err) in [
            ("g\r\n", BadChunkSize),
            ("5x\r\nhello", BadChunkSize),
            ("\r\n", BadChunkSize),
            (";ext\r\n", BadChunkSize),
            (" 5\r\n", BadChunkSize),
            ("10000000000000000\r\n", ChunkSizeTooLarge),
            ("5\nhello\r\n", MissingCrlf),
            ("5;e\nhello\r\n", MissingCrlf),
            ("5\rxhello", MissingCrlf),
            ("5\r\nhelloX\r\n", MissingCrlf),
            ("5\r\nhello\n0\r\n\r\n", MissingCrlf),
            ("0\r\nX: y\n\r\n", MissingCrlf),
            ("0\r\nno-colon\r\n\r\n", BadTrailer),
            ("0\r\nX: a\r\n folded\r\n\r\n", BadTrailer),
            ("0\r\nX: a\0b\r\n\r\n", BadTrailer),
            ("0\r\nX : a\r\n\r\n", BadTrailer),
            ("0\r\n: a\r\n\r\n", BadTrailer),
            ("0\r\nX: a\rb\r\n\r\n", MissingCrlf),
            ("0\r\n\n", MissingCrlf),
            ("0\r\n\rX", MissingCrlf),
        ] {
            assert_err(input.as_bytes(), err);
        }
        let mut s = ChunkedScan::new(); // errors are sticky
        assert_eq!(s.feed(b"z"), Err(BadChunkSize));
        assert_eq!(s.feed(b"0\r\n\r\n"), Err(BadChunkSize));
    }

    #[test]
    fn bounds_size_lines_and_trailers() {
        assert_err(&[&b"1;"[..], &[b'a'; 4095], b"\r\n"].concat(), LineTooLong);
        assert_err(&[b'0'; 5000], LineTooLong);
        let at_limit = [&b"1;"[..], &[b'a'; 4094], b"\r\nz\r\n0\r\n\r\n"].concat();
        assert_eq!(scan_parts(&at_limit, &[]), (Ok(at_limit.len()), true));
        assert_err(
            &[&b"0\r\nX: "[..], &[b'a'; 17000], b"\r\n\r\n"].concat(),
            TrailersTooLarge,
        );
    }
}
