//! Phase two of the transactional outbox (phase one is
//! `spar_filters::outbox`): the sidecar's own subscription to each outbox
//! store's internal topic. It is not an app subscription — not listed in
//! the metadata API, running with or without an app — and it needs only
//! the brokers and the state store.
//!
//! For each internal event: wait, as daprd does, for the marker the
//! transaction wrote (`outbox-{uuid}`, the event's id) to exist, so only
//! committed transactions are published; publish the event to the user's
//! topic; delete the marker. A broker or store that fails leaves the
//! internal message to the broker to deliver again, so nothing is lost. A
//! marker that never appears (the transaction failed) is retried the same
//! way, or dropped with `outboxDiscardWhenMissingState: true`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use spar_components::pubsub::{Ack, Handler, Message, SubscribeRequest, Subscription};
use spar_components::state::{Concurrency, DeleteRequest, GetRequest, StateStore};
use spar_filters::outbox::OutboxConfig;
use spar_filters::Runtime;
use tokio::sync::watch;

/// daprd waits this long before its first look for the marker.
const SCAN_DELAY: Duration = Duration::from_secs(1);
/// daprd's backoff for the marker look-up and delete: 0.5 s, ×3, at most
/// 3 s apart, given up after 10 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(3);
const MAX_ELAPSED: Duration = Duration::from_secs(10);
/// Bound on one store call (the stores have their own timeouts too).
const STORE_CALL: Duration = Duration::from_secs(10);
/// Internal events relayed at once per store.
const IN_FLIGHT: usize = 32;

/// Subscribes to every outbox store's internal topic; closes the
/// subscriptions (in-flight events finish) when `stop` turns true.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let live = rt.live();
    let mut running: Vec<Subscription> = Vec::new();
    for (store, cfg) in live.outbox.iter() {
        let Some(c) = live.pubsubs.get(&cfg.outbox_pubsub) else {
            tracing::warn!(
                store = %store,
                "could not subscribe to internal outbox topic: outbox pubsub {} not loaded",
                cfg.outbox_pubsub
            );
            continue;
        };
        let topic = live.outbox.internal_topic(&rt.app_id, cfg);
        let relay = Arc::new(Relay {
            rt: rt.clone(),
            store: store.clone(),
            cfg: cfg.clone(),
        });
        let req = SubscribeRequest {
            topic: topic.clone(),
            consumer_group: c.consumer_group.clone(),
            max_in_flight: IN_FLIGHT,
            metadata: HashMap::new(),
        };
        match c.broker.subscribe(req, relay).await {
            Ok(s) => {
                tracing::info!(store = %store, pubsub = %cfg.outbox_pubsub, topic = %topic, "subscribed to the internal outbox topic");
                running.push(s);
            }
            Err(e) => tracing::warn!(
                store = %store,
                "could not subscribe to internal outbox topic {topic} on {}: {e}",
                cfg.outbox_pubsub
            ),
        }
    }
    drop(live);
    if running.is_empty() {
        return;
    }
    crate::signals::stopped(&mut stop).await;
    for s in running {
        s.close().await;
    }
}

struct Relay {
    rt: Arc<Runtime>,
    store: String,
    cfg: Arc<OutboxConfig>,
}

/// Retries `f` with daprd's backoff (±10 % jitter) until it succeeds or
/// the time is up; the last result.
async fn with_backoff<T, E, F, Fut>(mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut next = FIRST_BACKOFF;
    loop {
        let r = f().await;
        if r.is_ok() {
            return r;
        }
        let wait = next.mul_f64(rand::random_range(0.9..1.1));
        if start.elapsed() + wait > MAX_ELAPSED {
            return r;
        }
        tokio::time::sleep(wait).await;
        next = (next * 3).min(MAX_BACKOFF);
    }
}

impl Relay {
    fn store(&self) -> Result<Arc<dyn StateStore>, String> {
        self.rt
            .live()
            .state
            .entry(&self.store)
            .map(|(s, _)| s)
            .ok_or_else(|| {
                format!(
                    "cannot get outbox state: state store {} not found",
                    self.store
                )
            })
    }

    /// Whether the marker exists: the transaction committed.
    async fn committed(&self, key: &str) -> Result<(), String> {
        let store = self.store()?;
        let req = GetRequest::new(key);
        with_backoff(|| async {
            match tokio::time::timeout(STORE_CALL, store.get(&req)).await {
                Ok(Ok(Some(i))) if !i.data.is_empty() => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("state get timed out after {STORE_CALL:?}")),
                Ok(Ok(_)) => Err(format!(
                    "cannot publish outbox message to topic {} with pubsub {}: outbox state not found",
                    self.cfg.publish_topic, self.cfg.publish_pubsub
                )),
            }
        })
        .await
    }

    async fn delete_marker(&self, key: &str) -> Result<(), String> {
        let store = self.store()?;
        let req = DeleteRequest {
            key: key.to_string(),
            etag: None,
            concurrency: Concurrency::LastWrite,
            metadata: HashMap::new(),
        };
        with_backoff(|| async {
            match tokio::time::timeout(STORE_CALL, store.delete(&req)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("state delete timed out after {STORE_CALL:?}")),
            }
        })
        .await
    }
}

#[async_trait]
impl Handler for Relay {
    async fn handle(&self, msg: Message) -> Ack {
        let cfg = &self.cfg;
        // A message that is not a JSON object never will be: dropped.
        let mut ev: Map<String, Value> = match serde_json::from_slice(&msg.data) {
            Ok(Value::Object(m)) => m,
            _ => {
                tracing::error!(store = %self.store, "internal outbox message is not a CloudEvent, dropped");
                return Ack::Drop;
            }
        };
        let key = ev
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        tokio::time::sleep(SCAN_DELAY).await;
        if let Err(e) = self.committed(&key).await {
            if cfg.discard_when_missing_state {
                tracing::error!(store = %self.store, id = %key, "failed to publish outbox topic to pubsub {}: {e}, discarding message", cfg.publish_pubsub);
                return Ack::Drop;
            }
            tracing::error!(store = %self.store, id = %key, "failed to publish outbox topic to pubsub {}: {e}, rejecting for later processing", cfg.publish_pubsub);
            return Ack::Retry;
        }
        ev.insert("topic".into(), json!(cfg.publish_topic));
        ev.insert("pubsubname".into(), json!(cfg.publish_pubsub));
        let content_type = ev
            .get("datacontenttype")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let data = match serde_json::to_vec(&ev) {
            Ok(d) => Bytes::from(d),
            Err(e) => {
                tracing::error!(store = %self.store, id = %key, "outbox event: {e}");
                return Ack::Retry;
            }
        };
        let out = Message {
            topic: cfg.publish_topic.clone(),
            data,
            metadata: HashMap::from([("contentType".to_string(), content_type)]),
        };
        let live = self.rt.live();
        if let Err(e) =
            spar_filters::outbox::publish(&live, &self.rt.app_id, &cfg.publish_pubsub, &out).await
        {
            tracing::error!(store = %self.store, id = %key, "failed to publish outbox event to pubsub {} topic {}: {e}, retrying later", cfg.publish_pubsub, cfg.publish_topic);
            return Ack::Retry;
        }
        drop(live);
        if let Err(e) = self.delete_marker(&key).await {
            tracing::error!(store = %self.store, id = %key, "failed to delete the outbox marker: {e}");
            return Ack::Retry;
        }
        tracing::debug!(store = %self.store, id = %key, topic = %cfg.publish_topic, "outbox event published");
        Ack::Success
    }
}
