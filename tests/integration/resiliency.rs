//! Resiliency policies (`kind: Resiliency`) applied by the real sidecar:
//! a flaky app succeeds through a retry policy, a hung app is cut by a
//! timeout, repeated failures open a circuit breaker that fails fast, then
//! half-opens and closes; the same for a state store made unreachable, and
//! retries on publish; daprd's resiliency metrics are recorded.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode as Ax, Uri};
use reqwest::Client;
use spar_tests::{unique, Options, PrivateRedis, Sidecar};

/// `/flaky`: 500 for the first 2 calls; `/hang`: answers after 5 s;
/// `/fail`: 500 while `failing` is set, then 200; counts every call.
#[derive(Clone, Default)]
struct App {
    flaky: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

async fn app() -> (u16, App) {
    let st = App::default();
    st.failing.store(true, Ordering::SeqCst);
    let router = axum::Router::new()
        .fallback(|State(s): State<App>, uri: Uri| async move {
            s.calls.fetch_add(1, Ordering::SeqCst);
            match uri.path() {
                "/flaky" if s.flaky.fetch_add(1, Ordering::SeqCst) < 2 => {
                    (Ax::INTERNAL_SERVER_ERROR, "flaky")
                }
                "/hang" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (Ax::OK, "late")
                }
                "/fail" if s.failing.load(Ordering::SeqCst) => (Ax::INTERNAL_SERVER_ERROR, "down"),
                _ => (Ax::OK, "ok"),
            }
        })
        .with_state(st.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    (port, st)
}

fn resiliency(retry_app: &str, breaker_app: &str, store: &str) -> String {
    format!(
        r#"apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
spec:
  policies:
    timeouts:
      short: 300ms
    retries:
      three:
        policy: constant
        duration: 20ms
        maxRetries: 3
        matching:
          httpStatusCodes: "500-599"
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 1s
        trip: consecutiveFailures > 2
  targets:
    apps:
      {retry_app}:
        timeout: short
        retry: three
      {breaker_app}:
        circuitBreaker: cb
    components:
      {store}:
        outbound:
          timeout: short
          retry: three
          circuitBreaker: cb
"#
    )
}

async fn until_resolved(c: &Client, url: &str) {
    for _ in 0..200 {
        let r = c.get(url).send().await.unwrap();
        if r.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_retry_timeout_and_breaker() {
    let (port, st) = app().await;
    let (retry_app, breaker_app) = (unique("res-retry"), unique("res-cb"));
    let args = |p: u16| vec!["--app-port".to_string(), p.to_string()];
    let _a = Sidecar::start(Options {
        app_id: retry_app.clone(),
        extra_args: args(port),
        ..Default::default()
    });
    let _b = Sidecar::start(Options {
        app_id: breaker_app.clone(),
        extra_args: args(port),
        ..Default::default()
    });
    let caller = Sidecar::start(Options {
        resources: vec![resiliency(&retry_app, &breaker_app, "none")],
        ..Default::default()
    });
    let c = Client::new();
    let url = |app: &str, m: &str| format!("{}/v1.0/invoke/{app}/method/{m}", caller.http());
    until_resolved(&c, &url(&retry_app, "ok")).await;
    until_resolved(&c, &url(&breaker_app, "ok")).await;

    // Flaky: two 500s, then 200 — the caller sees only the 200.
    let r = c
        .post(url(&retry_app, "flaky"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(st.flaky.load(Ordering::SeqCst), 3);

    // The same policy over gRPC InvokeService (Rust SDK): two failures
    // retried, the caller sees the success.
    st.flaky.store(0, Ordering::SeqCst);
    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(caller.grpc()))
            .await
            .unwrap();
    let r = sdk
        .invoke_service(
            retry_app.as_str(),
            "flaky",
            Some(prost_types::Any {
                type_url: String::new(),
                value: b"payload".to_vec(),
            }),
        )
        .await
        .expect("retried to success");
    assert_eq!(r.data.unwrap().value, b"ok");
    assert_eq!(st.flaky.load(Ordering::SeqCst), 3);

    // Hung: every attempt cut at 300 ms (4 attempts), well before 5 s.
    let t = Instant::now();
    let r = c.get(url(&retry_app, "hang")).send().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(r.status(), 504);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errorCode"], "ERR_DIRECT_INVOKE");

    // Breaker: 3 failures trip it; then calls fail fast without reaching
    // the app; after its 1 s timeout one call passes (half-open) and closes it.
    for _ in 0..3 {
        let r = c.get(url(&breaker_app, "fail")).send().await.unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.text().await.unwrap(), "down", "the app's own answer");
    }
    let before = st.calls.load(Ordering::SeqCst);
    let r = c.get(url(&breaker_app, "fail")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{e}"
    );
    assert_eq!(
        st.calls.load(Ordering::SeqCst),
        before,
        "open: the app saw nothing"
    );
    st.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let r = c.get(url(&breaker_app, "fail")).send().await.unwrap();
        assert_eq!(r.status(), 200, "half-open, then closed");
    }

    // Metrics with daprd's names and labels.
    let text = c
        .get(caller.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |needle: &str| {
        text.lines()
            .any(|l| l.starts_with("dapr_resiliency_activations_total") && l.contains(needle))
    };
    assert!(has("policy=\"retry\""), "{text}");
    assert!(has("policy=\"timeout\""));
    assert!(has("policy=\"circuitbreaker\"") && has("status=\"open\""));
    assert!(has(&format!("target=\"app_{breaker_app}\"")) && has("flow_direction=\"outbound\""));
    assert!(text.contains("dapr_resiliency_loaded"));
    // The breaker is closed again: the state gauge says so.
    let cb = |state: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("dapr_resiliency_cb_state")
                    && l.contains(&format!("target=\"app_{breaker_app}\""))
                    && l.contains(&format!("status=\"{state}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(cb("closed").as_deref(), Some("1"), "{text}");
    assert_eq!(cb("open").as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_store_unreachable_timeout_retry_breaker_and_recovery() {
    let mut redis = PrivateRedis::start(&[]);
    let store = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{}\n  - name: dialTimeout\n    value: 200ms\n  - name: readTimeout\n    value: 200ms\n",
        redis.port
    );
    let sc = Sidecar::start(Options {
        resources: vec![store, resiliency("a", "b", "cache")],
        ..Default::default()
    });
    let c = Client::new();
    let save = |v: u32| {
        c.post(format!("{}/v1.0/state/cache", sc.http()))
            .body(format!(r#"[{{"key":"k","value":{v}}}]"#))
            .send()
    };
    assert_eq!(save(1).await.unwrap().status(), 204);
    redis.stop();
    // Unreachable: retried, then the breaker opens and answers at once.
    for _ in 0..3 {
        assert_eq!(save(2).await.unwrap().status(), 500);
    }
    let t = Instant::now();
    let r = save(3).await.unwrap();
    assert_eq!(r.status(), 500);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errorCode"], "ERR_STATE_SAVE");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "fails fast: {:?}",
        t.elapsed()
    );
    // Back: after the breaker's timeout the store is used again.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut ok = false;
    for _ in 0..20 {
        if save(4).await.unwrap().status() == 204 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "the store is used again once it is back");
}

#[test]
fn validate_reports_a_bad_trip_expression() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("r.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: bad\nspec:\n  policies:\n    circuitBreakers:\n      cb:\n        trip: consecutiveFailures >> 5\n  targets:\n    apps:\n      x:\n        circuitBreaker: cb\n",
    )
    .unwrap();
    let out = std::process::Command::new(spar_tests::spar_bin())
        .args(["validate", "--resources-path"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("circuitBreakers.cb.trip"), "{err}");
}
