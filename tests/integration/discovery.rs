//! mDNS discovery details: namespaced app ids, and built-in retry when an
//! instance dies without withdrawing its announcement (SIGKILL).

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use spar_tests::{unique, Options, Sidecar};

use crate::invoke::{call, echo_app};

fn sidecar(app_id: &str, app_port: Option<u16>, namespace: Option<&str>) -> Sidecar {
    let mut extra = vec![];
    if let Some(p) = app_port {
        extra = vec!["--app-port".to_string(), p.to_string()];
    }
    Sidecar::start(Options {
        app_id: app_id.to_string(),
        extra_args: extra,
        env: namespace
            .map(|n| vec![("NAMESPACE".to_string(), n.to_string())])
            .unwrap_or_default(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_app_ids() {
    let (p1, _a1) = echo_app("in-prod").await;
    let (p2, _a2) = echo_app("in-dev").await;
    let id = unique("ns-app");
    let _prod = sidecar(&id, Some(p1), Some("prod"));
    let _dev = sidecar(&id, Some(p2), Some("dev"));
    let caller = sidecar(&unique("ns-caller"), None, Some("prod"));
    let c = Client::new();
    for (ns, app) in [("prod", "in-prod"), ("dev", "in-dev")] {
        for _ in 0..4 {
            let r = call(
                &c,
                c.get(format!("{}/v1.0/invoke/{id}.{ns}/method/x", caller.http())),
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["app"], app, "{id}.{ns} reaches only that namespace");
        }
    }
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{id}.staging/method/x",
            caller.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_when_an_instance_is_killed() {
    let (p1, _a1) = echo_app("first").await;
    let (p2, _a2) = echo_app("second").await;
    let id = unique("failover");
    let mut first = sidecar(&id, Some(p1), None);
    let _second = sidecar(&id, Some(p2), None);
    let caller = sidecar(&unique("fo-caller"), None, None);
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{id}/method/x", caller.http());
    // Both instances known to the caller.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let v: Value = call(&c, c.get(&url)).await.json().await.unwrap();
        *seen.entry(v["app"].as_str().unwrap().into()).or_default() += 1;
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // SIGKILL: no goodbye announcement, the caller still lists the dead one.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    for i in 0..20 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "call {i} after the kill");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["app"], "second");
    }
}
