//! Prometheus metrics with Dapr's names.

use reqwest::Client;
use spar_tests::{memory_component, Options, Sidecar};

fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn server_component_and_process_metrics() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        ..Default::default()
    });
    let c = Client::new();
    for i in 0..7 {
        c.post(format!("{}/v1.0/state/mem", sc.http()))
            .body(format!(r#"[{{"key":"m{i}","value":{i}}}]"#))
            .send()
            .await
            .unwrap();
    }
    c.get(format!("{}/v1.0/state/nope/k", sc.http()))
        .send()
        .await
        .unwrap();
    let text = c
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let app = format!("app_id=\"{}\"", sc.app_id);
    assert_eq!(
        sample(
            &text,
            "dapr_http_server_request_count",
            &[&app, "method=\"POST\"", "status=\"204\""]
        ),
        7.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "dapr_http_server_request_count",
            &[&app, "status=\"400\""]
        ),
        1.0
    );
    assert!(sample(&text, "dapr_http_server_latency_count", &[&app]) >= 8.0);
    assert_eq!(
        sample(
            &text,
            "dapr_component_state_count",
            &["component=\"mem\"", "operation=\"set\"", "success=\"true\""]
        ),
        7.0
    );
    assert!(sample(&text, "process_resident_memory_bytes", &[]) > 0.0);
    // The path label is empty by default: cardinality stays bounded.
    assert!(!text.contains("path=\"/v1.0/state/mem\""));
}

/// Publish, delivery and secret calls show up as daprd's component metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_and_secret_component_metrics() {
    let app = axum::Router::new()
        .fallback(|| async { axum::Json(serde_json::json!({"status": "SUCCESS"})) });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let topic = spar_tests::unique("metrics");
    let resources = vec![
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.in-memory\n  version: v1\n".to_string(),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: env\nspec:\n  type: secretstores.local.env\n  version: v1\n".to_string(),
        format!("apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: ps\n  topic: {topic}\n  routes:\n    default: /in\n"),
    ];
    let sc = Sidecar::start(Options {
        resources,
        extra_args: vec!["--app-port".into(), port.to_string()],
        env: vec![("SPAR_METRICS_SECRET".into(), "x".into())],
        ..Default::default()
    });
    let c = Client::new();
    let scrape = || async {
        c.get(sc.metrics_url())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The subscription starts once the app port answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while spar_tests::get_json(&c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for i in 0..5 {
        c.post(format!("{}/v1.0/publish/ps/{topic}", sc.http()))
            .body(format!("{{\"n\":{i}}}"))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
    }
    c.get(format!(
        "{}/v1.0/secrets/env/SPAR_METRICS_SECRET",
        sc.http()
    ))
    .send()
    .await
    .unwrap();
    let t = format!("topic=\"{topic}\"");
    let mut text = scrape().await;
    // Count and latency are two updates: a scrape can fall between them.
    for _ in 0..100 {
        if sample(&text, "dapr_component_pubsub_ingress_count", &[&t]) >= 5.0
            && sample(
                &text,
                "dapr_component_pubsub_ingress_latencies_count",
                &[&t],
            ) >= 5.0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text = scrape().await;
    }
    let app = format!("app_id=\"{}\"", sc.app_id);
    assert_eq!(
        sample(
            &text,
            "dapr_component_pubsub_egress_count",
            &[&app, "component=\"ps\"", &t, "success=\"true\""]
        ),
        5.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "dapr_component_pubsub_ingress_count",
            &[&app, "component=\"ps\"", &t, "process_status=\"success\""]
        ),
        5.0
    );
    assert!(
        sample(
            &text,
            "dapr_component_pubsub_ingress_latencies_count",
            &[&t]
        ) >= 5.0
    );
    assert_eq!(
        sample(
            &text,
            "dapr_component_secret_count",
            &["component=\"env\"", "operation=\"get\"", "success=\"true\""]
        ),
        1.0
    );
}

/// daprd's service-invocation metrics on both sides of a call, and the
/// callee's app-channel client metrics.
#[tokio::test]
async fn service_invocation_metrics_on_caller_and_callee() {
    let (port, _app) = crate::invoke::echo_app("b").await;
    let (a_id, b_id) = (spar_tests::unique("mi-a"), spar_tests::unique("mi-b"));
    let a = Sidecar::start(Options {
        app_id: a_id.clone(),
        ..Default::default()
    });
    let b = Sidecar::start(Options {
        app_id: b_id.clone(),
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    let url = format!("{}/v1.0/invoke/{b_id}/method/m", a.http());
    let r = crate::invoke::call(&c, c.post(&url).body("x")).await;
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = c.post(&url).body("x").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let scrape = |url: String| {
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let ta = scrape(a.metrics_url()).await;
    let (app_a, app_b) = (format!("app_id=\"{a_id}\""), format!("app_id=\"{b_id}\""));
    let (dst_b, src_b) = (
        format!("dst_app_id=\"{b_id}\""),
        format!("src_app_id=\"{b_id}\""),
    );
    // The first call may have been retried while mDNS found b: at least 3.
    assert!(
        sample(
            &ta,
            "dapr_runtime_service_invocation_req_sent_total",
            &[&app_a, &dst_b, "type=\"unary\""]
        ) >= 3.0,
        "{ta}"
    );
    assert!(
        sample(
            &ta,
            "dapr_runtime_service_invocation_res_recv_total",
            &[&app_a, &src_b, "status=\"200\""]
        ) == 3.0,
        "{ta}"
    );
    assert!(
        sample(
            &ta,
            "dapr_runtime_service_invocation_res_recv_latency_ms_count",
            &[&app_a, &src_b]
        ) >= 3.0
    );
    let tb = scrape(b.metrics_url()).await;
    let (src_a, dst_a) = (
        format!("src_app_id=\"{a_id}\""),
        format!("dst_app_id=\"{a_id}\""),
    );
    assert_eq!(
        sample(
            &tb,
            "dapr_runtime_service_invocation_req_recv_total",
            &[&app_b, &src_a]
        ),
        3.0,
        "{tb}"
    );
    assert_eq!(
        sample(
            &tb,
            "dapr_runtime_service_invocation_res_sent_total",
            &[&app_b, &dst_a, "status=\"200\""]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &tb,
            "dapr_http_client_completed_count",
            &[&app_b, "method=\"POST\"", "status=\"200\""]
        ),
        3.0
    );
    // Three 1-byte request bodies went to the app.
    assert_eq!(
        sample(
            &tb,
            "dapr_http_client_sent_bytes_sum",
            &[&app_b, "method=\"POST\""]
        ),
        3.0,
        "{tb}"
    );
    assert!(sample(&tb, "dapr_http_client_received_bytes_count", &[&app_b]) >= 3.0);
}
