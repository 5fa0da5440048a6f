//! The invocation fast path (`proxy/src/http/forward.rs`) on the wire:
//! pooled connections an app has closed, chunked bodies, HEAD and
//! bodiless answers, through two real sidecars.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::invoke::{call, echo_app, pair};

pub(crate) fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP/1.1 app that answers one request per connection with
/// `answer(request body length)`, waits `linger`, then closes the connection
/// without saying so (no `Connection: close`). With no linger the close
/// follows the answer at once, so the FIN is there before the next call;
/// a close a millisecond later races it (a POST that loses that race fails
/// on every HTTP client that won't resend non-idempotent calls).
async fn raw_app(answer: fn(usize) -> Vec<u8>, linger: Duration) -> u16 {
    raw_server(move |mut s| async move {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let mut want = None;
        while want.is_none_or(|w| buf.len() < w) {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            if let (None, Some(end)) = (want, find(&buf, b"\r\n\r\n")) {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                want = Some(end + 4 + len);
            }
        }
        let len = want.unwrap() - find(&buf, b"\r\n\r\n").unwrap() - 4;
        let _ = s.write_all(&answer(len)).await;
        if !linger.is_zero() {
            tokio::time::sleep(linger).await;
        }
    })
    .await
}

/// Reads from `s` until `buf` holds a whole head; where it ends (after its
/// blank line), or `None` when the peer goes away first.
pub(crate) async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(e) = find(buf, b"\r\n\r\n") {
            return Some(e + 4);
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// A loopback server running `handle` on each connection; its port.
pub(crate) async fn raw_server<F, Fut>(handle: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(handle(s));
        }
    });
    port
}

/// Answers `{"len": N}` and closes: every connection a proxy pools to it is
/// dead by the next call.
async fn closing_app() -> u16 {
    raw_app(
        |len| {
            let body = format!("{{\"len\":{len}}}");
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        },
        Duration::ZERO,
    )
    .await
}

