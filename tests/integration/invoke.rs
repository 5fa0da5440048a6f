//! HTTP service invocation between two real sidecars (mDNS discovery,
//! HTTP/2 between sidecars), each in front of a real HTTP app.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{unique, Options, Sidecar};

/// An app that echoes what it received, tagged with `name`.
pub(crate) async fn echo_app(name: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                axum::Json(json!({
                    "app": name,
                    "method": method.as_str(),
                    "path": uri.path(),
                    "query": uri.query(),
                    "x-test": headers.get("x-test").and_then(|v| v.to_str().ok()),
                    "authorization": headers.get("authorization").and_then(|v| v.to_str().ok()),
                    "host": headers.get("host").and_then(|v| v.to_str().ok()),
                    "token": headers.get("dapr-api-token").and_then(|v| v.to_str().ok()),
                    "len": body.len(),
                }))
            },
        )
        .layer(axum::extract::DefaultBodyLimit::disable());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (
        port,
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() }),
    )
}

/// A callee sidecar (id `{prefix}-…`) in front of the app on `app_port`,
/// and a caller sidecar: (callee id, callee, caller).
pub(crate) fn pair(prefix: &str, app_port: u16) -> (String, Sidecar, Sidecar) {
    let callee_id = unique(prefix);
    let callee = sidecar(&callee_id, Some(app_port));
    (callee_id, callee, sidecar(&unique("caller"), None))
}

fn sidecar(app_id: &str, app_port: Option<u16>) -> Sidecar {
    sidecar_env(app_id, app_port, vec![])
}

fn sidecar_env(app_id: &str, app_port: Option<u16>, env: Vec<(String, String)>) -> Sidecar {
    Sidecar::start(Options {
        app_id: app_id.to_string(),
        extra_args: app_port
            .map(|p| vec!["--app-port".to_string(), p.to_string()])
            .unwrap_or_default(),
        env,
        ..Default::default()
    })
}

/// Calls until mDNS has seen the target. Announcements take about a second
/// on an idle machine and several under a full parallel test run, so the
/// wait is bounded by a deadline (20 s), not a count of tries.
pub(crate) async fn call(c: &Client, req: reqwest::RequestBuilder) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = req.try_clone().unwrap().send().await.unwrap();
        if r.status() != StatusCode::INTERNAL_SERVER_ERROR
            || tokio::time::Instant::now() >= deadline
        {
            let _ = c;
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_invocation_between_sidecars() {
    let (port, _app) = echo_app("callee").await;
    let (callee_id, _callee, caller) = pair("callee", port);
    let c = Client::new();
    let base = caller.http();

    for verb in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        let m = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        let r = call(
            &c,
            c.request(
                m,
                format!("{base}/v1.0/invoke/{callee_id}/method/orders/42?sort=desc&x=1"),
            )
            .header("x-test", "passed")
            .header("dapr-api-token", "must-not-leak")
            .body("payload"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{verb}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["app"], "callee");
        assert_eq!(v["method"], verb);
        assert_eq!(v["path"], "/orders/42");
        assert_eq!(v["query"], "sort=desc&x=1");
        assert_eq!(v["x-test"], "passed");
        assert_eq!(
            v["token"],
            Value::Null,
            "the caller's API token never reaches the app"
        );
        if verb != "GET" {
            assert_eq!(v["len"], 7);
        }
    }

    // Header-based invocation on any path.
    let r = call(
        &c,
        c.get(format!("{base}/inventory/7"))
            .header("dapr-app-id", &callee_id),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/inventory/7");

    // A 10 MB body streams through both sidecars.
    let big = vec![b'z'; 10 * 1024 * 1024];
    let r = c
        .post(format!("{base}/v1.0/invoke/{callee_id}/method/upload"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["len"], 10 * 1024 * 1024);

    // An unknown app id: Dapr's error, after a bounded wait.
    let r = c
        .get(format!("{base}/v1.0/invoke/{}/method/x", unique("nobody")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_DIRECT_INVOKE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_down_and_self_invocation() {
    let (port, app) = echo_app("self").await;
    let id = unique("selfish");
    let sc = sidecar(&id, Some(port));
    let c = Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let r = c
        .get(format!("{}/v1.0/invoke/{id}/method/me", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["path"], "/me");
    app.abort();
    let _ = app.await;
    let r = c
        .get(format!("{}/v1.0/invoke/{id}/method/me", sc.http()))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_DIRECT_INVOKE"
    );
    // Proxied calls are counted with the status the caller really got
    // (recorded just after the response is sent, so poll briefly).
    let count = |text: &str, status: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("dapr_http_server_request_count")
                    && l.contains("method=\"GET\"")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = c
            .get(sc.metrics_url())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if count(&text, "200") == 1.0 && count(&text, "500") == 1.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let no_app = sidecar(&unique("noapp"), None);
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{}/method/x",
            no_app.http(),
            no_app.app_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_APP_CHANNEL_NIL"
    );
}

/// Two instances of one app id (two sidecars, two apps) share the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_round_robin_over_instances() {
    let (p1, _a1) = echo_app("one").await;
    let (p2, _a2) = echo_app("two").await;
    let id = unique("replicated");
    let _s1 = sidecar(&id, Some(p1));
    let _s2 = sidecar(&id, Some(p2));
    let caller = sidecar(&unique("lb-caller"), None);
    let c = Client::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let r = call(
            &c,
            c.get(format!("{}/v1.0/invoke/{id}/method/hit", caller.http())),
        )
        .await;
        let v: Value = r.json().await.unwrap();
        *seen
            .entry(v["app"].as_str().unwrap().to_string())
            .or_default() += 1;
        if seen.len() == 2 && seen.values().all(|n| *n >= 5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.len(), 2, "both instances get calls: {seen:?}");
}

/// The Rust SDK's `invoke_service` (gRPC) reaches an HTTP app through two
/// sidecars; the callee's `APP_API_TOKEN` reaches its app; an app with
/// `http_proxy` pointing at its sidecar calls `http://{app-id}/…` (curl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_app_token_and_transparent_proxy() {
    let (port, _app) = echo_app("tokened").await;
    let callee_id = unique("tokened");
    let _callee = Sidecar::start(Options {
        app_id: callee_id.clone(),
        extra_args: vec!["--app-port".into(), port.to_string()],
        env: vec![("APP_API_TOKEN".into(), "app-secret".into())],
        ..Default::default()
    });
    let caller = sidecar(&unique("sdk-caller"), None);

    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(caller.grpc()))
            .await
            .unwrap();
    let mut answer = None;
    for _ in 0..200 {
        match sdk
            .invoke_service(
                callee_id.as_str(),
                "orders/9",
                Some(prost_types::Any {
                    type_url: String::new(),
                    value: b"hello".to_vec(),
                }),
            )
            .await
        {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let r = answer.expect("invoke_service answered");
    let v: Value = serde_json::from_slice(&r.data.unwrap().value).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/orders/9");
    assert_eq!(v["len"], 5);
    assert_eq!(v["token"], "app-secret", "APP_API_TOKEN is sent to the app");

    // Transparent mode with plain curl.
    let url = format!("http://{callee_id}/catalog?q=1");
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "10", &url])
        .env("http_proxy", caller.http())
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["path"], "/catalog");
    assert_eq!(v["query"], "q=1");
}

/// Kubernetes DNS resolution against a real DNS server (dnsmasq on a
/// private port): `{app}-dapr.default.svc.cluster.local` points at the
/// callee's address (127.0.0.2), on the internal port every sidecar shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_dns_resolution_with_dnsmasq() {
    let (port, _app) = echo_app("k8s").await;
    let callee_id = unique("k8s-callee");
    let dns_port = spar_tests::free_port();
    let dir = tempfile::tempdir().unwrap();
    /// Stops the DNS server even when an assertion fails.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _dnsmasq = Stop(
        std::process::Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .args(["--listen-address=127.0.0.1", "--user=root"])
            .arg(format!("--port={dns_port}"))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .arg(format!(
                "--address=/{callee_id}-dapr.default.svc.cluster.local/127.0.0.2"
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian package dnsmasq)"),
    );
    let internal = spar_tests::free_port();
    let _callee = Sidecar::start(Options {
        app_id: callee_id.clone(),
        listen_host: "127.0.0.2".into(),
        extra_args: [
            "--app-port",
            &port.to_string(),
            "--dapr-internal-grpc-port",
            &internal.to_string(),
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    let caller = Sidecar::start(Options {
        app_id: unique("k8s-caller"),
        extra_args: vec!["--dapr-internal-grpc-port".into(), internal.to_string()],
        config: Some(format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: k8s\nspec:\n  nameResolution:\n    component: kubernetes\n    configuration:\n      clusterDomain: cluster.local\n      dnsServer: \"127.0.0.1:{dns_port}\"\n"
        )),
        ..Default::default()
    });
    let c = Client::new();
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{callee_id}/method/pods?x=1",
            caller.http()
        ))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["app"], "k8s", "{v}");
    assert_eq!(v["path"], "/pods");
    // A name the DNS server doesn't know: Dapr's error.
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{}/method/x",
            caller.http(),
            unique("ghost")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_DIRECT_INVOKE"
    );
}

