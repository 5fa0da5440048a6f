//! HTTP/1 framing with hostile and unusual (but legal) input, on every
//! path that relays a request: spar's own path on the public listener (a
//! self-invocation) and on the internal listener, pingora's session (a
//! percent-encoded app id) and pingora-proxy (an `HTTPEndpoint`). Raw
//! bytes, TCP_NODELAY, in the writes shown (issue 20, section 9).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use spar_tests::{unique, Options, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::forwarding::{find, read_answer, read_head};

/// A request as the app read it: its head (lower-cased) and its body.
type Request = (String, Vec<u8>);

/// The requests an app received.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

impl Seen {
    fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Reads more bytes into `buf`; false at the end of the stream.
async fn more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 4096];
    match s.read(&mut tmp).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

/// A chunked body from `buf` (and `s`), decoded; `None` when malformed or
/// cut short.
async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        while find(buf, b"\r\n").is_none() {
            if !more(s, buf).await {
                return None;
            }
        }
        let end = find(buf, b"\r\n").unwrap();
        let line = String::from_utf8_lossy(&buf[..end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..end + 2);
        if size == 0 {
            // Trailer lines, up to the empty one.
            loop {
                while find(buf, b"\r\n").is_none() {
                    if !more(s, buf).await {
                        return None;
                    }
                }
                let end = find(buf, b"\r\n").unwrap();
                buf.drain(..end + 2);
                if end == 0 {
                    return Some(body);
                }
            }
        }
        while buf.len() < size + 2 {
            if !more(s, buf).await {
                return None;
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// An HTTP/1.1 app that records every request it reads and answers each
/// with its body.
async fn recording_app() -> (u16, Seen) {
    let seen = Seen::default();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = read_head(&mut s, &mut buf).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end);
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    let body = if head.contains("transfer-encoding: chunked") {
                        match read_chunked(&mut s, &mut buf).await {
                            Some(b) => b,
                            None => return,
                        }
                    } else {
                        let n = length.unwrap_or(0);
                        while buf.len() < n {
                            if !more(&mut s, &mut buf).await {
                                return;
                            }
                        }
                        buf.drain(..n).collect()
                    };
                    let answer = [
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
                            .into_bytes(),
                        body.clone(),
                    ]
                    .concat();
                    rec.0.lock().unwrap().push((head, body));
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// One sidecar in front of the recording app, and the four ways a request
/// reaches that app through it.
struct Paths {
    seen: Seen,
    sc: Sidecar,
    app_id: String,
    endpoint: String,
    internal: u16,
}

impl Paths {
    async fn start(extra_env: Vec<(String, String)>) -> Paths {
        let (port, seen) = recording_app().await;
        let app_id = unique("frame");
        let endpoint = unique("ext");
        let yaml = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: {endpoint}\n\
             spec:\n  baseUrl: http://127.0.0.1:{port}\n"
        );
        let sc = Sidecar::start(Options {
            app_id: app_id.clone(),
            resources: vec![yaml],
            extra_args: vec!["--app-port".into(), port.to_string()],
            env: extra_env,
            ..Default::default()
        });
        let internal = sc.ready_field("internal").unwrap().parse().unwrap();
        Paths {
            seen,
            sc,
            app_id,
            endpoint,
            internal,
        }
    }

    /// (name, port, path prefix up to `/method/`).
    fn all(&self) -> Vec<(&'static str, u16, String)> {
        let id = &self.app_id;
        // The first letter percent-encoded: the same app, read by
        // pingora's session.
        let encoded = format!("%{:02X}{}", id.as_bytes()[0], &id[1..]);
        vec![
            (
                "own path, public",
                self.sc.http_port,
                format!("/v1.0/invoke/{id}/method"),
            ),
            (
                "own path, internal",
                self.internal,
                format!("/v1.0/invoke/{id}/method"),
            ),
            (
                "pingora session",
                self.sc.http_port,
                format!("/v1.0/invoke/{encoded}/method"),
            ),
            (
                "pingora-proxy",
                self.sc.http_port,
                format!("/v1.0/invoke/{}/method", self.endpoint),
            ),
        ]
    }
}

/// Connects with Nagle off and sends `parts` as separate writes.
async fn send_parts(port: u16, parts: &[&[u8]]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    write_parts(&mut s, parts).await;
    s
}

async fn write_parts(s: &mut TcpStream, parts: &[&[u8]]) {
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // Each its own segment, read on its own.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        if s.write_all(p).await.is_err() {
            return;
        }
    }
}

