//! Nothing lost: a stream of messages is published while the subscribing
//! app (a separate process) or its sidecar is SIGKILLed and restarted; every
//! message still arrives at least once (Redis Streams: pending entries of
//! the dead consumer are reclaimed after `processingTimeout`; JetStream:
//! unacknowledged messages come back after `ackWait`; RabbitMQ: a dead
//! consumer's unacknowledged messages are requeued by the broker; MQTT: the
//! restarted sidecar resumes its persistent session).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reqwest::Client;
use spar_tests::{free_port, unique, Options, Sidecar};

const N: u32 = 300;

#[derive(Clone, Copy)]
enum Broker {
    Redis,
    JetStream,
    RabbitMq,
    Mqtt,
}

fn component(b: Broker) -> String {
    match b {
        Broker::Redis => "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n  - name: processingTimeout\n    value: 1s\n  - name: redeliverInterval\n    value: 300ms\n".into(),
        Broker::JetStream => "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.jetstream\n  version: v1\n  metadata:\n  - name: natsURL\n    value: nats://127.0.0.1:4222\n  - name: ackWait\n    value: 1s\n".into(),
        // Durable queue, persistent messages, RETRY requeued: what a user
        // who must not lose messages configures (daprd's defaults are not).
        Broker::RabbitMq => "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.rabbitmq\n  version: v1\n  metadata:\n  - name: connectionString\n    value: amqp://guest:guest@127.0.0.1:5672\n  - name: durable\n    value: \"true\"\n  - name: deletedWhenUnused\n    value: \"false\"\n  - name: deliveryMode\n    value: \"2\"\n  - name: requeueInFailure\n    value: \"true\"\n  - name: reconnectWait\n    value: 300ms\n".into(),
        Broker::Mqtt => "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.mqtt3\n  version: v1\n  metadata:\n  - name: url\n    value: tcp://127.0.0.1:1883\n".into(),
    }
}

struct App(Child);

impl App {
    fn start(port: u16, topic: &str, out: &Path) -> App {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/subscriber.py");
        let child = Command::new("python3")
            .arg(script)
            .args([&port.to_string(), "ps", topic, &out.display().to_string()])
            .spawn()
            .expect("python3 subscriber app");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "subscriber app did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        App(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

fn received(out: &Path) -> BTreeSet<u32> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn subscriber_sidecar(b: Broker, app_id: &str, port: u16) -> Sidecar {
    Sidecar::start(Options {
        app_id: app_id.to_string(),
        resources: vec![component(b)],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    })
}

/// Waits until the sidecar has subscribed (with RabbitMQ, messages
/// published before the group's queue exists go nowhere, as with daprd).
async fn subscribed(sc: &Sidecar) {
    let c = Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while spar_tests::get_json(&c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline, "no subscription");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes 0..N through its own sidecar, a few ms apart, in the background.
fn publish_stream(publisher: &Sidecar, topic: &str) -> tokio::task::JoinHandle<()> {
    let url = format!("{}/v1.0/publish/ps/{topic}", publisher.http());
    tokio::spawn(async move {
        let c = Client::new();
        for n in 0..N {
            let r = c
                .post(&url)
                .header("content-type", "application/json")
                .body(format!("{{\"n\":{n}}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 204);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

async fn wait_all(out: &Path, limit: Duration) -> BTreeSet<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let got = received(out);
        if got.len() as u32 == N || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_some(out: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while received(out).len() < n {
        assert!(Instant::now() < deadline, "no deliveries");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_app_is_killed_redis() {
    app_killed(Broker::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_app_is_killed_jetstream() {
    app_killed(Broker::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_app_is_killed_rabbitmq() {
    app_killed(Broker::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_sidecar_is_killed_rabbitmq() {
    sidecar_killed(Broker::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_app_is_killed_mqtt() {
    app_killed(Broker::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_sidecar_is_killed_mqtt() {
    sidecar_killed(Broker::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_sidecar_is_killed_redis() {
    sidecar_killed(Broker::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_when_the_sidecar_is_killed_jetstream() {
    sidecar_killed(Broker::JetStream).await;
}

async fn app_killed(b: Broker) {
    let (topic, app_id, port) = (unique("durable-app"), unique("dur-sub"), free_port());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got.txt");
    let mut app = App::start(port, &topic, &out);
    let sub = subscriber_sidecar(b, &app_id, port);
    subscribed(&sub).await;
    let publisher = Sidecar::start(Options {
        app_id: unique("dur-pub"),
        resources: vec![component(b)],
        ..Default::default()
    });
    let stream = publish_stream(&publisher, &topic);
    wait_some(&out, 40).await;
    app.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _app = App::start(port, &topic, &out);
    stream.await.unwrap();
    let got = wait_all(&out, Duration::from_secs(30)).await;
    let missing: Vec<u32> = (0..N).filter(|n| !got.contains(n)).collect();
    drop_stream(b, &topic, &app_id).await;
    assert!(
        missing.is_empty(),
        "lost {} messages: {missing:?}",
        missing.len()
    );
}

async fn sidecar_killed(b: Broker) {
    let (topic, app_id, port) = (unique("durable-sc"), unique("dur-sub"), free_port());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got.txt");
    let _app = App::start(port, &topic, &out);
    let mut sub = subscriber_sidecar(b, &app_id, port);
    subscribed(&sub).await;
    let publisher = Sidecar::start(Options {
        app_id: unique("dur-pub"),
        resources: vec![component(b)],
        ..Default::default()
    });
    let stream = publish_stream(&publisher, &topic);
    wait_some(&out, 40).await;
    sub.child.kill().unwrap(); // SIGKILL: no graceful drain, nothing acknowledged after this
    sub.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _sub2 = subscriber_sidecar(b, &app_id, port);
    stream.await.unwrap();
    let got = wait_all(&out, Duration::from_secs(30)).await;
    let missing: Vec<u32> = (0..N).filter(|n| !got.contains(n)).collect();
    drop_stream(b, &topic, &app_id).await;
    assert!(
        missing.is_empty(),
        "lost {} messages: {missing:?}",
        missing.len()
    );
}

/// The test's stream (topic) is removed from the shared Redis.
async fn drop_stream(b: Broker, topic: &str, app_id: &str) {
    match b {
        Broker::Redis => spar_tests::delete_redis_keys(topic).await,
        Broker::JetStream => spar_tests::delete_jetstream_streams(topic).await,
        Broker::RabbitMq => spar_tests::delete_rabbitmq(topic).await,
        Broker::Mqtt => spar_tests::clear_mqtt_sessions(&[app_id]).await,
    }
}
