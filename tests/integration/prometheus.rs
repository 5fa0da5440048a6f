//! A real Prometheus server (Debian's `prometheus`) scrapes spar; a query
//! through Prometheus's HTTP API returns the request count this test made.
//! And label cardinality stays bounded: 10,000 distinct paths do not make
//! 10,000 series, even with `increasedCardinality` on.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::Value;
use spar_tests::{free_port, memory_component, unique, Options, Sidecar};

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: spar\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/services.sh installs Debian's package)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    async fn query(&self, c: &Client, q: &str) -> Option<f64> {
        let v: Value = c
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_request_count() {
    let sc = Sidecar::start(Options {
        app_id: unique("prom"),
        resources: vec![memory_component("mem")],
        ..Default::default()
    });
    let prom = Prometheus::scraping(sc.metrics_port);
    let c = Client::new();
    for i in 0..13 {
        // POSTs: the harness's own health polling is GETs.
        let r = c
            .post(format!("{}/v1.0/state/mem", sc.http()))
            .body(format!(r#"[{{"key":"k{i}","value":{i}}}]"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let q = format!(
        "sum(dapr_http_server_request_count{{app_id=\"{}\",method=\"POST\",status=\"204\"}})",
        sc.app_id
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if prom.query(&c, &q).await == Some(13.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never reported 13 requests (last: {:?})",
            prom.query(&c, &q).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_paths_stay_a_handful_of_series() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        config: Some(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: m\nspec:\n  metric:\n    enabled: true\n    http:\n      increasedCardinality: true\n".into(),
        ),
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (c, base) = (c.clone(), base.clone());
            tokio::spawn(async move {
                for i in (w..10_000).step_by(8) {
                    c.get(format!("{base}/v1.0/state/mem/key-{i}"))
                        .send()
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let text = c
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("dapr_http_server_request_count{"))
        .collect();
    assert!(
        !series.is_empty() && series.len() < 10,
        "{} series: {series:#?}",
        series.len()
    );
    let total: f64 = series
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(total >= 10_000.0);
    assert!(text.contains("path=\"/v1.0/state/{storeName}/{key}\""));
}