/// The connection closes (nothing more, or a reset) within 10 s.
async fn closes(s: &mut TcpStream) {
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the connection closes");
    assert!(
        r.is_err() || rest.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Sends `parts`, expects Dapr's `code` with `status` and `Connection:
/// close`, and the connection closed after it.
async fn refused(port: u16, parts: &[&[u8]], status: u16, code: &str, what: &str) {
    refused_as(port, parts, status, Some(code), what).await
}

/// `refused`, with Dapr's error body when `code` is given.
async fn refused_as(port: u16, parts: &[&[u8]], status: u16, code: Option<&str>, what: &str) {
    let mut s = send_parts(port, parts).await;
    let mut buf = Vec::new();
    let (head, body) = read_answer(&mut s, &mut buf).await;
    assert!(
        head.starts_with(&format!("http/1.1 {status}")),
        "{what}: {head}"
    );
    assert!(head.contains("connection: close"), "{what}: {head}");
    if let Some(code) = code {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(
            v["errorCode"],
            code,
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert!(buf.is_empty(), "{what}: nothing after the answer");
    closes(&mut s).await;
}

const CHUNKED: &[u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

/// The chunked body's writes: the issue's, a byte per write, and split in
/// two at every byte boundary.
fn splits() -> Vec<Vec<&'static [u8]>> {
    let issue: Vec<&[u8]> = vec![
        b"5\r\n",
        b"hello\r\n",
        b"6\r\n",
        b" world\r\n",
        b"0\r\n\r\n",
    ];
    let mut all = vec![issue, CHUNKED.chunks(1).collect()];
    for cut in 1..CHUNKED.len() {
        all.push(vec![&CHUNKED[..cut], &CHUNKED[cut..]]);
    }
    all
}

/// Sends the chunked body in each way of `splits` to `prefix/split`; the
/// caller gets the app's answer and the app exactly the body, once.
async fn body_arrives_whole(seen: &Seen, name: &str, port: u16, prefix: &str) {
    for parts in splits() {
        let head = format!(
            "POST {prefix}/split HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut all = vec![head.as_bytes()];
        all.extend(parts.iter().copied());
        let mut s = send_parts(port, &all).await;
        let mut buf = Vec::new();
        let (head, body) = read_answer(&mut s, &mut buf).await;
        let what = format!(
            "{name}, {:?}",
            parts.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        assert!(head.starts_with("http/1.1 200"), "{what}: {head}");
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(body.contains("hello world"), "{what}: {body:?}");
        let seen = seen.take();
        assert_eq!(seen.len(), 1, "{what}: the app got {seen:?}");
        assert!(
            seen[0].0.starts_with("post /split "),
            "{what}: {}",
            seen[0].0
        );
        assert_eq!(seen[0].1, b"hello world", "{what}");
    }
}

/// A chunked body split at every byte boundary (and in the issue's writes,
/// and a byte per write) reaches the app whole, once, on every path: no
/// empty read becomes a last-chunk, no junk request follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_split_anywhere_reach_the_app_whole() {
    let p = Paths::start(vec![]).await;
    for (name, port, prefix) in p.all() {
        body_arrives_whole(&p.seen, name, port, &prefix).await;
    }
}

/// The issue's second reproduction: a namespaced, encoded id
/// (`{app}%2Edefault`) is read by pingora's session and sent to the peer
/// sidecar found by name resolution (here this one's internal listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_to_a_peer_from_pingoras_session_arrive_whole() {
    let p = Paths::start(vec![]).await;
    let prefix = format!("/v1.0/invoke/{}%2Edefault/method", p.app_id);
    // Name resolution finds this sidecar after a moment.
    let url = format!("{}{prefix}/warm", p.sc.http());
    let c = reqwest::Client::new();
    let r = crate::invoke::call(&c, c.get(&url)).await;
    assert_eq!(r.status(), 200);
    p.seen.take();
    body_arrives_whole(
        &p.seen,
        "pingora session to a peer",
        p.sc.http_port,
        &prefix,
    )
    .await;
}

/// With `SPAR_HTTP_FAST_PATH=off` every request goes through pingora-proxy
/// as it streams: the same bodies arrive whole and the same heads are
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingora_proxy_alone_applies_the_same_rules() {
    let p = Paths::start(vec![("SPAR_HTTP_FAST_PATH".into(), "off".into())]).await;
    let prefix = format!("/v1.0/invoke/{}/method", p.app_id);
    let port = p.sc.http_port;
    body_arrives_whole(&p.seen, "fast path off", port, &prefix).await;
    // The heads pingora-proxy's own reader refuses get its bare 400 (and
    // the close); the rest Dapr's error.
    for (bad, code) in [
        ("host: x\r\ncontent-length: 5, 6\r\n", None),
        ("host: x\r\nhost: y\r\ncontent-length: 5\r\n", None),
        ("content-length: 5\r\n", Some("ERR_MALFORMED_REQUEST")),
    ] {
        let head = format!("POST {prefix}/x HTTP/1.1\r\n{bad}\r\n");
        let what = format!("fast path off: {bad:?}");
        refused_as(port, &[head.as_bytes(), b"hello"], 400, code, &what).await;
    }
    let head = format!("POST {prefix}/x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n");
    refused(
        port,
        &[head.as_bytes(), b"zz\r\nhello\r\n0\r\n\r\n"],
        400,
        "ERR_MALFORMED_REQUEST",
        "fast path off: bad chunk",
    )
    .await;
    let connect = format!(
        "CONNECT 127.0.0.1:80 HTTP/1.1\r\nhost: 127.0.0.1:80\r\ndapr-app-id: {}\r\n\r\n",
        p.app_id
    );
    // pingora-proxy refuses CONNECT itself (its bare 405).
    refused_as(
        port,
        &[connect.as_bytes()],
        405,
        None,
        "fast path off: CONNECT",
    )
    .await;
    assert!(p.seen.take().is_empty());
}

/// `Content-Length: 5, 5` or the field twice: the app gets one
/// `Content-Length: 5` (RFC 9112 §6.3), on every path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_equal_lengths_go_on_once() {
    let p = Paths::start(vec![]).await;
    for (name, port, prefix) in p.all() {
        for lengths in [
            "content-length: 5, 5\r\n",
            "content-length: 5\r\nContent-Length: 5\r\n",
        ] {
            let head = format!("POST {prefix}/len HTTP/1.1\r\nhost: x\r\n{lengths}\r\n");
            let mut s = send_parts(port, &[head.as_bytes(), b"hello"]).await;
            let (head, body) = read_answer(&mut s, &mut Vec::new()).await;
            assert!(head.starts_with("http/1.1 200"), "{name}: {head}");
            assert_eq!(body, b"hello", "{name}");
            let seen = p.seen.take();
            assert_eq!(seen.len(), 1, "{name}: {seen:?}");
            let lines: Vec<&str> = seen[0]
                .0
                .lines()
                .filter(|l| l.starts_with("content-length:"))
                .collect();
            assert_eq!(lines, ["content-length: 5"], "{name} ({lengths:?})");
        }
    }
}

/// Differing lengths, a second `Host`, an HTTP/1.1 request without one:
/// 400 with Dapr's error, `Connection: close`, closed; the app sees
/// nothing. On every path, and on pingora's session reading an
/// absolute-form request and a connection that stayed on pingora's
/// sessions after a call through pingora-proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_lengths_and_bad_hosts_are_refused() {
    let p = Paths::start(vec![]).await;
    for (name, port, prefix) in p.all() {
        for (bad, what) in [
            ("host: x\r\ncontent-length: 5, 6\r\n", "5, 6"),
            (
                "host: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n",
                "5 then 6",
            ),
            ("host: x\r\nhost: y\r\ncontent-length: 5\r\n", "two hosts"),
            ("content-length: 5\r\n", "no host"),
        ] {
            let head = format!("POST {prefix}/x HTTP/1.1\r\n{bad}\r\n");
            let what = format!("{name}: {what}");
            refused(
                port,
                &[head.as_bytes(), b"hello"],
                400,
                "ERR_MALFORMED_REQUEST",
                &what,
            )
            .await;
        }
    }
    // Absolute form: pingora's session reads it.
    let absolute = format!(
        "POST http://127.0.0.1/v1.0/invoke/{}/method/x HTTP/1.1\r\ncontent-length: 5\r\n\r\n",
        p.app_id
    );
    refused(
        p.sc.http_port,
        &[absolute.as_bytes(), b"hello"],
        400,
        "ERR_MALFORMED_REQUEST",
        "absolute form, no host",
    )
    .await;
    // After pingora-proxy served a call, the connection stays on pingora's
    // sessions: the same rules hold there.
    let mut s = send_parts(p.sc.http_port, &[]).await;
    let mut buf = Vec::new();
    let ok = format!(
        "GET /v1.0/invoke/{}/method/first HTTP/1.1\r\nhost: x\r\n\r\n",
        p.endpoint
    );
    let (head, _) = crate::forwarding::exchange(&mut s, &mut buf, &ok).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let twice = format!(
        "GET /v1.0/invoke/{}/method/second HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n",
        p.app_id
    );
    let (head, _) = crate::forwarding::exchange(&mut s, &mut buf, &twice).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    closes(&mut s).await;
    let seen = p.seen.take();
    assert_eq!(
        seen.len(),
        1,
        "only the first call reached the app: {seen:?}"
    );
}

/// `Transfer-Encoding: chunked` with a `Content-Length`: framed by the
/// chunks, the length not passed on, and the connection closed after the
/// answer (RFC 9112 §6.1), on every path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_with_a_length_is_framed_by_chunks_and_closed() {
    let p = Paths::start(vec![]).await;
    for (name, port, prefix) in p.all() {
        let head = format!(
            "POST {prefix}/both HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut s = send_parts(port, &[head.as_bytes(), CHUNKED]).await;
        let mut buf = Vec::new();
        let (head, body) = read_answer(&mut s, &mut buf).await;
        assert!(head.starts_with("http/1.1 200"), "{name}: {head}");
        assert!(head.contains("connection: close"), "{name}: {head}");
        assert!(
            String::from_utf8_lossy(&body).contains("hello world"),
            "{name}"
        );
        closes(&mut s).await;
        let seen = p.seen.take();
        assert_eq!(seen.len(), 1, "{name}: {seen:?}");
        assert_eq!(seen[0].1, b"hello world", "{name}");
        // The caller's length is not passed on (a hop that buffers the body
        // may give its real length).
        assert!(
            !seen[0].0.contains("content-length: 3"),
            "{name}: {}",
            seen[0].0
        );
    }
}

/// Invalid chunk sizes and bare-LF chunk lines: 400 with Dapr's error,
/// `Connection: close`, closed — on every invocation path and on an API
/// route (state) read by pingora's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunks_are_400_and_close() {
    let p = Paths::start(vec![]).await;
    let store = unique("store");
    let sc = Sidecar::start(Options {
        resources: vec![spar_tests::memory_component(&store)],
        ..Default::default()
    });
    let mut targets: Vec<(String, u16, String)> = p
        .all()
        .into_iter()
        .map(|(n, port, prefix)| (n.to_string(), port, format!("{prefix}/x")))
        .collect();
    targets.push((
        "state API".into(),
        sc.http_port,
        format!("/v1.0/state/{store}"),
    ));
    for (name, port, path) in targets {
        for size in ["zz", "-5", "0x5", "FFFFFFFFFFFFFFFFFFFF"] {
            let head =
                format!("POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n");
            let body = format!("{size}\r\nhello\r\n0\r\n\r\n");
            let what = format!("{name}: size {size:?}");
            refused(
                port,
                &[head.as_bytes(), body.as_bytes()],
                400,
                "ERR_MALFORMED_REQUEST",
                &what,
            )
            .await;
        }
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n");
        let what = format!("{name}: bare LF");
        refused(
            port,
            &[head.as_bytes(), b"5\nhello\r\n0\r\n\r\n"],
            400,
            "ERR_MALFORMED_REQUEST",
            &what,
        )
        .await;
    }
    assert!(p.seen.take().is_empty(), "no request reached the app whole");
}

/// Malformed trailers (no colon, obs-fold, NUL) are refused where spar
/// passes trailers on (its own path): 400 and close. pingora's paths drop
/// trailers: the bytes never reach the app there either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_trailers_never_reach_the_app() {
    let p = Paths::start(vec![]).await;
    for (name, port, prefix) in p.all() {
        for trailer in ["no-colon\r\n", "x-a: 1\r\n folded\r\n", "x-a: a\0b\r\n"] {
            let head = format!(
                "POST {prefix}/t HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            let body = format!("5\r\nhello\r\n0\r\n{trailer}\r\n");
            let what = format!("{name}: {trailer:?}");
            if name.starts_with("own path") {
                refused(
                    port,
                    &[head.as_bytes(), body.as_bytes()],
                    400,
                    "ERR_MALFORMED_REQUEST",
                    &what,
                )
                .await;
                assert!(p.seen.take().is_empty(), "{what}");
            } else {
                // pingora reads trailers and drops them: the call goes on
                // without them.
                let mut s = send_parts(port, &[head.as_bytes(), body.as_bytes()]).await;
                let (head, _) = read_answer(&mut s, &mut Vec::new()).await;
                assert!(head.starts_with("http/1.1 200"), "{what}: {head}");
                let seen = p.seen.take();
                assert_eq!(seen.len(), 1, "{what}");
                assert_eq!(seen[0].1, b"hello", "{what}");
            }
        }
    }
}

/// `CONNECT` with `dapr-app-id`: 405 with Dapr's error and a closed
/// connection, on the public and the internal listener; the app sees
/// nothing, and bytes sent as if tunnelled are not read as requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused() {
    let p = Paths::start(vec![]).await;
    for port in [p.sc.http_port, p.internal] {
        let head = format!(
            "CONNECT 127.0.0.1:80 HTTP/1.1\r\nhost: 127.0.0.1:80\r\ndapr-app-id: {}\r\n\r\n",
            p.app_id
        );
        let tunnelled = format!(
            "GET /smuggled HTTP/1.1\r\nhost: x\r\ndapr-app-id: {}\r\n\r\n",
            p.app_id
        );
        refused(
            port,
            &[head.as_bytes(), tunnelled.as_bytes()],
            405,
            "ERR_METHOD_NOT_ALLOWED",
            &format!("port {port}"),
        )
        .await;
    }
    assert!(p.seen.take().is_empty());
}

