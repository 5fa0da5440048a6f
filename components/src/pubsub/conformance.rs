//! The pub/sub conformance suite: the same cases for every `PubSub`.
//!
//! Each case takes the broker and a unique topic prefix, so shared brokers
//! (Redis, NATS, RabbitMQ, Mosquitto) run it beside other traffic. Cases for
//! ordering and durability run only where the broker advertises them.
//! Brokers that redeliver on a timer (Redis `processingTimeout`) must be
//! configured with short timers for the RETRY case to finish quickly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;

type Broker = Arc<dyn PubSub>;

/// How a test handler answers: given the message and how often the same
/// payload was seen before.
type Rule = Box<dyn Fn(&Message, usize) -> Ack + Send + Sync>;

/// Records every delivery; answers per a rule.
struct Recorder {
    seen: Mutex<Vec<Message>>,
    rule: Rule,
}

impl Recorder {
    fn new(rule: impl Fn(&Message, usize) -> Ack + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Recorder {
            seen: Mutex::default(),
            rule: Box::new(rule),
        })
    }

    fn seen(&self) -> Vec<Message> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, data: &[u8]) -> usize {
        self.seen()
            .iter()
            .filter(|m| m.data.as_ref() == data)
            .count()
    }

    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Message> {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.seen();
            if s.len() >= n || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, msg: Message) -> Ack {
        let attempt = {
            let mut s = self.seen.lock().unwrap();
            let n = s.iter().filter(|m| m.data == msg.data).count();
            s.push(msg.clone());
            n
        };
        (self.rule)(&msg, attempt)
    }
}

fn msg(topic: &str, data: impl Into<Bytes>) -> Message {
    Message {
        topic: topic.to_string(),
        data: data.into(),
        metadata: HashMap::new(),
    }
}

fn req(topic: &str, group: &str, in_flight: usize) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.to_string(),
        consumer_group: group.to_string(),
        max_in_flight: in_flight,
        metadata: HashMap::new(),
    }
}

/// A case's consumer group: its own per case, so that brokers keeping a
/// session per group (MQTT) never carry one case's deliveries into the next.
fn group(topic: &str, name: &str) -> String {
    format!("{topic}-{name}")
}

/// Every consumer group `run_all(_, prefix)` uses, for clean-up.
pub fn consumer_groups(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for case in ["all", "retry", "bulk", "order", "durable"] {
        out.push(group(&format!("{prefix}-{case}"), "g"));
    }
    for name in ["a", "b"] {
        out.push(group(&format!("{prefix}-groups"), name));
    }
    out
}

/// Runs every case, each on topics and consumer groups of its own.
pub async fn run_all(b: Broker, prefix: &str) {
    delivers_everything_as_sent(b.clone(), &format!("{prefix}-all")).await;
    retry_redelivers_drop_does_not(b.clone(), &format!("{prefix}-retry")).await;
    competing_consumers_and_groups(b.clone(), &format!("{prefix}-groups")).await;
    bulk_publish(b.clone(), &format!("{prefix}-bulk")).await;
    if b.features().ordered {
        keeps_order(b.clone(), &format!("{prefix}-order")).await;
    }
    if b.features().durable {
        survives_the_subscriber(b, &format!("{prefix}-durable")).await;
    }
}

pub async fn delivers_everything_as_sent(b: Broker, topic: &str) {
    let r = Recorder::new(|_, _| Ack::Success);
    let sub = b
        .subscribe(req(topic, &group(topic, "g"), 8), r.clone())
        .await
        .unwrap();
    let n = 100;
    let mut sent = Vec::new();
    for i in 0..n {
        // Binary, JSON and empty payloads all arrive byte for byte.
        let data: Vec<u8> = match i % 3 {
            0 => format!("{{\"n\":{i}}}").into_bytes(),
            1 => vec![0, 255, i as u8, 10, 13],
            _ => format!("text {i} ✓").into_bytes(),
        };
        b.publish(&msg(topic, data.clone())).await.unwrap();
        sent.push(data);
    }
    let seen = r.wait_for(n, Duration::from_secs(15)).await;
    sub.close().await;
    let mut got: Vec<Vec<u8>> = seen.iter().map(|m| m.data.to_vec()).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "every message exactly once, unchanged");
    assert!(seen.iter().all(|m| m.topic == topic));
}