/// A slow app and a caller that gives up: the caller's own timeout ends the
/// call, and the sidecars keep serving other calls meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_app_caller_timeout() {
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .fallback(|| async { "fast" });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let callee_id = unique("slow");
    let _callee = sidecar(&callee_id, Some(port));
    let caller = sidecar(&unique("impatient"), None);
    let c = Client::new();
    // Warm discovery first.
    let r = call(
        &c,
        c.get(format!(
            "{}/v1.0/invoke/{callee_id}/method/quick",
            caller.http()
        )),
    )
    .await;
    assert_eq!(r.text().await.unwrap(), "fast");

    let impatient = Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = impatient
        .get(format!(
            "{}/v1.0/invoke/{callee_id}/method/slow",
            caller.http()
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Meanwhile other calls go through at once.
    let quick = Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let r = quick
        .get(format!(
            "{}/v1.0/invoke/{callee_id}/method/other",
            caller.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "fast");
}

/// `SPAR_HTTP_THREADS`: a work-stealing pool per listener serves concurrent
/// calls through the shared upstream pool; a bad value falls back to one
/// thread with a warning, never a failed start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_thread_setting() {
    let (port, _app) = echo_app("callee").await;
    let callee_id = unique("callee");
    let with_env = |app_id: &str, app_port: Option<u16>, threads: &str| {
        sidecar_env(
            app_id,
            app_port,
            vec![("SPAR_HTTP_THREADS".into(), threads.into())],
        )
    };
    let _callee = with_env(&callee_id, Some(port), "2");
    let caller = with_env(&unique("caller"), None, "many");
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{callee_id}/method/hello", caller.http());
    assert_eq!(call(&c, c.get(&url)).await.status(), StatusCode::OK);
    let calls = (0..64).map(|_| {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { c.get(url).send().await.unwrap().status() })
    });
    for s in futures::future::join_all(calls).await {
        assert_eq!(s.unwrap(), StatusCode::OK);
    }
    assert!(
        caller
            .stderr()
            .contains("SPAR_HTTP_THREADS must be 1 to 256"),
        "{}",
        caller.stderr()
    );
}
