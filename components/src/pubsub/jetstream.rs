//! `pubsub.jetstream`: NATS JetStream. Topics are subjects; each topic gets
//! a stream of its own (created on first use) unless `streamName` names an
//! existing one. Subscribers share a durable pull consumer per consumer group
//! (`durableName`, else `consumerID`/app id) and topic, so replicas of one
//! app compete for messages and different apps each get all of them; a
//! message is acked after SUCCESS or DROP and nak'ed on RETRY (redelivered
//! at once, or after `ackWait` if the subscriber died).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use spar_config::Component;
use tokio::sync::watch;

use super::{
    Ack, Features, Handler, InFlight, Message, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

pub struct JetStream {
    js: jetstream::Context,
    stream_name: Option<String>,
    durable_name: Option<String>,
    deliver_policy: consumer::DeliverPolicy,
    ack_wait: Duration,
    max_deliver: i64,
    max_ack_pending: i64,
    memory_storage: bool,
    timeout: Duration,
    /// Topics whose stream is known to exist: publishing skips the
    /// stream lookup (a JetStream API round trip) for them.
    ready: std::sync::RwLock<std::collections::HashSet<String>>,
}

fn backend(e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Backend(format!("jetstream: {e}"))
}

pub fn build(c: &Component, _ctx: &BuildContext) -> Result<Arc<dyn PubSub>, BuildError> {
    let m = Meta::new(c);
    let url = m
        .str("natsURL")
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| m.error("natsURL", "is required (nats://host:port)"))?;
    let deliver_policy =
        match m.one_of("deliverPolicy", &["all", "last", "new", "sequence"], "all")? {
            "last" => consumer::DeliverPolicy::Last,
            "new" => consumer::DeliverPolicy::New,
            "sequence" => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: m.int::<u64>("startSequence", 1)?.max(1),
            },
            _ => consumer::DeliverPolicy::All,
        };
    let opts = async_nats::ConnectOptions::new()
        .name(m.str_or("name", "spar"))
        .connection_timeout(m.duration("connectTimeout", Duration::from_secs(5))?)
        .retry_on_initial_connect();
    // Connecting is lazy (retry_on_initial_connect): start-up never waits
    // for the server, calls fail within their timeouts while it is away.
    let client =
        futures::executor::block_on(opts.connect(url.trim())).map_err(|e| BuildError::Init {
            component: c.name().to_string(),
            message: e.to_string(),
        })?;
    Ok(Arc::new(JetStream {
        js: jetstream::new(client),
        stream_name: m.str("streamName"),
        durable_name: m.str("durableName"),
        deliver_policy,
        ack_wait: m.duration("ackWait", Duration::from_secs(30))?,
        max_deliver: m.int("maxDeliver", -1)?,
        max_ack_pending: m.int("maxAckPending", 1000)?,
        memory_storage: m.bool("memoryStorage", false)?,
        timeout: m.duration("timeout", Duration::from_secs(5))?,
        ready: Default::default(),
    }))
}

/// Stream and consumer names may not hold `.`, `*`, `>` or spaces.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl JetStream {
    async fn stream(&self, topic: &str) -> Result<stream::Stream, PubSubError> {
        let fut = async {
            match &self.stream_name {
                Some(name) => self.js.get_stream(name).await.map_err(backend),
                None => self
                    .js
                    .get_or_create_stream(stream::Config {
                        name: safe(topic),
                        subjects: vec![topic.to_string()],
                        storage: if self.memory_storage {
                            stream::StorageType::Memory
                        } else {
                            stream::StorageType::File
                        },
                        ..Default::default()
                    })
                    .await
                    .map_err(backend),
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| backend("timed out"))?
    }
}

#[async_trait]
impl PubSub for JetStream {
    fn features(&self) -> Features {
        Features {
            ordered: true,
            durable: true,
        }
    }

    /// A round trip to the server (PING/PONG), as daprd's Init connects: a
    /// server that is away fails start-up.
    async fn init(&self) -> Result<(), PubSubError> {
        tokio::time::timeout(self.timeout, self.js.client().flush())
            .await
            .map_err(|_| backend("no answer within the timeout"))?
            .map(|_| ())
            .map_err(backend)
    }

    async fn publish(&self, msg: &Message) -> Result<(), PubSubError> {
        let known = self.stream_name.is_some()
            || self
                .ready
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&msg.topic);
        if !known {
            self.stream(&msg.topic).await?;
            self.ready
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(msg.topic.clone());
        }
        let fut = async {
            self.js
                .publish(msg.topic.clone(), msg.data.clone())
                .await
                .map_err(backend)?
                .await
                .map_err(backend)
        };
        let r = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| backend("publish timed out"))
            .and_then(|r| r.map(|_| ()));
        if r.is_err() {
            // The stream may have been deleted: look it up again next time.
            self.ready
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&msg.topic);
        }
        r
    }

    async fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, PubSubError> {
        let stream = self.stream(&req.topic).await?;
        let durable = safe(&format!(
            "{}-{}",
            self.durable_name.as_deref().unwrap_or(&req.consumer_group),
            req.topic
        ));
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: req.topic.clone(),
                    deliver_policy: self.deliver_policy,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_deliver: self.max_deliver,
                    max_ack_pending: self.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(backend)?;
        let (stop_tx, mut stop) = watch::channel(false);
        let inflight = InFlight::new(req.max_in_flight);
        let topic = req.topic.clone();
        let task = tokio::spawn(async move {
            'outer: while !*stop.borrow() {
                let mut messages = match consumer.messages().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(%topic, "jetstream consume failed: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            _ = stop.changed() => break,
                        }
                    }
                };
                loop {
                    let next = tokio::select! {
                        n = messages.next() => n,
                        _ = stop.changed() => break 'outer,
                    };
                    let m = match next {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            tracing::warn!(%topic, "jetstream message error: {e}");
                            continue;
                        }
                        None => break,
                    };
                    let h = handler.clone();
                    let topic = topic.clone();
                    inflight
                        .spawn(async move {
                            let msg = Message {
                                topic,
                                data: m.payload.clone(),
                                metadata: Default::default(),
                            };
                            let r = match h.handle(msg).await {
                                Ack::Retry => m.ack_with(AckKind::Nak(None)).await,
                                _ => m.ack().await,
                            };
                            if let Err(e) = r {
                                // Not acked: redelivered after ackWait (at least once).
                                tracing::warn!("jetstream ack failed: {e}");
                            }
                        })
                        .await;
                }
            }
            inflight.drain().await;
        });
        Ok(Subscription::new(stop_tx, task))
    }
}
