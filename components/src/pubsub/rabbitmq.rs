//! `pubsub.rabbitmq`: RabbitMQ (AMQP 0-9-1), as Dapr's component. A topic is
//! an exchange (`exchangeKind`, fanout by default); each consumer group
//! (`consumerID`, default the app id) has its own queue `{group}-{topic}`
//! bound to it, so replicas of one app compete for its messages and
//! different apps each get all of them. Deliveries are acknowledged only
//! after the handler answered SUCCESS or DROP; RETRY is a nack that puts the
//! message back on the queue when `requeueInFailure` is true (else RabbitMQ
//! discards it, as with daprd). A consumer whose connection dies leaves its
//! unacknowledged messages to RabbitMQ, which delivers them again.
//!
//! Differences from daprd, on purpose: publishing always waits for the
//! broker's confirm (at-least-once from the publisher too), and every broker
//! call is bounded by `timeout`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use spar_config::Component;
use tokio::sync::{watch, Mutex};

use super::{
    Ack, Features, Handler, InFlight, Message, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

/// Options read from the component's metadata.
#[derive(Debug, Clone)]
struct Options {
    uri: String,
    durable: bool,
    delete_when_unused: bool,
    persistent: bool,
    requeue_in_failure: bool,
    prefetch: u16,
    reconnect_wait: Duration,
    exchange_kind: ExchangeKind,
    max_len: Option<u64>,
    max_len_bytes: Option<u64>,
    ttl: Option<Duration>,
    client_name: String,
    timeout: Duration,
    /// Queue mode (the `bindings.rabbitmq` flavour, daprd's binding): one
    /// named queue on the default exchange, no exchange of its own, no
    /// consumer-group queue; the topic is the queue's name.
    queue: Option<String>,
    max_priority: Option<u8>,
}

pub struct RabbitMq {
    o: Options,
    /// The publishing connection and its confirm-mode channel, opened on
    /// first use and again after a failure.
    publisher: Mutex<Option<(Connection, Channel)>>,
}

fn backend(e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Backend(format!("rabbitmq: {e}"))
}

fn options(c: &Component) -> Result<Options, BuildError> {
    let m = Meta::new(c);
    // `connectionString` (amqp[s]://user:pass@host:port/vhost); else Dapr's
    // `host`, else the parts.
    let uri = match m
        .str("connectionString")
        .or_else(|| m.str("host"))
        .filter(|u| !u.trim().is_empty())
    {
        Some(u) => u.trim().to_string(),
        None => {
            let host = m.str("hostname").ok_or_else(|| {
                m.error(
                    "connectionString",
                    "is required (amqp://user:password@host:5672), or hostname",
                )
            })?;
            let proto = m.str_or("protocol", "amqp");
            let user = m.str_or("username", "guest");
            let pass = m.str_or("password", "guest");
            format!("{proto}://{user}:{pass}@{host}")
        }
    };
    if !(uri.starts_with("amqp://") || uri.starts_with("amqps://")) {
        return Err(m.error("connectionString", "must start with amqp:// or amqps://"));
    }
    let exchange_kind = match m.one_of(
        "exchangeKind",
        &["fanout", "topic", "direct", "headers"],
        "fanout",
    )? {
        "topic" => ExchangeKind::Topic,
        "direct" => ExchangeKind::Direct,
        "headers" => ExchangeKind::Headers,
        _ => ExchangeKind::Fanout,
    };
    let persistent = m.one_of("deliveryMode", &["0", "1", "2"], "0")? == "2";
    let prefetch = m
        .int::<u16>("prefetchCount", 0)
        .map_err(|_| m.error("prefetchCount", "must be a whole number up to 65535"))?;
    Ok(Options {
        uri,
        // daprd's defaults: non-durable queues deleted when unused.
        durable: m.bool("durable", false)?,
        delete_when_unused: m.bool("deletedWhenUnused", true)?,
        persistent,
        requeue_in_failure: m.bool("requeueInFailure", false)?,
        prefetch,
        reconnect_wait: m.duration("reconnectWait", Duration::from_secs(3))?,
        exchange_kind,
        max_len: m.int_opt("maxLen")?,
        max_len_bytes: m.int_opt("maxLenBytes")?,
        ttl: m.int_opt("ttlInSeconds")?.map(Duration::from_secs),
        client_name: m.str_or("clientName", "spar"),
        timeout: m.duration("timeout", Duration::from_secs(5))?,
        queue: None,
        max_priority: None,
    })
}

/// The queue-mode broker behind `bindings.rabbitmq`: `queueName`
/// (required) on the default exchange; `deleteWhenUnused` (default
/// false), `durable`, `ttlInSeconds`, `maxPriority`, `prefetchCount`,
/// `deliveryMode`, and `requeueInFailure` (default true: an event the app
/// refused is delivered again).
pub fn build_queue(c: &Component, _ctx: &BuildContext) -> Result<Arc<dyn PubSub>, BuildError> {
    let m = Meta::new(c);
    let mut o = options(c)?;
    o.queue = Some(m.required("queueName")?);
    o.delete_when_unused = m.bool("deleteWhenUnused", false)?;
    o.requeue_in_failure = m.bool("requeueInFailure", true)?;
    o.max_priority = m.int_opt("maxPriority")?;
    Ok(Arc::new(RabbitMq {
        o,
        publisher: Mutex::new(None),
    }))
}

pub fn build(c: &Component, _ctx: &BuildContext) -> Result<Arc<dyn PubSub>, BuildError> {
    Ok(Arc::new(RabbitMq {
        o: options(c)?,
        publisher: Mutex::new(None),
    }))
}

async fn bounded<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, PubSubError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| backend(format!("{what} timed out")))?
        .map_err(|e| backend(format!("{what}: {e}")))
}

