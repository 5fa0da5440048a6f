//! Logs: `--log-as-json` lines in daprd's shape, and API logging
//! (`--enable-api-logging`, `spec.logging.apiLogging` with `obfuscateURLs`
//! and `omitHealthChecks`) for HTTP and gRPC calls.

use reqwest::Client;
use serde_json::Value;
use spar_tests::{memory_component, Options, Sidecar};

fn json_lines(sc: &Sidecar) -> Vec<Value> {
    sc.stderr()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))
        })
        .collect()
}

async fn wait_for_line(sc: &Sidecar, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    for _ in 0..100 {
        let lines = json_lines(sc);
        if lines.iter().any(&f) {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    panic!("no such log line in:\n{}", sc.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_api_logging() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        extra_args: vec![
            "--log-as-json".into(),
            "--enable-api-logging".into(),
            "--log-level".into(),
            "info".into(),
        ],
        ..Default::default()
    });
    let c = Client::new();
    c.post(format!("{}/v1.0/state/mem", sc.http()))
        .body(r#"[{"key":"k1","value":1}]"#)
        .send()
        .await
        .unwrap();
    c.get(format!("{}/v1.0/state/mem/k1", sc.http()))
        .send()
        .await
        .unwrap();
    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(sc.grpc()))
            .await
            .unwrap();
    sdk.get_state("mem", "k1", None).await.unwrap();
    let lines = wait_for_line(&sc, |l| l["msg"] == "gRPC API Called").await;
    // Every line has daprd's fields.
    for l in &lines {
        for k in ["time", "level", "msg", "scope", "type", "ver", "instance"] {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
        assert_eq!(l["app_id"], sc.app_id.as_str());
        assert_eq!(l["type"], "log");
    }
    let http = lines
        .iter()
        .find(|l| l["msg"] == "HTTP API Called" && l["method"] == "GET /v1.0/state/mem/k1")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(http["code"], 200);
    assert_eq!(http["scope"], "dapr.runtime.http-info");
    assert_eq!(http["level"], "info");
    assert!(http["duration"].is_u64());
    assert!(lines.iter().any(|l| l["msg"] == "HTTP API Called"
        && l["method"] == "POST /v1.0/state/mem"
        && l["code"] == 204));
    let grpc = lines
        .iter()
        .find(|l| l["msg"] == "gRPC API Called")
        .unwrap();
    assert_eq!(grpc["method"], "/dapr.proto.runtime.v1.Dapr/GetState");
    assert_eq!(grpc["code"], "OK");
    assert_eq!(grpc["scope"], "dapr.runtime.grpc-info");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_logging_from_configuration_obfuscates_and_omits_health() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        config: Some(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: cfg\nspec:\n  logging:\n    apiLogging:\n      enabled: true\n      obfuscateURLs: true\n      omitHealthChecks: true\n".into(),
        ),
        extra_args: vec!["--log-as-json".into()],
        ..Default::default()
    });
    let c = Client::new();
    c.get(format!("{}/v1.0/healthz", sc.http()))
        .send()
        .await
        .unwrap();
    c.get(format!("{}/v1.0/state/mem/secret-key", sc.http()))
        .send()
        .await
        .unwrap();
    let lines = wait_for_line(&sc, |l| l["msg"] == "HTTP API Called").await;
    let api: Vec<&Value> = lines
        .iter()
        .filter(|l| l["msg"] == "HTTP API Called")
        .collect();
    assert_eq!(api.len(), 1, "health checks omitted: {api:#?}");
    assert_eq!(api[0]["method"], "GET /v1.0/state/{storeName}/{key}");
    assert_eq!(api[0]["code"], 204);
    assert!(!sc.stderr().contains("secret-key"));
}
