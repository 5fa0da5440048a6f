//! RESP2, Redis's wire format: commands go out as arrays of bulk strings,
//! replies are parsed from a read buffer once complete. Every length read
//! from the wire is bounded before anything is allocated for it, and nesting
//! is capped, so a hostile or broken peer cannot exhaust memory or stack.

use thiserror::Error;

/// Redis's own default ceiling for one bulk string (`proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 << 20;
/// Elements in one array reply: far above any reply the state store reads.
const MAX_ARRAY: usize = 1 << 24;
/// `EXEC` of a pipeline nests two deep; anything past this is not Redis.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("malformed Redis reply: {0}")]
pub struct Malformed(pub &'static str);

/// Commands encoded back to back into one buffer: one write, one round trip.
#[derive(Default)]
pub struct Commands {
    buf: Vec<u8>,
    count: usize,
}

impl Commands {
    pub fn with_capacity(bytes: usize) -> Self {
        Commands {
            buf: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Starts a command of `args` arguments (its name included); exactly
    /// that many [`arg`](Self::arg) calls must follow.
    pub fn command(&mut self, args: usize) -> &mut Self {
        self.count += 1;
        self.buf.push(b'*');
        push_decimal(&mut self.buf, args as u64);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    pub fn arg(&mut self, a: impl AsRef<[u8]>) -> &mut Self {
        let a = a.as_ref();
        self.buf.push(b'$');
        push_decimal(&mut self.buf, a.len() as u64);
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(a);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// A whole command at once.
    pub fn push<A: AsRef<[u8]>>(&mut self, args: &[A]) -> &mut Self {
        self.command(args.len());
        for a in args {
            self.arg(a);
        }
        self
    }

    /// How many replies the server will send.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&d[i..]);
}

/// Parses one reply from the start of `buf`: `Ok(None)` while it is
/// incomplete, else the reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    let mut at = 0;
    Ok(value(buf, &mut at, 0)?.map(|r| (r, at)))
}

fn value(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, Malformed> {
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    let Some(line) = line(&buf[*at + 1..])? else {
        return Ok(None);
    };
    let after = *at + 1 + line.len() + 2;
    let text = || {
        std::str::from_utf8(line)
            .map(str::to_owned)
            .map_err(|_| Malformed("status line is not UTF-8"))
    };
    let reply = match kind {
        b'+' => Reply::Status(text()?),
        b'-' => Reply::Error(text()?),
        b':' => Reply::Int(integer(line)?),
        b'$' => match length(line, MAX_BULK)? {
            None => Reply::Nil,
            Some(n) => {
                let end = after + n;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(Malformed("bulk string not ended by CRLF"));
                }
                *at = end + 2;
                return Ok(Some(Reply::Bulk(buf[after..end].to_vec())));
            }
        },
        b'*' => match length(line, MAX_ARRAY)? {
            None => Reply::Nil,
            Some(n) => {
                if depth == MAX_DEPTH {
                    return Err(Malformed("arrays nested too deep"));
                }
                let mut pos = after;
                // Capacity from what has arrived, not from the claimed length.
                let mut items = Vec::with_capacity(n.min(buf.len() - pos));
                for _ in 0..n {
                    match value(buf, &mut pos, depth + 1)? {
                        Some(v) => items.push(v),
                        None => return Ok(None),
                    }
                }
                *at = pos;
                return Ok(Some(Reply::Array(items)));
            }
        },
        _ => return Err(Malformed("unknown reply type")),
    };
    *at = after;
    Ok(Some(reply))
}

/// The bytes before the next CRLF, once it has arrived.
fn line(buf: &[u8]) -> Result<Option<&[u8]>, Malformed> {
    match buf.iter().position(|&b| b == b'\n') {
        None => Ok(None),
        Some(i) if i > 0 && buf[i - 1] == b'\r' => Ok(Some(&buf[..i - 1])),
        Some(_) => Err(Malformed("line not ended by CRLF")),
    }
}

/// A bulk string's or array's length: `None` for RESP2's null (-1).
fn length(line: &[u8], max: usize) -> Result<Option<usize>, Malformed> {
    match integer(line)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or(Malformed("length out of range")),
    }
}

fn integer(line: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Malformed("not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut buf: &[u8]) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Some((r, n)) = parse(buf).unwrap() {
            out.push(r);
            buf = &buf[n..];
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut c = Commands::default();
        c.push(&["HMGET", "k", "data", "version"]);
        c.command(2).arg("PTTL").arg(b"\xff\r\n");
        assert_eq!(c.count(), 2);
        assert_eq!(
            c.bytes(),
            b"*4\r\n$5\r\nHMGET\r\n$1\r\nk\r\n$4\r\ndata\r\n$7\r\nversion\r\n*2\r\n$4\r\nPTTL\r\n$3\r\n\xff\r\n\r\n"
        );
        let mut big = Commands::default();
        big.push(&[vec![b'x'; 1234]]);
        assert!(big.bytes().starts_with(b"*1\r\n$1234\r\nxxx"));
    }

    #[test]
    fn replies_of_every_kind() {
        let wire = b"+OK\r\n+QUEUED\r\n-ERR no\r\n:-42\r\n$3\r\na\r\n\r\n$0\r\n\r\n$-1\r\n*-1\r\n*2\r\n*2\r\n$1\r\nd\r\n$-1\r\n:1500\r\n*0\r\n";
        assert_eq!(
            all(wire),
            vec![
                Reply::Status("OK".into()),
                Reply::Status("QUEUED".into()),
                Reply::Error("ERR no".into()),
                Reply::Int(-42),
                Reply::Bulk(b"a\r\n".to_vec()),
                Reply::Bulk(Vec::new()),
                Reply::Nil,
                Reply::Nil,
                Reply::Array(vec![
                    Reply::Array(vec![Reply::Bulk(b"d".to_vec()), Reply::Nil]),
                    Reply::Int(1500)
                ]),
                Reply::Array(Vec::new()),
            ]
        );
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let wire = b"*2\r\n*2\r\n$5\r\nhello\r\n$2\r\n17\r\n:-2\r\n";
        for i in 0..wire.len() {
            assert_eq!(parse(&wire[..i]), Ok(None), "prefix of {i} bytes");
        }
        let (_, n) = parse(wire).unwrap().unwrap();
        assert_eq!(n, wire.len());
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcde\r\n",
            b"*-5\r\n",
            b"$99999999999999999999\r\n",
            b"$600000000\r\n",
            b"*99999999\r\n",
            b"+\xff\r\n",
            b":1\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "*1\r\n".repeat(MAX_DEPTH) + ":1\r\n";
        assert!(parse(ok.as_bytes()).unwrap().is_some());
        // A claimed length far beyond what arrived allocates nothing big.
        assert_eq!(parse(b"*16000000\r\n:1\r\n"), Ok(None));
        // Every byte value in every position of a short reply: no panic.
        let base = b"*2\r\n$2\r\nab\r\n:7\r\n".to_vec();
        for i in 0..base.len() {
            for b in 0..=255u8 {
                let mut m = base.clone();
                m[i] = b;
                let _ = parse(&m);
            }
        }
    }
}
