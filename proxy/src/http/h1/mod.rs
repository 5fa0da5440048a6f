//! spar's own HTTP/1.1 path for service invocation.
//!
//! pingora builds a header map for every request and answer it reads and
//! serialises one for every head it writes; on an invocation that is most
//! of a sidecar's work (bench/README.md: 22,000 of 53,500 instructions per
//! call went to pingora's client session alone). Here the caller's head is
//! parsed in place, the few edits spar makes (path, tokens, caller/callee
//! ids, trace context) are spliced in as the head is written upstream, and
//! bodies and the answer pass through as bytes with their framing.
//!
//! Only the common call takes this path: HTTP/1.1 in origin form, a length
//! or chunked body (`Expect: 100-continue` answered here), no upgrade, to a
//! peer sidecar or an HTTP/1.1 app. Everything else — API routes, HTTP/2,
//! upgrades, external endpoints, unreachable peers, resiliency policies —
//! goes to pingora's session or pingora-proxy from the bytes read so far.

mod answer;
mod chunked;
pub mod conn;
pub mod head;
mod outgoing;
pub mod refuse;
mod relay;

pub use head::{HeadIn, ReqHead};
pub use outgoing::Outgoing;
