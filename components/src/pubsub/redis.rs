//! `pubsub.redis`: Redis Streams, as Dapr's component. A topic is a stream
//! (`XADD`, trimmed to `maxLenApprox`); a consumer group per `consumerID`
//! (default: the app id) created at the stream's start, so messages
//! published before the first subscriber are not lost; each sidecar reads as
//! its own consumer, acknowledges with `XACK` only after the app answered
//! SUCCESS or DROP, and reclaims messages left pending longer than
//! `processingTimeout` (a crashed consumer's, or ones answered RETRY) every
//! `redeliverInterval` with `XAUTOCLAIM`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use spar_config::Component;
use tokio::sync::watch;

use super::{
    Ack, Features, Handler, InFlight, Message, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::per_thread::PerThread;
use crate::registry::{BuildContext, BuildError};
use crate::state::redis::{connection_url, duration_meta, field};

pub struct RedisPubSub {
    client: redis::Client,
    /// One connection per calling thread (`per_thread.rs`).
    conn: PerThread<ConnectionManager>,
    max_len: Option<u64>,
    processing_timeout: Duration,
    redeliver_interval: Duration,
    queue_depth: usize,
    concurrency: usize,
    timeout: Duration,
}

/// One connection manager per calling thread (`per_thread.rs`). Lazy: the
/// sidecar starts even while Redis is down, and each connects (and
/// reconnects after outages) on its own.
fn per_thread_manager(
    c: &spar_config::Component,
    client: redis::Client,
    config: ConnectionManagerConfig,
) -> Result<PerThread<ConnectionManager>, BuildError> {
    let first =
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(|e| {
            BuildError::Init {
                component: c.name().to_string(),
                message: e.to_string(),
            }
        })?;
    // A manager spawns its watcher task where it is made: only inside a
    // runtime.
    Ok(PerThread::new(first, move || {
        tokio::runtime::Handle::try_current().ok()?;
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).ok()
    }))
}

fn backend(e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Backend(format!("redis: {e}"))
}

pub fn build(c: &Component, _ctx: &BuildContext) -> Result<Arc<dyn PubSub>, BuildError> {
    let url = connection_url(c)?;
    let client =
        redis::Client::open(url.as_str()).map_err(|e| field(c, "redisHost", e.to_string()))?;
    let num = |name: &str, default: u64| -> Result<u64, BuildError> {
        match c.meta(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| field(c, name, format!("{v:?} must be a whole number"))),
        }
    };
    let timeout = duration_meta(c, "readTimeout", Duration::from_secs(3))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(duration_meta(
            c,
            "dialTimeout",
            Duration::from_secs(5),
        )?))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2);
    let conn = per_thread_manager(c, client.clone(), config)?;
    Ok(Arc::new(RedisPubSub {
        client,
        conn,
        max_len: match num("maxLenApprox", 0)? {
            0 => None,
            n => Some(n),
        },
        processing_timeout: duration_meta(c, "processingTimeout", Duration::from_secs(60))?,
        redeliver_interval: duration_meta(c, "redeliverInterval", Duration::from_secs(60))?,
        queue_depth: num("queueDepth", 100)?.max(1) as usize,
        concurrency: num("concurrency", 10)?.max(1) as usize,
        timeout,
    }))
}

fn message(topic: &str, e: &StreamId) -> Option<Message> {
    let data = match e.map.get("data")? {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        _ => return None,
    };
    let metadata = match e.map.get("metadata") {
        Some(Value::BulkString(b)) => serde_json::from_slice(b).unwrap_or_default(),
        _ => HashMap::new(),
    };
    Some(Message {
        topic: topic.to_string(),
        data: data.into(),
        metadata,
    })
}

/// Everything one subscription's tasks share.
struct Consumer {
    topic: String,
    group: String,
    name: String,
    handler: Arc<dyn Handler>,
    acks: ConnectionManager,
    inflight: InFlight,
}

