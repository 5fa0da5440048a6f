//! spar's own HTTP/1 invocation path (`proxy/src/http/h1`) on the wire:
//! pipelined requests crossing between it and pingora's session, answers
//! framed by chunks (with trailers) or by the connection's close, large
//! bodies streamed by their framing, and broken request framing.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::forwarding::{exchange, raw, raw_server, read_answer, read_head, warm};
use crate::invoke::{echo_app, pair};

/// Requests sent in one write are answered in order, whichever path serves
/// each (invocations by path or `dapr-app-id` header here, `healthz` on
/// pingora's session), and a
/// `Connection: close` ends the connection after its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_answer_in_order() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, _callee, caller) = pair("pipe", port);
    let http_port = warm(&callee_id, &caller).await;
    let invoke = |m: &str| format!("/v1.0/invoke/{callee_id}/method/{m}");
    let batch = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
         GET {} HTTP/1.1\r\nhost: x\r\n\r\n\
         GET /v1.0/healthz HTTP/1.1\r\nhost: x\r\n\r\n\
         POST {} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
         GET /by-header HTTP/1.1\r\nhost: x\r\ndapr-app-id: {callee_id}\r\n\r\n\
         GET {} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        invoke("one"),
        invoke("two"),
        invoke("three"),
        invoke("four"),
    );
    let mut s = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    s.write_all(batch.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    for (path, len) in [
        ("/one", 5),
        ("/two", 0),
        ("", 0),
        ("/three", 3),
        ("/by-header", 0),
        ("/four", 0),
    ] {
        let (head, body) = read_answer(&mut s, &mut buf).await;
        if path.is_empty() {
            assert!(head.starts_with("http/1.1 204"), "{head}");
            continue;
        }
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["path"].as_str(), v["len"].as_u64()),
            (Some(path), Some(len))
        );
    }
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("closed after the last answer")
        .unwrap();
    assert_eq!(n + buf.len(), 0, "nothing after the last answer");
}