/// The caller cannot set `dapr-caller-app-id` (or the callee's id) itself:
/// on a self-invocation the app sees this sidecar's app id, on spar's own
/// path and on pingora's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_app_id_is_set_by_the_sidecar() {
    let p = Paths::start(vec![]).await;
    for (name, port, prefix) in p
        .all()
        .into_iter()
        .filter(|(n, _, _)| *n != "pingora-proxy" && *n != "own path, internal")
    {
        let head = format!(
            "GET {prefix}/who HTTP/1.1\r\nhost: x\r\ndapr-caller-app-id: forged\r\nDapr-Callee-App-Id: forged-too\r\n\r\n"
        );
        let mut s = send_parts(port, &[head.as_bytes()]).await;
        let (head, _) = read_answer(&mut s, &mut Vec::new()).await;
        assert!(head.starts_with("http/1.1 200"), "{name}: {head}");
        let seen = p.seen.take();
        assert_eq!(seen.len(), 1, "{name}");
        let h = &seen[0].0;
        assert!(!h.contains("forged"), "{name}: {h}");
        let want = format!("dapr-caller-app-id: {}", p.app_id.to_ascii_lowercase());
        assert_eq!(h.matches("dapr-caller-app-id").count(), 1, "{name}: {h}");
        assert!(h.contains(&want), "{name}: {h}");
    }
}

