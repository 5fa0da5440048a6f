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
