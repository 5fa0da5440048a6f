//! Metadata, health and shutdown endpoints.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use spar_tests::{get_json, memory_component, Options, Sidecar};

#[tokio::test]
async fn metadata_reports_components_and_attributes() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());
    let r = c
        .put(format!("{base}/v1.0/metadata/owner"))
        .body("team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let md: Value = get_json(&c, format!("{base}/v1.0/metadata")).await;
    assert_eq!(md["id"], sc.app_id.as_str());
    assert!(md["runtimeVersion"].is_string());
    assert_eq!(md["components"][0]["name"], "mem");
    assert_eq!(md["components"][0]["type"], "state.in-memory");
    assert_eq!(md["components"][0]["version"], "v1");
    let caps: Vec<&str> = md["components"][0]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for cap in ["ETAG", "TRANSACTIONAL", "TTL", "QUERY_API"] {
        assert!(caps.contains(&cap), "{caps:?}");
    }
    assert_eq!(md["extended"]["owner"], "team-a");
    let r = c
        .get(format!("{base}/v1.0/healthz?appid=someone-else"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_HEALTH_APPID_NOT_MATCH"
    );
}

#[tokio::test]
async fn shutdown_endpoint_stops_the_process() {
    let mut sc = Sidecar::start(Options::default());
    let r = Client::new()
        .post(format!("{}/v1.0/shutdown", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sc.is_running() {
        assert!(Instant::now() < deadline, "still running after shutdown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sc.child.wait().unwrap().code(), Some(0));
}

#[tokio::test]
async fn sigterm_stops_gracefully() {
    let mut sc = Sidecar::start(Options::default());
    assert_eq!(sc.terminate(), Some(0));
}
