//! Hot reload against the real binary: a component added while traffic
//! flows, broken files refused with the previous version kept in service,
//! a Configuration change and a new subscription applied without restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{get_json, memory_component, Options, Sidecar};

fn res_dir(sc: &Sidecar) -> std::path::PathBuf {
    sc.dir.path().join("resources")
}

/// Polls `f` until it is true (10 s at most).
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The status of a call, 0 when it could not be made.
async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn component_added_while_serving_and_broken_files_refused() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("a")],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    let r = c
        .post(format!("{base}/v1.0/state/a"))
        .json(&json!([{"key": "kept", "value": "before"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Traffic on store `a` for the whole test: not one call may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, bad, c, base) = (
            stop.clone(),
            ok.clone(),
            bad.clone(),
            c.clone(),
            base.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let s = status(
                    c.post(format!("{base}/v1.0/state/a"))
                        .json(&json!([{"key": format!("k{}", i % 50), "value": i}])),
                )
                .await;
                let g = status(c.get(format!("{base}/v1.0/state/a/kept"))).await;
                if s == 204 && g == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // 1. A new component file: `b` comes into service.
    std::fs::write(res_dir(&sc).join("b.yaml"), memory_component("b")).unwrap();
    until("store b", || async {
        status(
            c.post(format!("{base}/v1.0/state/b"))
                .json(&json!([{"key": "x", "value": 1}])),
        )
        .await
            == 204
    })
    .await;
    let md = get_json(&c, format!("{base}/v1.0/metadata")).await;
    let names: Vec<&str> = md["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"a") && names.contains(&"b"), "{names:?}");

    // 2. A broken file (invalid YAML) is refused; b keeps serving.
    std::fs::write(
        res_dir(&sc).join("b.yaml"),
        "kind: Component\n  metadata: [oops\n",
    )
    .unwrap();
    until("the refusal in the log", || async {
        sc.stderr().contains("file refused")
    })
    .await;
    assert!(sc.stderr().contains("b.yaml"));
    let r = c
        .get(format!("{base}/v1.0/state/b/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // 3. Component `a` changed to a type that cannot be built: refused, the
    //    running instance (with its in-memory data) stays.
    let broken_a = memory_component("a").replace("state.in-memory", "state.nonexistent");
    std::fs::write(res_dir(&sc).join("components.yaml"), broken_a).unwrap();
    until("the component refusal", || async {
        sc.stderr().contains("component refused")
    })
    .await;
    let r = c
        .get(format!("{base}/v1.0/state/a/kept"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"before\"");

    // 4. Removing b's file takes b out of service.
    std::fs::remove_file(res_dir(&sc).join("b.yaml")).unwrap();
    until("store b gone", || async {
        status(c.get(format!("{base}/v1.0/state/b/x"))).await == 400
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(ok.load(Ordering::Relaxed) > 20, "too little traffic");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "calls failed during reloads"
    );
}

#[tokio::test]
async fn configuration_and_subscription_changes_apply_without_restart() {
    // An app that records deliveries.
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new()
        .route(
            "/dapr/subscribe",
            axum::routing::get(|| async { axum::Json(json!([])) }),
        )
        .route(
            "/orders",
            axum::routing::post(move |body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    g.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    axum::Json(json!({"status": "SUCCESS"}))
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let bus = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bus\nspec:\n  type: pubsub.in-memory\n  version: v1\n";
    let cfg = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  metric:\n    enabled: true\n";
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("s"), bus.into()],
        config: Some(cfg.into()),
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    let publish = || {
        c.post(format!("{base}/v1.0/publish/bus/orders"))
            .json(&json!({"n": 1}))
            .send()
    };
    assert_eq!(publish().await.unwrap().status(), 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(got.lock().unwrap().is_empty(), "no subscription yet");

    // A Subscription file appears: deliveries start.
    let sub = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n  pubsubname: bus\n  topic: orders\n  routes:\n    default: /orders\n";
    std::fs::write(res_dir(&sc).join("sub.yaml"), sub).unwrap();
    until("the subscription", || async {
        let _ = publish().await;
        !got.lock().unwrap().is_empty()
    })
    .await;

    // The Configuration turns API logging on.
    let cfg2 = format!("{cfg}  logging:\n    apiLogging:\n      enabled: true\n");
    std::fs::write(sc.dir.path().join("config.yaml"), cfg2).unwrap();
    until("API log lines", || async {
        let _ = c.get(format!("{base}/v1.0/state/s/k")).send().await;
        sc.stderr().contains("HTTP API Called")
    })
    .await;

    // A broken Configuration is refused; the running one stays.
    std::fs::write(sc.dir.path().join("config.yaml"), "spec: [").unwrap();
    until("the configuration refusal", || async {
        sc.stderr().contains("configuration refused")
    })
    .await;
    let r = c
        .get(format!("{base}/v1.0/state/s/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}