impl Consumer {
    /// Hands one entry to the app (bounded by `InFlight`); acknowledges it
    /// unless the answer was RETRY. Entries that are not messages are
    /// acknowledged away.
    async fn dispatch(self: &Arc<Self>, e: StreamId) {
        let me = self.clone();
        self.inflight
            .spawn(async move {
                let ack = match message(&me.topic, &e) {
                    Some(m) => me.handler.handle(m).await,
                    None => Ack::Drop,
                };
                if ack != Ack::Retry {
                    let mut c = me.acks.clone();
                    let r: Result<i64, _> = redis::cmd("XACK")
                        .arg(&me.topic)
                        .arg(&me.group)
                        .arg(&e.id)
                        .query_async(&mut c)
                        .await;
                    if let Err(err) = r {
                        // Not acknowledged: it will be redelivered (at least once).
                        tracing::warn!(topic = %me.topic, id = %e.id, "XACK failed: {err}");
                    }
                }
            })
            .await;
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    fn features(&self) -> Features {
        Features {
            ordered: true,
            durable: true,
        }
    }

    async fn publish(&self, msg: &Message) -> Result<(), PubSubError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&msg.topic);
        if let Some(n) = self.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*").arg("data").arg(msg.data.as_ref());
        if !msg.metadata.is_empty() {
            cmd.arg("metadata")
                .arg(serde_json::to_vec(&msg.metadata).unwrap_or_default());
        }
        let mut c = self.conn.get();
        tokio::time::timeout(self.timeout, cmd.query_async::<String>(&mut c))
            .await
            .map_err(|_| backend("publish timed out"))?
            .map(|_| ())
            .map_err(backend)
    }

    async fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, PubSubError> {
        let mut c = self.conn.get();
        let created: Result<String, redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&req.topic)
            .arg(&req.consumer_group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        if let Err(e) = created {
            if !e.to_string().contains("BUSYGROUP") {
                return Err(backend(e));
            }
        }
        let consumer = Arc::new(Consumer {
            name: format!("{}-{}", req.consumer_group, uuid::Uuid::new_v4().simple()),
            topic: req.topic.clone(),
            group: req.consumer_group.clone(),
            handler,
            acks: self.conn.get(),
            inflight: InFlight::new(req.max_in_flight.min(self.concurrency)),
        });
        let (stop_tx, stop) = watch::channel(false);
        let reader = tokio::spawn(read_loop(
            self.client.clone(),
            consumer.clone(),
            self.queue_depth,
            stop.clone(),
        ));
        let reclaimer = (!self.redeliver_interval.is_zero()).then(|| {
            tokio::spawn(reclaim_loop(
                self.conn.get(),
                consumer.clone(),
                self.redeliver_interval,
                self.processing_timeout,
                self.queue_depth,
                stop.clone(),
            ))
        });
        let task = tokio::spawn(async move {
            let _ = reader.await;
            if let Some(r) = reclaimer {
                let _ = r.await;
            }
            consumer.inflight.drain().await;
        });
        Ok(Subscription::new(stop_tx, task))
    }
}

/// `XREADGROUP … BLOCK` on a connection of its own (a blocked connection
/// would stall every other command sharing it).
async fn read_loop(
    client: redis::Client,
    c: Arc<Consumer>,
    depth: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    while !*stop.borrow() {
        let mut cn = match conn.take() {
            Some(cn) => cn,
            None => match tokio::time::timeout(
                Duration::from_secs(5),
                client.get_multiplexed_async_connection(),
            )
            .await
            {
                Ok(Ok(cn)) => cn,
                _ => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            },
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&c.group)
            .arg(&c.name)
            .arg("COUNT")
            .arg(depth)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&c.topic)
            .arg(">");
        let read = cmd.query_async::<Option<StreamReadReply>>(&mut cn);
        let reply = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), read) => r,
            _ = stop.changed() => break,
        };
        match reply {
            Ok(Ok(reply)) => {
                conn = Some(cn);
                for key in reply.map(|r| r.keys).unwrap_or_default() {
                    for e in key.ids {
                        c.dispatch(e).await;
                    }
                }
            }
            Ok(Err(e)) => {
                if e.to_string().contains("NOGROUP") {
                    // The stream was deleted: recreate the group and go on.
                    let _: Result<String, _> = redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(&c.topic)
                        .arg(&c.group)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async(&mut cn)
                        .await;
                    conn = Some(cn);
                } else {
                    tracing::warn!(topic = %c.topic, "redis pubsub read failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(_) => tracing::warn!(topic = %c.topic, "redis pubsub read timed out; reconnecting"),
        }
    }
}

/// Takes over entries pending longer than `min_idle` (from a consumer that
/// died, or answered RETRY) and delivers them again.
async fn reclaim_loop(
    mut conn: ConnectionManager,
    c: Arc<Consumer>,
    every: Duration,
    min_idle: Duration,
    depth: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let mut start = "0-0".to_string();
        loop {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&c.topic)
                .arg(&c.group)
                .arg(&c.name)
                .arg(min_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(depth);
            let r = cmd.query_async::<StreamAutoClaimReply>(&mut conn);
            match tokio::time::timeout(Duration::from_secs(5), r).await {
                Ok(Ok(reply)) => {
                    for e in reply.claimed {
                        c.dispatch(e).await;
                    }
                    if reply.next_stream_id == "0-0" || *stop.borrow() {
                        break;
                    }
                    start = reply.next_stream_id;
                }
                Ok(Err(e)) => {
                    tracing::warn!(topic = %c.topic, "redis pubsub reclaim failed: {e}");
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