impl Options {
    async fn connect(&self) -> Result<Connection, PubSubError> {
        let props =
            ConnectionProperties::default().with_connection_name(self.client_name.as_str().into());
        bounded(
            self.timeout,
            "connect",
            Connection::connect(&self.uri, props),
        )
        .await
    }

    async fn exchange(&self, ch: &Channel, topic: &str) -> Result<(), PubSubError> {
        if self.queue.is_some() {
            return Ok(());
        }
        let opts = ExchangeDeclareOptions {
            durable: self.durable,
            auto_delete: self.delete_when_unused,
            ..Default::default()
        };
        bounded(
            self.timeout,
            "exchange declare",
            ch.exchange_declare(
                topic.into(),
                self.exchange_kind.clone(),
                opts,
                FieldTable::default(),
            ),
        )
        .await
    }

    fn queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if let Some(n) = self.max_len {
            args.insert("x-max-length".into(), AMQPValue::LongLongInt(n as i64));
        }
        if let Some(n) = self.max_len_bytes {
            args.insert(
                "x-max-length-bytes".into(),
                AMQPValue::LongLongInt(n as i64),
            );
        }
        if let Some(t) = self.ttl {
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(t.as_millis() as i64),
            );
        }
        if let Some(p) = self.max_priority {
            args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(p));
        }
        args
    }

    /// Queue mode: declares the queue (same options on both sides, or
    /// RabbitMQ refuses the second declaration).
    async fn declare_queue(&self, ch: &Channel, queue: &str) -> Result<(), PubSubError> {
        let qopts = QueueDeclareOptions {
            durable: self.durable,
            auto_delete: self.delete_when_unused,
            ..Default::default()
        };
        bounded(
            self.timeout,
            "queue declare",
            ch.queue_declare(queue.into(), qopts, self.queue_args()),
        )
        .await
        .map(|_| ())
    }
}

/// Metadata travels as AMQP headers (strings), `contentType` also as the
/// message's content type.
fn properties(o: &Options, msg: &Message) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &msg.metadata {
        headers.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_bytes())),
        );
    }
    let mut p = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(if o.persistent { 2 } else { 1 });
    if let Some(ct) = msg.metadata.get("contentType") {
        p = p.with_content_type(ct.as_str().into());
    }
    if let Some(pr) = msg
        .metadata
        .get("priority")
        .and_then(|p| p.parse::<u8>().ok())
    {
        p = p.with_priority(pr);
    }
    if let Some(ttl) = msg
        .metadata
        .get("ttlInSeconds")
        .and_then(|t| t.parse::<u64>().ok())
    {
        p = p.with_expiration((ttl * 1000).to_string().into());
    }
    p
}

