//! `pubsub.redis`: Redis Streams, as Dapr's component. A topic is a stream
//! (`XADD`, trimmed to `maxLenApprox`); a consumer group per `consumerID`
//! (default: the app id) created at the stream's start, so messages
//! published before the first subscriber are not lost; each sidecar reads as
//! its own consumer, acknowledges with `XACK` only after the app answered
//! SUCCESS or DROP, and reclaims messages left pending longer than
//! `processingTimeout` (a crashed consumer's, or ones answered RETRY) every
//! `redeliverInterval` with `XAUTOCLAIM`.
//!
//! The blocking `XREADGROUP` runs on a connection of its own from spar's
//! RESP2 client (`redis_wire::Dedicated`), waited on for as long as the
//! server blocks plus `readTimeout`: Redis counts the entries a read returns
//! as delivered to this consumer, so a read the client gave up on while the
//! server completed it would leave them pending until `processingTimeout`.
//! Closing a subscription unblocks its read (`CLIENT UNBLOCK`) and still
//! dispatches what that read returned.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId};
use redis::Value;
use spar_config::Component;
use tokio::sync::watch;

use super::{
    Ack, Features, Handler, InFlight, Message, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::per_thread::PerThread;
use crate::redis_wire::{self, Commands, Dedicated, Limits, Reply, Wire};

pub struct RedisPubSub {
    /// Blocking reads, each subscription on a dedicated connection.
    wire: Arc<Wire>,
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
    let m = Meta::new(c);
    let url = redis_wire::connection_url(c)?;
    let client =
        redis::Client::open(url.as_str()).map_err(|e| m.error("redisHost", e.to_string()))?;
    // Publishing retries through the manager; the stream reads do not.
    let limits = Limits {
        retries: 0,
        ..redis_wire::limits(c)?
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(limits.dial))
        .set_response_timeout(Some(limits.read))
        .set_number_of_retries(2);
    let conn = per_thread_manager(c, client, config)?;
    let wire = Wire::new(redis_wire::endpoint(c)?, limits).map_err(|e| m.error("redisHost", e))?;
    Ok(Arc::new(RedisPubSub {
        wire: Arc::new(wire),
        conn,
        max_len: Some(m.int::<u64>("maxLenApprox", 0)?).filter(|n| *n > 0),
        processing_timeout: m.duration("processingTimeout", Duration::from_secs(60))?,
        redeliver_interval: m.duration("redeliverInterval", Duration::from_secs(60))?,
        queue_depth: m.int::<usize>("queueDepth", 100)?.max(1),
        concurrency: m.int::<usize>("concurrency", 10)?.max(1),
        timeout: limits.read,
    }))
}

/// An entry as the reader and the reclaimer hand it over: its id, and the
/// message when the entry is one (else it is acknowledged away).
#[derive(Debug)]
struct Entry {
    id: String,
    msg: Option<Message>,
}

fn message(topic: &str, data: Vec<u8>, metadata: Option<&[u8]>) -> Message {
    Message {
        topic: topic.to_string(),
        data: data.into(),
        metadata: metadata
            .and_then(|m| serde_json::from_slice(m).ok())
            .unwrap_or_default(),
    }
}

/// An entry of an `XAUTOCLAIM` reply (the `redis` crate's types).
fn claimed(topic: &str, e: StreamId) -> Entry {
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    };
    let data = e.map.get("data").and_then(bytes);
    let meta = e.map.get("metadata").and_then(bytes);
    Entry {
        msg: data.map(|d| message(topic, d, meta.as_deref())),
        id: e.id,
    }
}