pub async fn retry_redelivers_drop_does_not(b: Broker, topic: &str) {
    // "retry" fails twice, then succeeds; "drop" is dropped at once.
    let r = Recorder::new(|m, attempt| match m.data.as_ref() {
        b"retry" if attempt < 2 => Ack::Retry,
        b"drop" => Ack::Drop,
        _ => Ack::Success,
    });
    let sub = b
        .subscribe(req(topic, &group(topic, "g"), 4), r.clone())
        .await
        .unwrap();
    for d in ["retry", "drop", "ok"] {
        b.publish(&msg(topic, d)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.count(b"retry") < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        r.count(b"retry"),
        3,
        "RETRY is delivered again until it succeeds"
    );
    // Give a dropped message time to (wrongly) come back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sub.close().await;
    assert_eq!(r.count(b"drop"), 1, "DROP is not delivered again");
    assert_eq!(r.count(b"ok"), 1);
}

pub async fn competing_consumers_and_groups(b: Broker, topic: &str) {
    let ok = |_: &Message, _| Ack::Success;
    let (a1, a2, other) = (Recorder::new(ok), Recorder::new(ok), Recorder::new(ok));
    let s1 = b
        .subscribe(req(topic, &group(topic, "a"), 4), a1.clone())
        .await
        .unwrap();
    let s2 = b
        .subscribe(req(topic, &group(topic, "a"), 4), a2.clone())
        .await
        .unwrap();
    let s3 = b
        .subscribe(req(topic, &group(topic, "b"), 4), other.clone())
        .await
        .unwrap();
    let n = 60;
    for i in 0..n {
        b.publish(&msg(topic, format!("m{i}"))).await.unwrap();
    }
    other.wait_for(n, Duration::from_secs(15)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while a1.seen().len() + a2.seen().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in [s1, s2, s3] {
        s.close().await;
    }
    assert_eq!(other.seen().len(), n, "another group gets every message");
    let mut shared: Vec<Bytes> = a1
        .seen()
        .into_iter()
        .chain(a2.seen())
        .map(|m| m.data)
        .collect();
    shared.sort();
    shared.dedup();
    assert_eq!(shared.len(), n, "one group's members share every message");
    assert_eq!(
        a1.seen().len() + a2.seen().len(),
        n,
        "each message to one member only"
    );
}

pub async fn bulk_publish(b: Broker, topic: &str) {
    let r = Recorder::new(|_, _| Ack::Success);
    let sub = b
        .subscribe(req(topic, &group(topic, "g"), 4), r.clone())
        .await
        .unwrap();
    let msgs: Vec<Message> = (0..20).map(|i| msg(topic, format!("b{i}"))).collect();
    let results = b.bulk_publish(&msgs).await;
    assert_eq!(results.len(), 20);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(r.wait_for(20, Duration::from_secs(15)).await.len(), 20);
    sub.close().await;
}

pub async fn keeps_order(b: Broker, topic: &str) {
    let r = Recorder::new(|_, _| Ack::Success);
    let sub = b
        .subscribe(req(topic, &group(topic, "g"), 1), r.clone())
        .await
        .unwrap();
    let n = 50;
    for i in 0..n {
        b.publish(&msg(topic, format!("{i:04}"))).await.unwrap();
    }
    let seen = r.wait_for(n, Duration::from_secs(15)).await;
    sub.close().await;
    let got: Vec<String> = seen
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("{i:04}")).collect();
    assert_eq!(got, want, "one in-order consumer sees publish order");
}

pub async fn survives_the_subscriber(b: Broker, topic: &str) {
    // The group exists (first subscription), then the subscriber goes away.
    let first = Recorder::new(|_, _| Ack::Success);
    b.subscribe(req(topic, &group(topic, "g"), 4), first)
        .await
        .unwrap()
        .close()
        .await;
    for i in 0..10 {
        b.publish(&msg(topic, format!("while-away-{i}")))
            .await
            .unwrap();
    }
    let r = Recorder::new(|_, _| Ack::Success);
    let sub = b
        .subscribe(req(topic, &group(topic, "g"), 4), r.clone())
        .await
        .unwrap();
    let seen = r.wait_for(10, Duration::from_secs(15)).await;
    sub.close().await;
    assert_eq!(
        seen.len(),
        10,
        "messages published while no subscriber ran are kept"
    );
}
