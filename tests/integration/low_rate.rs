//! Low message rates, every broker: 20 messages published 0.5–1 s apart
//! through the real sidecar each reach a real subscriber app within 1 s of
//! their publish call returning, exactly once. (A Redis Streams read that
//! was abandoned by a client-side timeout once held such messages until
//! `processingTimeout`, or delivered them twice.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{get_json, unique, Options, Sidecar};

const N: u64 = 20;
/// The bound the issue asks for, from the publish call's return to the
/// app's receipt.
const BOUND: Duration = Duration::from_secs(1);

/// Receipt times per message number (several when delivered twice).
type Seen = Arc<Mutex<BTreeMap<u64, Vec<Instant>>>>;

async fn app() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(|State(seen): State<Seen>, body: Bytes| async move {
            let at = Instant::now();
            let ev: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(n) = ev["data"]["n"].as_u64() {
                seen.lock().unwrap().entry(n).or_default().push(at);
            }
            axum::Json(json!({"status": "SUCCESS"}))
        })
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

/// Runs the scenario on `component` (named `ps`); returns the sidecar (for
/// its log) and the subscriber's app id (its consumer group).
async fn low_rate(component: &str, topic: &str) -> (Sidecar, String) {
    let (port, seen) = app().await;
    let app_id = unique("slow-app");
    let sub = format!(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: slow\nspec:\n  pubsubname: ps\n  topic: {topic}\n  routes:\n    default: /in\n"
    );
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![component.to_string(), sub],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_json(&c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline, "not subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let a few idle blocking reads (Redis: 1 s each) come and go first.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let url = format!("{}/v1.0/publish/ps/{topic}", sc.http());
    let mut published = Vec::new();
    for n in 0..N {
        // 500–987 ms apart, varied so publishes fall at every phase of a
        // broker's polling cycle.
        tokio::time::sleep(Duration::from_millis(500 + (n * 263) % 500)).await;
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .body(json!({ "n": n }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204, "publish {n}");
        published.push(Instant::now());
    }
    // Everything in, then a while longer for any duplicate to show.
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().len() < N as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let seen = seen.lock().unwrap().clone();
    let mut problems = Vec::new();
    for (n, at) in published.iter().enumerate() {
        match seen.get(&(n as u64)).map(Vec::as_slice) {
            None | Some([]) => problems.push(format!("#{n} never arrived")),
            Some([got]) => {
                let late = got.saturating_duration_since(*at);
                if late > BOUND {
                    problems.push(format!("#{n} arrived {late:?} after its publish"));
                }
            }
            Some(many) => problems.push(format!("#{n} arrived {} times", many.len())),
        }
    }
    let log = sc.stderr();
    assert!(problems.is_empty(), "{problems:?}\n{log}");
    // Quiet brokers: nothing for the log while messages trickle in.
    let noise: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pubsub") && (l.contains("WARN") || l.contains("ERROR")))
        .collect();
    assert!(noise.is_empty(), "{noise:#?}");
    (sc, app_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_rate_in_memory() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.in-memory\n  version: v1\n";
    low_rate(component, &unique("slow-mem")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_rate_redis_streams() {
    // daprd's defaults: nothing may wait for a reclaim.
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n";
    let topic = unique("slow-rds");
    let (sc, _) = low_rate(component, &topic).await;
    let log = sc.stderr();
    // Stopped first: a running reader would recreate a deleted stream.
    drop(sc);
    spar_tests::delete_redis_keys(&format!("*{topic}*")).await;
    // An idle subscription's blocking reads end quietly.
    assert!(!log.contains("redis pubsub"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_rate_jetstream() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.jetstream\n  version: v1\n  metadata:\n  - name: natsURL\n    value: nats://127.0.0.1:4222\n";
    let topic = unique("slow-js");
    low_rate(component, &topic).await;
    spar_tests::delete_jetstream_streams(&topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_rate_rabbitmq() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.rabbitmq\n  version: v1\n  metadata:\n  - name: connectionString\n    value: amqp://guest:guest@127.0.0.1:5672\n";
    let topic = unique("slow-rmq");
    let (_, app_id) = low_rate(component, &topic).await;
    spar_tests::delete_rabbitmq(&topic).await;
    spar_tests::delete_rabbitmq(&app_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_rate_mqtt3() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.mqtt3\n  version: v1\n  metadata:\n  - name: url\n    value: tcp://127.0.0.1:1883\n";
    let (sc, app_id) = low_rate(component, &unique("slow-mqtt")).await;
    drop(sc);
    spar_tests::clear_mqtt_sessions(&[&app_id]).await;
}
