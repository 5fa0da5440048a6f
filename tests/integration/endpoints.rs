//! Non-Dapr services as invocation targets: `HTTPEndpoint` resources (by
//! name, with headers, one from a secret) and full URLs.

use reqwest::{Client, StatusCode};
use serde_json::Value;
use spar_tests::{get_json, unique, Options, Sidecar};

use crate::invoke::echo_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_and_full_urls() {
    let (port, _app) = echo_app("external").await;
    let secret_var = format!("SPAR_TEST_TOKEN_{}", std::process::id());
    let endpoint = format!(
        r#"apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: billing
spec:
  baseUrl: http://127.0.0.1:{port}/api/v1
  headers:
    - name: x-test
      value: from-endpoint
    - name: authorization
      secretKeyRef:
        name: {secret_var}
        key: {secret_var}
"#
    );
    let sc = Sidecar::start(Options {
        app_id: unique("ext-caller"),
        resources: vec![endpoint],
        env: vec![(secret_var.clone(), "Bearer s3cret".into())],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();

    // By name: base URL path prefix, method path and query, endpoint headers.
    let r = c
        .put(format!(
            "{base}/v1.0/invoke/billing/method/invoices/9?draft=1"
        ))
        .header("dapr-api-token", "not-for-them")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/api/v1/invoices/9");
    assert_eq!(v["query"], "draft=1");
    assert_eq!(v["x-test"], "from-endpoint");
    assert_eq!(
        v["authorization"], "Bearer s3cret",
        "header from a secretKeyRef"
    );
    assert_eq!(v["host"], format!("127.0.0.1:{port}"));
    assert_eq!(v["token"], Value::Null);
    assert_eq!(v["len"], 3);

    // A full URL, raw and percent-encoded, and in the dapr-app-id header.
    for target in [
        format!("http://127.0.0.1:{port}"),
        format!("http%3A%2F%2F127.0.0.1%3A{port}"),
    ] {
        let r = c
            .get(format!("{base}/v1.0/invoke/{target}/method/ping"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{target}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["path"], "/ping");
        assert_eq!(v["x-test"], Value::Null);
    }
    let r = c
        .get(format!("{base}/status"))
        .header("dapr-app-id", format!("http://127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/status");

    // Unreachable URL: Dapr's error, quickly.
    let dead = spar_tests::free_port();
    let r = c
        .get(format!(
            "{base}/v1.0/invoke/http://127.0.0.1:{dead}/method/x"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errorCode"], "ERR_DIRECT_INVOKE");

    // gRPC InvokeService to the same endpoint (Rust SDK).
    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(sc.grpc()))
            .await
            .unwrap();
    let r = sdk
        .invoke_service(
            "billing",
            "invoices/1",
            Some(prost_types::Any {
                type_url: String::new(),
                value: b"x".to_vec(),
            }),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.data.unwrap().value).unwrap();
    assert_eq!(v["path"], "/api/v1/invoices/1");
    assert_eq!(v["x-test"], "from-endpoint");

    // Listed in the metadata API.
    let m = get_json(&c, format!("{base}/v1.0/metadata")).await;
    assert_eq!(m["httpEndpoints"][0]["name"], "billing");
}