fn metadata_of(p: &BasicProperties) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::new();
    if let Some(h) = p.headers() {
        for (k, v) in h.inner() {
            let text = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                other => format!("{other:?}"),
            };
            m.insert(k.as_str().to_string(), text);
        }
    }
    m
}

impl RabbitMq {
    /// The publishing channel, connecting when there is none or it broke.
    async fn publish_channel(&self) -> Result<Channel, PubSubError> {
        let mut guard = self.publisher.lock().await;
        if let Some((conn, ch)) = guard.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *guard = None;
        let conn = self.o.connect().await?;
        let ch = bounded(self.o.timeout, "channel", conn.create_channel()).await?;
        bounded(
            self.o.timeout,
            "confirm select",
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        if let Some(q) = &self.o.queue {
            self.o.declare_queue(&ch, q).await?;
        }
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn try_publish(&self, msg: &Message) -> Result<(), PubSubError> {
        let ch = self.publish_channel().await?;
        self.o.exchange(&ch, &msg.topic).await?;
        // Queue mode: the default exchange routes by the queue's name.
        let (exchange, routing_key) = match &self.o.queue {
            Some(_) => (String::new(), msg.topic.clone()),
            None => (
                msg.topic.clone(),
                msg.metadata.get("routingKey").cloned().unwrap_or_default(),
            ),
        };
        let o = &self.o;
        let confirm = async {
            let c = ch
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &msg.data,
                    properties(o, msg),
                )
                .await?;
            c.await
        };
        let confirmation = bounded(o.timeout, "publish", confirm).await?;
        if confirmation.is_nack() {
            return Err(backend("the broker refused the message (nack)"));
        }
        Ok(())
    }
}

#[async_trait]
impl PubSub for RabbitMq {
    fn features(&self) -> Features {
        Features {
            ordered: true,
            durable: self.o.durable && !self.o.delete_when_unused && self.o.persistent,
        }
    }

    /// Opens the publishing connection, as daprd's Init connects.
    async fn init(&self) -> Result<(), PubSubError> {
        self.publish_channel().await.map(|_| ())
    }

    async fn publish(&self, msg: &Message) -> Result<(), PubSubError> {
        if msg.topic.is_empty() {
            return Err(PubSubError::Invalid("topic is empty".into()));
        }
        let r = self.try_publish(msg).await;
        if r.is_err() {
            // Open a fresh connection next time.
            *self.publisher.lock().await = None;
        }
        r
    }

