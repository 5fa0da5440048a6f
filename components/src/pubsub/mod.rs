//! The pub/sub kind: the [`PubSub`] trait and its brokers.
//!
//! A broker moves opaque payloads (the runtime builds and reads the
//! CloudEvents envelope) and guarantees at-least-once delivery: a message is
//! acknowledged to the broker only after the handler returns
//! [`Ack::Success`] or [`Ack::Drop`]; [`Ack::Retry`] leaves it for the broker
//! to deliver again. Retrying with backoff and dead-lettering are the
//! runtime's job, before it answers.

pub mod conformance;
pub mod jetstream;
pub mod memory;
pub mod mqtt;
pub mod rabbitmq;
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;
use tokio::sync::watch;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PubSubError {
    #[error("{0}")]
    Backend(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("not supported: {0}")]
    NotSupported(&'static str),
}

/// One message as a broker carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub topic: String,
    pub data: Bytes,
    /// Broker-level metadata (e.g. `contentType` for raw payloads); brokers
    /// that can carry headers keep it, others may drop it.
    pub metadata: HashMap<String, String>,
}

/// What the handler decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Processed: acknowledge.
    Success,
    /// Deliver again later.
    Retry,
    /// Give up on it: acknowledge without processing.
    Drop,
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, msg: Message) -> Ack;
}

/// A subscription request, as the runtime builds it from a Subscription.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub topic: String,
    /// Competing consumers share a group: each message goes to one member.
    pub consumer_group: String,
    /// At most this many handler calls in flight (1 keeps broker order).
    pub max_in_flight: usize,
    pub metadata: HashMap<String, String>,
}

/// Optional capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Messages of one topic reach a single in-order consumer in publish order.
    pub ordered: bool,
    /// Messages survive the subscriber (and its sidecar) going away.
    pub durable: bool,
}

/// A running subscription; consuming stops when it is closed or dropped.
pub struct Subscription {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Subscription {
    pub fn new(stop: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) -> Self {
        Subscription {
            stop,
            task: Some(task),
        }
    }

    /// Stops consuming and waits until no handler call is in flight.
    pub async fn close(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    fn features(&self) -> Features;

    /// Checks the broker is reachable, as daprd's component `Init` does: a
    /// broker that fails here fails the sidecar's start-up unless its
    /// component says `ignoreErrors`. Bounded by the `initTimeout`.
    async fn init(&self) -> Result<(), PubSubError> {
        Ok(())
    }

    async fn publish(&self, msg: &Message) -> Result<(), PubSubError>;

    /// One result per message, in order; brokers with a batch API override.
    async fn bulk_publish(&self, msgs: &[Message]) -> Vec<Result<(), PubSubError>> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            out.push(self.publish(m).await);
        }
        out
    }

    /// Starts delivering `req.topic` to `handler`.
    async fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, PubSubError>;
}

/// Runs handler calls with at most `max` in flight; returns when `stop`
/// turns true and every started call has finished.
pub(crate) struct InFlight {
    sem: Arc<tokio::sync::Semaphore>,
    max: u32,
}

impl InFlight {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, 10_000) as u32;
        InFlight {
            sem: Arc::new(tokio::sync::Semaphore::new(max as usize)),
            max,
        }
    }

    /// Waits for a free slot, then runs `f` on its own task.
    pub(crate) async fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let Ok(permit) = self.sem.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(async move {
            f.await;
            drop(permit);
        });
    }

    /// Waits until every started call has finished.
    pub(crate) async fn drain(&self) {
        let _ = self.sem.acquire_many(self.max).await;
    }
}

/// A component of `type_` with these metadata values, for unit tests.
#[cfg(test)]
pub(crate) fn test_component(type_: &str, meta: &[(&str, &str)]) -> spar_config::Component {
    let items: String = meta
        .iter()
        .map(|(k, v)| format!("  - name: {k}\n    value: \"{v}\"\n"))
        .collect();
    let y = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: c\nspec:\n  type: {type_}\n  version: v1\n  metadata:\n{items}"
    );
    serde_yaml::from_str(&y).expect("test component")
}
