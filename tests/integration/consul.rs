//! Consul name resolution against a faithful double of Consul's HTTP API
//! (no Consul server can be installed here): the three endpoints spar uses —
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/{id}`
//! and `GET /v1/health/service/{name}?passing=true` — with Consul's JSON
//! shapes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::Json;
use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{unique, Options, Sidecar};

type Registry = Arc<Mutex<HashMap<String, Value>>>;

async fn consul_double() -> (u16, Registry) {
    let reg: Registry = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/agent/service/register",
            put(|State(r): State<Registry>, Json(svc): Json<Value>| async move {
                let id = svc["ID"].as_str().unwrap_or_default().to_string();
                r.lock().unwrap().insert(id, svc);
            }),
        )
        .route(
            "/v1/agent/service/deregister/{id}",
            put(|State(r): State<Registry>, Path(id): Path<String>| async move {
                r.lock().unwrap().remove(&id);
            }),
        )
        .route(
            "/v1/health/service/{name}",
            get(|State(r): State<Registry>, Path(name): Path<String>| async move {
                let list: Vec<Value> = r
                    .lock()
                    .unwrap()
                    .values()
                    .filter(|s| s["Name"] == name.as_str())
                    .map(|s| {
                        json!({
                            "Node": {"Node": "local", "Address": "127.0.0.1"},
                            "Service": {"ID": s["ID"], "Service": s["Name"], "Address": s["Address"],
                                        "Port": s["Port"], "Tags": s["Tags"], "Meta": s["Meta"]},
                            "Checks": [{"Status": "passing"}],
                        })
                    })
                    .collect();
                Json(list)
            }),
        )
        .with_state(reg.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, reg)
}

fn config(consul_port: u16) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: consul\nspec:\n  nameResolution:\n    component: consul\n    configuration:\n      client:\n        address: \"127.0.0.1:{consul_port}\"\n      selfRegister: true\n      tags: [\"spar\"]\n      queryOptions:\n        useCache: true\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_resolve_deregister() {
    let (consul_port, reg) = consul_double().await;
    let app = axum::Router::new().fallback(|| async { "from-consul-app" });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let callee_id = unique("consul-callee");
    let mut callee = Sidecar::start(Options {
        app_id: callee_id.clone(),
        extra_args: vec!["--app-port".into(), app_port.to_string()],
        config: Some(config(consul_port)),
        ..Default::default()
    });
    let caller = Sidecar::start(Options {
        app_id: unique("consul-caller"),
        config: Some(config(consul_port)),
        ..Default::default()
    });
    // Both registered themselves, with the internal port as DAPR_PORT meta
    // and an HTTP check on their healthz.
    let entry = reg
        .lock()
        .unwrap()
        .values()
        .find(|s| s["Name"] == callee_id.as_str())
        .cloned()
        .expect("callee registered");
    assert_eq!(entry["Tags"], json!(["spar"]));
    assert!(entry["Meta"]["DAPR_PORT"]
        .as_str()
        .is_some_and(|p| p.parse::<u16>().is_ok()));
    assert!(entry["Checks"][0]["HTTP"]
        .as_str()
        .unwrap()
        .ends_with("/v1.0/healthz"));

    let c = Client::new();
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{callee_id}/method/anything",
            caller.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "from-consul-app");

    // A stopped sidecar deregisters itself.
    assert_eq!(callee.terminate(), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while reg
        .lock()
        .unwrap()
        .values()
        .any(|s| s["Name"] == callee_id.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "callee still registered after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