    async fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, PubSubError> {
        let (stop_tx, stop) = watch::channel(false);
        let queue = match &self.o.queue {
            Some(_) => req.topic.clone(),
            None => format!("{}-{}", req.consumer_group, req.topic),
        };
        let prefetch = if self.o.prefetch > 0 {
            self.o.prefetch
        } else {
            req.max_in_flight.clamp(1, u16::MAX as usize) as u16
        };
        let sub = Consumer {
            o: self.o.clone(),
            topic: req.topic,
            queue,
            prefetch,
            inflight: InFlight::new(req.max_in_flight),
            handler,
        };
        // The first attach happens here so that a subscription whose queue
        // cannot be declared fails visibly; later ones retry in the loop.
        let first = sub.attach().await;
        if let Err(e) = &first {
            tracing::warn!(topic = %sub.topic, "rabbitmq: {e}; retrying every {:?}", sub.o.reconnect_wait);
        }
        let task = tokio::spawn(sub.run(first.ok(), stop));
        Ok(Subscription::new(stop_tx, task))
    }
}

/// One subscription: (re)connects, declares, consumes.
struct Consumer {
    o: Options,
    topic: String,
    queue: String,
    prefetch: u16,
    inflight: InFlight,
    handler: Arc<dyn Handler>,
}

type Attached = (Connection, lapin::Consumer);

impl Consumer {
    async fn attach(&self) -> Result<Attached, PubSubError> {
        let o = &self.o;
        let conn = o.connect().await?;
        let ch = bounded(o.timeout, "channel", conn.create_channel()).await?;
        bounded(
            o.timeout,
            "qos",
            ch.basic_qos(self.prefetch, BasicQosOptions::default()),
        )
        .await?;
        o.exchange(&ch, &self.topic).await?;
        o.declare_queue(&ch, &self.queue).await?;
        if o.queue.is_none() {
            bounded(
                o.timeout,
                "queue bind",
                ch.queue_bind(
                    self.queue.as_str().into(),
                    self.topic.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        }
        let consumer = bounded(
            o.timeout,
            "consume",
            ch.basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok((conn, consumer))
    }

    async fn run(self, mut attached: Option<Attached>, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        while !*stop.borrow() {
            let (conn, mut consumer) = match attached.take() {
                Some(a) => a,
                None => match me.attach().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(topic = %me.topic, "rabbitmq: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(me.o.reconnect_wait) => continue,
                            _ = stop.changed() => break,
                        }
                    }
                },
            };
            loop {
                let next = tokio::select! {
                    n = consumer.next() => n,
                    _ = stop.changed() => break,
                };
                let d = match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        tracing::warn!(topic = %me.topic, "rabbitmq consumer: {e}");
                        break;
                    }
                    None => break,
                };
                let c = me.clone();
                me.inflight
                    .spawn(async move {
                        let msg = Message {
                            topic: c.topic.clone(),
                            metadata: metadata_of(&d.properties),
                            data: d.data.clone().into(),
                        };
                        let r = match c.handler.handle(msg).await {
                            Ack::Retry => {
                                d.nack(BasicNackOptions {
                                    requeue: c.o.requeue_in_failure,
                                    ..Default::default()
                                })
                                .await
                            }
                            _ => d.ack(BasicAckOptions::default()).await,
                        };
                        if let Err(e) = r {
                            // Not acknowledged: RabbitMQ redelivers it once
                            // this channel is gone (at least once).
                            tracing::warn!("rabbitmq ack failed: {e}");
                        }
                    })
                    .await;
            }
            // Deliveries in flight finish (and ack) before the connection
            // closes; whatever is left unacknowledged RabbitMQ requeues.
            me.inflight.drain().await;
            let _ = conn.close(200, "bye".into()).await;
            if !*stop.borrow() {
                tokio::select! {
                    _ = tokio::time::sleep(me.o.reconnect_wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        me.inflight.drain().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(meta: &[(&str, &str)]) -> Component {
        super::super::test_component("pubsub.rabbitmq", meta)
    }

    #[test]
    fn metadata() {
        let o = options(&comp(&[(
            "connectionString",
            "amqp://guest:guest@localhost:5672",
        )]))
        .unwrap();
        assert!(!o.durable && o.delete_when_unused && !o.persistent && !o.requeue_in_failure);
        assert_eq!(o.exchange_kind, ExchangeKind::Fanout);
        let o = options(&comp(&[
            ("hostname", "localhost:5672"),
            ("durable", "true"),
            ("deliveryMode", "2"),
            ("exchangeKind", "topic"),
            ("maxLen", "10"),
        ]))
        .unwrap();
        assert_eq!(o.uri, "amqp://guest:guest@localhost:5672");
        assert!(o.durable && o.persistent && o.max_len == Some(10));
        for bad in [
            vec![("connectionString", "http://x")],
            vec![("connectionString", "amqp://x"), ("durable", "maybe")],
            vec![("connectionString", "amqp://x"), ("deliveryMode", "3")],
            vec![("connectionString", "amqp://x"), ("exchangeKind", "star")],
            vec![("connectionString", "amqp://x"), ("prefetchCount", "-1")],
            vec![],
        ] {
            assert!(options(&comp(&bad)).is_err(), "{bad:?}");
        }
    }
}