/// The entries of an `XREADGROUP` reply on one stream: nil when the block
/// ended with nothing, else `[[stream, [[id, [field, value, …]], …]]]`.
fn read_entries(topic: &str, reply: Reply) -> Result<Vec<Entry>, String> {
    let streams = match reply {
        Reply::Nil => return Ok(Vec::new()),
        Reply::Array(a) => a,
        Reply::Error(e) => return Err(e),
        other => return Err(format!("unexpected XREADGROUP reply {other:?}")),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Reply::Array(mut pair) = stream else {
            return Err("unexpected XREADGROUP stream".into());
        };
        let Some(Reply::Array(entries)) = pair.pop() else {
            return Err("unexpected XREADGROUP stream".into());
        };
        for entry in entries {
            let Reply::Array(mut parts) = entry else {
                return Err("unexpected XREADGROUP entry".into());
            };
            let fields = if parts.len() == 2 { parts.pop() } else { None };
            let id = match parts.pop() {
                Some(Reply::Bulk(id)) => String::from_utf8_lossy(&id).into_owned(),
                _ => return Err("XREADGROUP entry without an id".into()),
            };
            let (mut data, mut meta) = (None, None);
            if let Some(Reply::Array(kv)) = fields {
                let mut kv = kv.into_iter();
                while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                    match (k, v) {
                        (Reply::Bulk(k), Reply::Bulk(v)) if k == b"data" => data = Some(v),
                        (Reply::Bulk(k), Reply::Bulk(v)) if k == b"metadata" => meta = Some(v),
                        _ => {}
                    }
                }
            }
            out.push(Entry {
                msg: data.map(|d| message(topic, d, meta.as_deref())),
                id,
            });
        }
    }
    Ok(out)
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
    async fn dispatch(self: &Arc<Self>, e: Entry) {
        let me = self.clone();
        self.inflight
            .spawn(async move {
                let ack = match e.msg {
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

    /// `PING`, as daprd's Init does.
    async fn init(&self) -> Result<(), PubSubError> {
        let mut c = self.conn.get();
        tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await
        .map_err(|_| backend("PING timed out"))?
        .map(|_| ())
        .map_err(backend)
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
            self.wire.clone(),
            consumer.clone(),
            Reads {
                depth: self.queue_depth,
                block: self.timeout.clamp(MIN_BLOCK, MAX_BLOCK),
                grace: self.timeout.max(Duration::from_secs(1)),
            },
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

/// How long one `XREADGROUP` blocks on the server: `readTimeout`, within
/// these bounds (an idle subscription wakes once per block).
const MIN_BLOCK: Duration = Duration::from_millis(100);
const MAX_BLOCK: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Reads {
    /// Entries per read (`queueDepth`).
    depth: usize,
    /// The server-side block.
    block: Duration,
    /// Waited for a reply beyond the block before the connection is taken
    /// for dead (`readTimeout`, at least 1 s).
    grace: Duration,
}

/// The read connection and its `CLIENT ID` (to unblock it on close;
/// `None` where the server refuses `CLIENT`, e.g. by ACL: a close then
/// waits for the block to end).
struct Reader {
    conn: Dedicated,
    id: Option<i64>,
}

async fn open_reader(wire: &Wire) -> Result<Reader, String> {
    let mut conn = wire.dedicated().await.map_err(|e| e.to_string())?;
    let mut cmd = Commands::default();
    cmd.push(&["CLIENT", "ID"]);
    let id = tokio::time::timeout(Duration::from_secs(5), conn.exchange(&cmd))
        .await
        .map_err(|_| "no answer to CLIENT ID".to_string())?
        .map_err(|e| e.to_string())?;
    match id.into_iter().next() {
        Some(Reply::Int(id)) => Ok(Reader { conn, id: Some(id) }),
        Some(Reply::Error(e)) => {
            tracing::debug!("CLIENT ID refused ({e}): closing waits for the block to end");
            Ok(Reader { conn, id: None })
        }
        other => Err(format!("unexpected CLIENT ID reply {other:?}")),
    }
}

/// Returns once the subscription closes (holding no borrow of the flag).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sends `CLIENT UNBLOCK` for the reader until its read returns (the
/// caller stops polling this then); without an id, just waits.
async fn unblock(acks: &ConnectionManager, id: Option<i64>) -> std::convert::Infallible {
    let Some(id) = id else {
        return std::future::pending().await;
    };
    loop {
        let mut c = acks.clone();
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNBLOCK").arg(id);
        let _ = tokio::time::timeout(Duration::from_secs(1), cmd.query_async::<i64>(&mut c)).await;
        // Sent before the read blocked (or lost): try again shortly.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `XREADGROUP … BLOCK` in a loop on a dedicated connection. A read is
/// never abandoned while the connection lives: on close the server is told
/// to end the block, and what the read returned is still dispatched.
async fn read_loop(wire: Arc<Wire>, c: Arc<Consumer>, r: Reads, mut stop: watch::Receiver<bool>) {
    let mut reader: Option<Reader> = None;
    // One warning per outage, not one per attempt.
    let mut failing = false;
    let mut cmd = Commands::default();
    cmd.push(&[
        "XREADGROUP",
        "GROUP",
        &c.group,
        &c.name,
        "COUNT",
        &r.depth.to_string(),
        "BLOCK",
        &r.block.as_millis().to_string(),
        "STREAMS",
        &c.topic,
        ">",
    ]);
    while !*stop.borrow() {
        let mut rd = match reader.take() {
            Some(rd) => rd,
            None => match open_reader(&wire).await {
                Ok(rd) => rd,
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(topic = %c.topic, "redis pubsub cannot read: {e}; retrying every second");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            },
        };
        let id = rd.id;
        let reply = {
            let read = tokio::time::timeout(r.block + r.grace, rd.conn.exchange(&cmd));
            tokio::pin!(read);
            tokio::select! {
                reply = &mut read => reply,
                _ = stopped(&mut stop) => {
                    // Closing: end the block now, and keep the read's answer.
                    tokio::select! {
                        reply = &mut read => reply,
                        never = unblock(&c.acks, id) => match never {},
                    }
                }
            }
        };
        let reply = match reply {
            Ok(Ok(mut replies)) => replies.pop().unwrap_or(Reply::Nil),
            Ok(Err(e)) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(topic = %c.topic, "redis pubsub connection lost: {e}; reconnecting");
                }
                continue;
            }
            Err(_) => {
                // No reply long after the block ended: the connection is dead.
                failing = true;
                tracing::warn!(topic = %c.topic, "redis pubsub: no reply within {:?}; reconnecting", r.block + r.grace);
                continue;
            }
        };
        match read_entries(&c.topic, reply) {
            Ok(entries) => {
                reader = Some(rd);
                if std::mem::take(&mut failing) {
                    tracing::info!(topic = %c.topic, "redis pubsub reading again");
                }
                for e in entries {
                    c.dispatch(e).await;
                }
            }
            Err(e) if e.starts_with("NOGROUP") => {
                // The stream or group was deleted: recreate it and go on.
                tracing::warn!(topic = %c.topic, group = %c.group, "redis pubsub: consumer group gone; recreating it");
                let mut create = Commands::default();
                create.push(&["XGROUP", "CREATE", &c.topic, &c.group, "0", "MKSTREAM"]);
                let done = tokio::time::timeout(r.grace, rd.conn.exchange(&create)).await;
                if matches!(done, Ok(Ok(_))) {
                    reader = Some(rd);
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(topic = %c.topic, "redis pubsub read refused: {e}; retrying every second");
                }
                reader = Some(rd);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
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
                        c.dispatch(claimed(&c.topic, e)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn xreadgroup_replies() {
        assert!(read_entries("t", Reply::Nil).unwrap().is_empty());
        let reply = Reply::Array(vec![Reply::Array(vec![
            bulk("t"),
            Reply::Array(vec![
                Reply::Array(vec![
                    bulk("1-0"),
                    Reply::Array(vec![
                        bulk("data"),
                        bulk("hello"),
                        bulk("metadata"),
                        bulk(r#"{"k":"v"}"#),
                    ]),
                ]),
                // Not a message (no data field): acknowledged away.
                Reply::Array(vec![bulk("2-0"), Reply::Array(vec![bulk("x"), bulk("y")])]),
                // Deleted meanwhile: fields are nil.
                Reply::Array(vec![bulk("3-0"), Reply::Nil]),
            ]),
        ])]);
        let e = read_entries("t", reply).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].id, "1-0");
        let m = e[0].msg.as_ref().unwrap();
        assert_eq!((m.topic.as_str(), m.data.as_ref()), ("t", &b"hello"[..]));
        assert_eq!(m.metadata.get("k").map(String::as_str), Some("v"));
        assert!(e[1].msg.is_none() && e[2].msg.is_none());
        assert_eq!(e[2].id, "3-0");
        assert!(
            read_entries("t", Reply::Error("NOGROUP no such key".into()))
                .unwrap_err()
                .starts_with("NOGROUP")
        );
        for bad in [
            Reply::Int(1),
            Reply::Array(vec![Reply::Int(1)]),
            Reply::Array(vec![Reply::Array(vec![
                bulk("t"),
                Reply::Array(vec![Reply::Int(3)]),
            ])]),
        ] {
            assert!(read_entries("t", bad).is_err());
        }
    }
}