/// Answers by path: malformed trailers, a bare-LF head, an invalid chunk
/// after the head went out, or the connection closed with no answer.
async fn bad_answers_app() -> u16 {
    crate::forwarding::raw_server(|mut s| async move {
        let mut buf = Vec::new();
        let Some(end) = read_head(&mut s, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        if head.contains("/trailer") {
            let _ = s
                .write_all(&[&chunked[..], b"5\r\nhello\r\n0\r\nno-colon\r\n\r\n"].concat())
                .await;
        } else if head.contains("/bare-lf") {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok")
                .await;
        } else if head.contains("/bad-chunk") {
            let _ = s.write_all(chunked).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = s.write_all(b"zz\r\nhello\r\n0\r\n\r\n").await;
        } else {
            // `/hang-up`: closed without a word.
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await
}

/// A sidecar in front of `bad_answers_app`: (app id, the id
/// percent-encoded (pingora's session), sidecar).
async fn bad_answers() -> (String, String, Sidecar) {
    let app = bad_answers_app().await;
    let id = unique("badans");
    let sc = Sidecar::start(Options {
        app_id: id.clone(),
        extra_args: vec!["--app-port".into(), app.to_string()],
        ..Default::default()
    });
    let encoded = format!("%{:02X}{}", id.as_bytes()[0], &id[1..]);
    (id, encoded, sc)
}

/// Calls `method` of `target` through the public listener and expects a
/// 500 `ERR_DIRECT_INVOKE` that says `Connection: close`, then the close.
async fn fails_and_closes(sc: &Sidecar, target: &str, method: &str) {
    let head = format!("GET /v1.0/invoke/{target}/method/{method} HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut s = send_parts(sc.http_port, &[head.as_bytes()]).await;
    let mut buf = Vec::new();
    let (head, body) = read_answer(&mut s, &mut buf).await;
    let what = format!("{method} via {target}");
    assert!(head.starts_with("http/1.1 500"), "{what}: {head}");
    assert!(head.contains("connection: close"), "{what}: {head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errorCode"], "ERR_DIRECT_INVOKE", "{what}");
    closes(&mut s).await;
}

/// An app's answer with malformed trailers, or a head with bare LF line
/// ends, is refused as the same bytes in a request are: the call fails
/// with Dapr's error (nothing of it was sent yet) and the connection
/// closes. (pingora's session reads answers into a header map and drops
/// trailers: what it passes on is well formed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_app_answers_fail_the_call() {
    let (id, _, sc) = bad_answers().await;
    for method in ["trailer", "bare-lf"] {
        fails_and_closes(&sc, &id, method).await;
    }
}

/// A 500 after which spar closes the connection says `Connection:
/// close`: an app that hangs up without answering, on spar's own path and
/// on pingora's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_before_a_close_say_close() {
    let (id, encoded, sc) = bad_answers().await;
    for target in [&id, &encoded] {
        fails_and_closes(&sc, target, "hang-up").await;
    }
}

/// An app's invalid chunk after its head went out: the caller's answer is
/// cut short and its connection closed, and the failure is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_invalid_chunk_cuts_the_answer_short() {
    let (id, _, sc) = bad_answers().await;
    let head = format!("GET /v1.0/invoke/{id}/method/bad-chunk HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut s = send_parts(sc.http_port, &[head.as_bytes()]).await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("closed")
        .ok();
    let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(got.starts_with("http/1.1 200"), "{got}");
    assert!(!got.ends_with("0\r\n\r\n"), "cut short: {got:?}");
    let mut logged = false;
    for _ in 0..50 {
        logged = sc.stderr().contains("invocation's answer cut short");
        if logged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged, "{}", sc.stderr());
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The gRPC and internal listeners close connections that stall in the
/// HTTP/2 preface (nothing sent, part of the magic, the magic without its
/// SETTINGS frame) after the handshake timeout; calls go on meanwhile and
/// the sidecar's descriptors come back to where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_are_closed() {
    let (port, _app) = crate::invoke::echo_app("stall").await;
    let id = unique("stall");
    let sc = Sidecar::start(Options {
        app_id: id.clone(),
        extra_args: vec!["--app-port".into(), port.to_string()],
        env: vec![("SPAR_HANDSHAKE_TIMEOUT".into(), "5".into())],
        ..Default::default()
    });
    let internal: u16 = sc.ready_field("internal").unwrap().parse().unwrap();
    let c = reqwest::Client::new();
    let url = format!("{}/v1.0/invoke/{id}/method/x", sc.http());
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let mut grpc = dapr::dapr::proto::runtime::v1::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    grpc.get_metadata(dapr::dapr::proto::runtime::v1::GetMetadataRequest {})
        .await
        .unwrap();
    let pid = sc.child.id();
    let baseline = fds(pid);
    let magic: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut stalled = Vec::new();
    for port in [sc.grpc_port, internal] {
        for sent in [&b""[..], &magic[..10], magic] {
            for _ in 0..50 {
                let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                s.set_nodelay(true).unwrap();
                s.write_all(sent).await.unwrap();
                stalled.push(s);
            }
        }
    }
    // They are open (accepted) for now.
    let mut peak = 0;
    for _ in 0..80 {
        peak = fds(pid);
        if peak >= baseline + 250 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(peak >= baseline + 250, "{peak} open vs {baseline} before");
    // Calls go on while they stall.
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    grpc.get_metadata(dapr::dapr::proto::runtime::v1::GetMetadataRequest {})
        .await
        .unwrap();
    // Each is closed: well within 30 s on a loaded machine.
    let closed = futures::future::join_all(stalled.iter_mut().map(|s| async move {
        let mut b = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut b)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                // The server's SETTINGS: read on.
                Ok(Ok(_)) => {}
            }
        }
    }))
    .await;
    assert!(
        closed.iter().all(|c| *c),
        "{} still open",
        closed.iter().filter(|c| !**c).count()
    );
    drop(stalled);
    let mut now = 0;
    for _ in 0..100 {
        now = fds(pid);
        if now <= baseline + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(now <= baseline + 4, "{now} open vs {baseline} before");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    grpc.get_metadata(dapr::dapr::proto::runtime::v1::GetMetadataRequest {})
        .await
        .unwrap();
}

/// Under mTLS the internal listener's connections must start their TLS
/// handshake within the handshake timeout too (pingora alone gives the
/// whole handshake 60 s): silent ones and ones that sent a few bytes are
/// closed well before that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tls_handshakes_are_closed() {
    let sentry = spar_tests::Sentry::start(None);
    let (args, mut env) = sentry.sidecar_args();
    env.push(("SPAR_HANDSHAKE_TIMEOUT".into(), "2".into()));
    let sc = Sidecar::start(Options {
        app_id: unique("tls-stall"),
        extra_args: args,
        env,
        ..Default::default()
    });
    let internal: u16 = sc.ready_field("internal").unwrap().parse().unwrap();
    let mut stalled = Vec::new();
    for sent in [&b""[..], b"\x16\x03\x01"] {
        for _ in 0..20 {
            let mut s = TcpStream::connect(("127.0.0.1", internal)).await.unwrap();
            s.write_all(sent).await.unwrap();
            stalled.push(s);
        }
    }
    let closed = futures::future::join_all(stalled.iter_mut().map(|s| async move {
        let mut b = [0u8; 64];
        // Well before pingora's 60 s, however busy the machine.
        matches!(
            tokio::time::timeout(Duration::from_secs(30), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }))
    .await;
    assert!(
        closed.iter().all(|c| *c),
        "{} still open",
        closed.iter().filter(|c| !**c).count()
    );
}

/// Past `SPAR_MAX_CONNECTIONS` a listener closes new connections at once;
/// once some close, it accepts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed() {
    let sc = Sidecar::start(Options {
        app_id: unique("limit"),
        env: vec![
            ("SPAR_MAX_CONNECTIONS".into(), "20".into()),
            ("SPAR_HANDSHAKE_TIMEOUT".into(), "60".into()),
        ],
        ..Default::default()
    });
    let internal: u16 = sc.ready_field("internal").unwrap().parse().unwrap();
    for port in [sc.grpc_port, internal] {
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        // Once the listener has counted the 20 (accepting takes a moment on
        // a busy machine), the next is closed at once; one accepted before
        // that is held too.
        let mut refused = false;
        for _ in 0..20 {
            let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let mut b = [0u8; 8];
            match tokio::time::timeout(Duration::from_secs(2), extra.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    refused = true;
                    break;
                }
                _ => held.push(extra),
            }
        }
        assert!(
            refused,
            "port {port}: a connection past the limit is closed"
        );
        drop(held);
    }
    // With the held ones gone, gRPC calls are served again.
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(mut c) =
            dapr::dapr::proto::runtime::v1::dapr_client::DaprClient::connect(sc.grpc()).await
        {
            ok = c
                .get_metadata(dapr::dapr::proto::runtime::v1::GetMetadataRequest {})
                .await
                .is_ok();
        }
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok);
}
