//! Bad input gets Dapr's error body and status, and the sidecar keeps serving.

use reqwest::{Client, StatusCode};
use serde_json::Value;
use spar_tests::{memory_component, Options, Sidecar};

async fn expect_error(r: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.expect("JSON error body");
    assert_eq!(body["errorCode"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_input_unknown_store_and_oversize() {
    let mut sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        extra_args: vec!["--max-body-size".into(), "64Ki".into()],
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());
    let post = |path: &str, body: Vec<u8>| c.post(format!("{base}{path}")).body(body).send();

    expect_error(
        post("/v1.0/state/mem", b"{not json".to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_MALFORMED_REQUEST",
    )
    .await;
    expect_error(
        post("/v1.0/state/mem", br#"[{"value":1}]"#.to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_MALFORMED_REQUEST",
    )
    .await;
    expect_error(
        post("/v1.0/state/mem", br#"[{"key":"a||b","value":1}]"#.to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_MALFORMED_REQUEST",
    )
    .await;
    expect_error(
        post("/v1.0/state/nope", b"[]".to_vec()).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_STATE_STORE_NOT_FOUND",
    )
    .await;
    expect_error(
        c.get(format!("{base}/v1.0/state/nope/k"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_STATE_STORE_NOT_FOUND",
    )
    .await;
    expect_error(
        post("/v1.0/state/mem/bulk", b"[1,2]".to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_MALFORMED_REQUEST",
    )
    .await;
    expect_error(
        post(
            "/v1.0-alpha1/state/mem/query",
            br#"{"filter":{"XOR":{}}}"#.to_vec(),
        )
        .await
        .unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_STATE_QUERY",
    )
    .await;
    expect_error(
        post(
            "/v1.0/state/mem",
            br#"[{"key":"k","value":1,"metadata":{"ttlInSeconds":"soon"}}]"#.to_vec(),
        )
        .await
        .unwrap(),
        StatusCode::BAD_REQUEST,
        "ERR_STATE_SAVE",
    )
    .await;
    expect_error(
        c.get(format!("{base}/v1.0/nothing/here"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "ERR_NOT_FOUND",
    )
    .await;

    // Over the limit: 413 with Dapr's body; nothing is written.
    let big = format!(r#"[{{"key":"big","value":"{}"}}]"#, "x".repeat(200 * 1024));
    expect_error(
        post("/v1.0/state/mem", big.into_bytes()).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "ERR_BODY_TOO_LARGE",
    )
    .await;
    let r = c
        .get(format!("{base}/v1.0/state/mem/big"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Random bytes everywhere: never a panic, never a 5xx other than handler errors.
    for path in [
        "/v1.0/state/mem",
        "/v1.0/state/mem/bulk",
        "/v1.0/state/mem/transaction",
        "/v1.0-alpha1/state/mem/query",
        "/v1.0/metadata/x",
    ] {
        for body in [
            vec![0xff, 0xfe, 0x00],
            b"null".to_vec(),
            b"{}".to_vec(),
            b"[[[[[[".to_vec(),
            vec![b'['; 10_000],
        ] {
            let r = c
                .post(format!("{base}{path}"))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_client_error() || r.status().is_success(),
                "{path} {:?} → {}",
                &body[..body.len().min(8)],
                r.status()
            );
        }
    }
    assert!(sc.is_running(), "sidecar died");
    assert_eq!(
        c.get(format!("{base}/v1.0/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn api_token_required_except_health() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        env: vec![("DAPR_API_TOKEN".into(), "s3cret".into())],
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());
    expect_error(
        c.get(format!("{base}/v1.0/metadata")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "ERR_API_TOKEN_INVALID",
    )
    .await;
    expect_error(
        c.get(format!("{base}/v1.0/metadata"))
            .header("dapr-api-token", "wrong")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "ERR_API_TOKEN_INVALID",
    )
    .await;
    // Auth runs before decoding: garbage without a token is still a 401.
    expect_error(
        c.post(format!("{base}/v1.0/state/mem"))
            .body("{")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "ERR_API_TOKEN_INVALID",
    )
    .await;
    let r = c
        .get(format!("{base}/v1.0/metadata"))
        .header("dapr-api-token", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        c.get(format!("{base}/v1.0/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(format!("{base}/v1.0/healthz/outbound"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn no_stores_configured() {
    let sc = Sidecar::start(Options::default());
    let r = Client::new()
        .get(format!("{}/v1.0/state/any/k", sc.http()))
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_STATE_STORE_NOT_CONFIGURED",
    )
    .await;
}

/// `Expect: 100-continue` gets an interim 100 before the body is sent (curl
/// and .NET otherwise stall); a declared oversize body is refused up front.
#[test]
fn expect_continue_and_declared_oversize() {
    use std::io::{Read, Write};
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        extra_args: vec!["--max-body-size".into(), "1Ki".into()],
        ..Default::default()
    });
    let body = br#"[{"key":"k","value":1}]"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", sc.http_port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(s, "POST /v1.0/state/mem HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", body.len()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(body).unwrap();
    let mut rest = [0u8; 256];
    let n = s.read(&mut rest).unwrap();
    assert!(
        String::from_utf8_lossy(&rest[..n]).contains("204"),
        "{}",
        String::from_utf8_lossy(&rest[..n])
    );

    let mut s = std::net::TcpStream::connect(("127.0.0.1", sc.http_port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(s, "POST /v1.0/state/mem HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("ERR_BODY_TOO_LARGE"), "{resp}");
}