/// Sends an interim 103 before its answer.
async fn hinting_app() -> u16 {
    raw_app(
        |len| {
            format!(
                "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
                 HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{len}",
                len.to_string().len()
            )
            .into_bytes()
        },
        Duration::ZERO,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_answers_are_skipped() {
    let (callee_id, _callee, caller) = pair("hints", hinting_app().await);
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{callee_id}/method/x", caller.http());
    let r = call(&c, c.post(&url).body("abc")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "3");
}

/// An upstream that answers a plain call with a 101, or with endless 1xx
/// answers, fails the call with Dapr's error at once instead of holding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_interim_answers_fail_the_call() {
    let switching = raw_app(
        |_| b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n".to_vec(),
        Duration::from_secs(30),
    )
    .await;
    let hinting = raw_app(
        |_| b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(40),
        Duration::from_secs(30),
    )
    .await;
    let c = Client::new();
    for (app, why) in [
        (switching, "switched protocols"),
        (hinting, "too many interim"),
    ] {
        let (callee_id, _callee, caller) = pair("broken", app);
        let url = format!("{}/v1.0/invoke/{callee_id}/method/x", caller.http());
        let mut last = String::new();
        for _ in 0..50 {
            let r = tokio::time::timeout(Duration::from_secs(10), c.get(&url).send())
                .await
                .expect("an answer within 10 s")
                .unwrap();
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
            last = r.text().await.unwrap();
            if last.contains(why) {
                break;
            }
            // Not found yet (discovery): again.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(last.contains(why), "{last}");
        assert!(last.contains("ERR_DIRECT_INVOKE"), "{last}");
    }
}

/// Starts a chunked answer and dies mid-body.
async fn dying_app() -> u16 {
    raw_app(
        |_| b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        Duration::from_millis(50),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_connections_the_app_closed() {
    let (callee_id, _callee, caller) = pair("closer", closing_app().await);
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{callee_id}/method/x", caller.http());
    let r = call(&c, c.get(&url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    for i in 0..30 {
        let r = if i % 2 == 0 {
            c.get(&url).send().await.unwrap()
        } else {
            c.post(&url).body("0123456789").send().await.unwrap()
        };
        assert_eq!(r.status(), StatusCode::OK, "call {i}");
        let want = if i % 2 == 0 { 0 } else { 10 };
        assert_eq!(r.json::<Value>().await.unwrap()["len"], want, "call {i}");
    }
}

/// Waits until the caller finds the callee (one call answered 200); the
/// caller's HTTP port.
pub(crate) async fn warm(callee_id: &str, caller: &spar_tests::Sidecar) -> u16 {
    let c = Client::new();
    let base = caller.http();
    let r = call(
        &c,
        c.get(format!("{base}/v1.0/invoke/{callee_id}/method/warm")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    base.rsplit(':').next().unwrap().parse().unwrap()
}

/// One request on a raw connection; the whole answer as text.
pub(crate) async fn raw(port: u16, request: String) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_head_and_bodiless_calls() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, _callee, caller) = pair("callee", port);
    let http_port = warm(&callee_id, &caller).await;
    let c = Client::new();
    let base = caller.http();

    // A chunked request body arrives whole; hop-by-hop headers stay here.
    let answer = raw(
        http_port,
        format!(
            "POST /v1.0/invoke/{callee_id}/method/up HTTP/1.1\r\nhost: x\r\n\
             transfer-encoding: chunked\r\nconnection: close, x-test\r\nx-test: hop\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
    let json = &body[..body.rfind('}').unwrap() + 1];
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["len"], 11, "{answer}");
    assert_eq!(
        v["x-test"],
        Value::Null,
        "a header the caller's Connection names is not forwarded"
    );

    // HEAD: the app's status and headers, no body.
    let r = c
        .head(format!("{base}/v1.0/invoke/{callee_id}/method/h"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().is_empty());

    // Many calls on one keep-alive connection in a row stay in step.
    for i in 0..50 {
        let r = c
            .post(format!("{base}/v1.0/invoke/{callee_id}/method/n{i}"))
            .body(vec![b'a'; i * 1000])
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["path"], format!("/n{i}"));
        assert_eq!(v["len"], i * 1000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_short_stays_cut_short() {
    let (callee_id, _callee, caller) = pair("dying", dying_app().await);
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{callee_id}/method/x", caller.http());
    let mut last = None;
    for _ in 0..200 {
        let r = c.get(&url).send().await.unwrap();
        if r.status() == StatusCode::OK {
            last = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = last.expect("the app's 200 reaches the caller");
    assert!(
        r.bytes().await.is_err(),
        "a body the app never finished must not arrive as complete"
    );
}

/// Reads one answer (header, then a body framed by length or chunks) from
/// a connection that stays open; what follows it stays in `buf`.
pub(crate) async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let mut tmp = [0u8; 4096];
    let mut more = async |s: &mut TcpStream, buf: &mut Vec<u8>| {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
            .await
            .expect("answer within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&tmp[..n]);
    };
    let end = loop {
        if let Some(e) = find(buf, b"\r\n\r\n") {
            break e;
        }
        more(s, buf).await;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end + 4);
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let body = if let Some(len) = len {
        while buf.len() < len {
            more(s, buf).await;
        }
        buf.drain(..len).collect()
    } else if head.contains("transfer-encoding: chunked") {
        while find(buf, b"0\r\n\r\n").is_none() {
            more(s, buf).await;
        }
        let e = find(buf, b"0\r\n\r\n").unwrap() + 5;
        buf.drain(..e).collect()
    } else {
        Vec::new()
    };
    (head, body)
}

/// Calls the listener hands on to pingora-proxy (here `Expect:
/// 100-continue` with a chunked body to a percent-encoded app id, which
/// spar's own path leaves to pingora's session) keep their body, and the
/// connection goes on serving the next calls; a body over the limit is
/// refused before the client sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_off_calls_keep_body_and_connection() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, _callee, caller) = pair("callee", port);
    let http_port = warm(&callee_id, &caller).await;

    let mut s = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    let mut buf = Vec::new();
    let invoke = |m: &str| format!("/v1.0/invoke/{callee_id}/method/{m}");
    // `c` as `%63`: the same app.
    let encoded = |m: &str| {
        let id = callee_id.strip_prefix('c').expect("callee-…");
        format!("/v1.0/invoke/%63{id}/method/{m}")
    };
    let (head, _) = exchange(
        &mut s,
        &mut buf,
        &format!(
            "POST {} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\
             transfer-encoding: chunked\r\n\r\n",
            encoded("up")
        ),
    )
    .await;
    assert!(head.starts_with("http/1.1 100"), "{head}");
    let (head, body) = exchange(&mut s, &mut buf, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let json = String::from_utf8_lossy(&body);
    let json = &json[json.find('{').unwrap()..=json.rfind('}').unwrap()];
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        (v["len"].as_u64(), v["path"].as_str()),
        (Some(11), Some("/up"))
    );

    // The same connection: an invocation, then another API route.
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    let (head, body) = exchange(&mut s, &mut buf, &get(&invoke("second"))).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["path"], "/second");
    let (head, _) = exchange(&mut s, &mut buf, &get("/v1.0/healthz")).await;
    assert!(head.starts_with("http/1.1 204"), "{head}");

    // Over the body limit (4 MB by default): refused at once, no 100.
    let (head, body) = exchange(
        &mut s,
        &mut buf,
        &format!(
            "POST {} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\
             content-length: 100000000\r\n\r\n",
            encoded("big")
        ),
    )
    .await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errorCode"], "ERR_BODY_TOO_LARGE");
}

/// Writes `request` and reads one answer.
pub(crate) async fn exchange(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &str,
) -> (String, Vec<u8>) {
    s.write_all(request.as_bytes()).await.unwrap();
    read_answer(s, buf).await
}

/// An app that switches protocols when asked (`upgrade: websocket`) and then
/// echoes bytes; other requests get a 200 and a closed connection.
/// (pingora-proxy passes WebSocket upgrades only; other protocols lose
/// their `Upgrade` header on the way.)
async fn upgrading_app() -> u16 {
    raw_server(|mut s| async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let Some(end) = read_head(&mut s, &mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if !head.contains("upgrade: websocket") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
                    .await;
                let rest = buf.split_off(end);
                let _ = s.write_all(&rest).await;
                while let Ok(n) = s.read(&mut tmp).await {
                    if n == 0 || s.write_all(&tmp[..n]).await.is_err() {
                        return;
                    }
                }
    })
    .await
}

/// A WebSocket upgrade (handed to pingora-proxy by both sidecars) reaches
/// the app, and bytes flow both ways after the 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through_both_sidecars() {
    let (callee_id, _callee, caller) = pair("upgrade", upgrading_app().await);
    let http_port = warm(&callee_id, &caller).await;
    let mut s = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    let mut buf = Vec::new();
    let (head, _) = exchange(
        &mut s,
        &mut buf,
        &format!(
            "GET /v1.0/invoke/{callee_id}/method/ws HTTP/1.1\r\nhost: x\r\n\
             connection: upgrade\r\nupgrade: websocket\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    s.write_all(b"ping-pong").await.unwrap();
    let mut tmp = [0u8; 64];
    while buf.len() < 9 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
            .await
            .expect("echo within 10 s")
            .unwrap();
        assert!(n > 0, "closed after the upgrade");
        buf.extend_from_slice(&tmp[..n]);
    }
    assert_eq!(&buf[..9], b"ping-pong");
}