/// Answers the app frames by chunks (extensions, trailers) or by closing
/// the connection.
async fn framing_app() -> u16 {
    raw_server(|mut s| async move {
        let mut buf = Vec::new();
        loop {
            let Some(end) = read_head(&mut s, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            if head.contains("/close") {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close")
                    .await;
                return;
            }
            let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n";
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_framed_by_chunks_or_by_close() {
    let (callee_id, _callee, caller) = pair("framing", framing_app().await);
    let http_port = warm(&callee_id, &caller).await;
    let c = Client::new();
    let url = |m: &str| format!("{}/v1.0/invoke/{callee_id}/method/{m}", caller.http());
    for _ in 0..3 {
        let r = c.get(url("chunks")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "hello world");
    }
    let r = c.get(url("close")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "until close");
    // On the wire: the close-delimited answer says the connection closes.
    let answer = raw(
        http_port,
        format!("GET /v1.0/invoke/{callee_id}/method/close HTTP/1.1\r\nhost: x\r\n\r\n"),
    )
    .await;
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nuntil close"), "{answer}");
    // And the caller goes on working.
    let r = c.get(url("chunks")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello world");
}

/// Bodies past the resend buffer stream through both sidecars, by length
/// and by chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_by_their_framing() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, _callee, caller) = pair("large", port);
    let http_port = warm(&callee_id, &caller).await;
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{callee_id}/method/big", caller.http());
    let r = c.post(&url).body(vec![b'x'; 1 << 20]).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["len"], 1 << 20);
    // Chunked, written in pieces as a streaming client would.
    let mut s = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    let head = format!(
        "POST /v1.0/invoke/{callee_id}/method/big HTTP/1.1\r\nhost: x\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..64 {
        let mut chunk = b"4000\r\n".to_vec();
        chunk.extend_from_slice(&[b'y'; 16 * 1024]);
        chunk.extend_from_slice(b"\r\n");
        s.write_all(&chunk).await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let (head, body) = read_answer(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["len"], 1 << 20);
}

/// A chunked body with broken framing ends the connection; the sidecar
/// goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_request_framing_closes_the_connection() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, _callee, caller) = pair("broken", port);
    let http_port = warm(&callee_id, &caller).await;
    let answer = raw(
        http_port,
        format!(
            "POST /v1.0/invoke/{callee_id}/method/x HTTP/1.1\r\nhost: x\r\n\
             transfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    let c = Client::new();
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{callee_id}/method/after",
            caller.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A call the callee refuses (another app's id, on its internal listener)
/// gets Dapr's error, and a small body sent with it does not cost the
/// connection: the next call on it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_keep_the_connection() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, callee, caller) = pair("refuse", port);
    warm(&callee_id, &caller).await;
    let internal: u16 = callee.ready_field("internal").unwrap().parse().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", internal)).await.unwrap();
    let mut buf = Vec::new();
    let (head, body) = crate::forwarding::exchange(
        &mut s,
        &mut buf,
        "POST /v1.0/invoke/someone-else/method/x HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc",
    )
    .await;
    assert!(head.starts_with("http/1.1 500"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errorCode"], "ERR_DIRECT_INVOKE");
    let (head, body) = crate::forwarding::exchange(
        &mut s,
        &mut buf,
        &format!("GET /v1.0/invoke/{callee_id}/method/next HTTP/1.1\r\nhost: x\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["path"], "/next");
}

/// Sends an answer's first chunk, then the rest after a pause.
async fn trickling_app() -> u16 {
    raw_server(|mut s| async move {
        if read_head(&mut s, &mut Vec::new()).await.is_none() {
            return;
        }
        let first = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n";
        if s.write_all(first).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
    })
    .await
}

/// A streamed answer reaches the caller piece by piece (server-sent events,
/// long polls), not when the body ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_arrive_as_they_come() {
    let (callee_id, _callee, caller) = pair("trickle", trickling_app().await);
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{callee_id}/method/sse", caller.http());
    // The first call may wait for name resolution; the pause is the app's.
    let mut r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_millis(1500), r.chunk())
        .await
        .expect("the first piece arrives before the app finishes")
        .unwrap();
    assert_eq!(first.as_deref(), Some(&b"first"[..]));
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"last");
}

/// `Expect: 100-continue` on this path: the caller gets its 100 once the
/// call has somewhere to go, then sends the body (by length or by chunks),
/// and the connection goes on; a call refused before it has somewhere to
/// go gets its error without a 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_asks_for_the_body() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, _callee, caller) = pair("expect", port);
    let http_port = warm(&callee_id, &caller).await;
    let invoke = |m: &str| format!("/v1.0/invoke/{callee_id}/method/{m}");
    let mut s = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    let mut buf = Vec::new();
    for (framing, body, len) in [
        ("content-length: 5", "hello", 5),
        (
            "transfer-encoding: chunked",
            "2\r\nhe\r\n4\r\nllo!\r\n0\r\n\r\n",
            6,
        ),
    ] {
        let ask = format!(
            "POST {} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n{framing}\r\n\r\n",
            invoke("up")
        );
        let (head, _) = exchange(&mut s, &mut buf, &ask).await;
        assert!(head.starts_with("http/1.1 100"), "{head}");
        let (head, answer) = exchange(&mut s, &mut buf, body).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let v: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            (v["path"].as_str(), v["len"].as_u64()),
            (Some("/up"), Some(len))
        );
    }
    // A call refused before it has somewhere to go gets no 100; its body
    // never comes, so the connection closes after the answer.
    let refused = format!(
        "POST /v1.0/invoke/{}/method/x HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n",
        spar_tests::unique("nobody")
    );
    let (head, answer) = exchange(&mut s, &mut buf, &refused).await;
    assert!(head.starts_with("http/1.1 500"), "{head}");
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["errorCode"], "ERR_DIRECT_INVOKE");
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest))
        .await
        .expect("the connection closes")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing follows the refusal");
}
