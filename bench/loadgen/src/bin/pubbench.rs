//! spar-pubbench: publish-to-delivery throughput and latency of a pub/sub
//! path, measured in one process that both publishes and receives, so send
//! and receive times come from one clock.
//!
//!   spar-pubbench spar SIDECAR_URL PUBSUB TOPIC --listen PORT [opts]
//!       publishes over spar's HTTP API; receives as the subscribing app
//!       (an HTTP server on PORT that spar delivers CloudEvents to).
//!   spar-pubbench redis REDIS_URL STREAM [opts]
//!       the broker's own client: XADD, and XREADGROUP + XACK per message
//!       in a consumer group (what an at-least-once subscriber does).
//!   spar-pubbench jetstream NATS_URL SUBJECT [opts]
//!       the broker's own client: JetStream publish (awaiting the ack) and
//!       a durable pull consumer acknowledging each message.
//!   spar-pubbench rabbitmq AMQP_URL EXCHANGE [opts]
//!       lapin: publisher confirms; a durable queue bound to a fanout
//!       exchange, manual ack per message, prefetch = --inflight.
//!   spar-pubbench mqtt HOST:PORT TOPIC [opts]
//!       rumqttc: QoS 1 publish awaiting PUBACK; a QoS 1 subscriber acking
//!       each message.
//!   spar-pubbench binding-mqtt HOST:PORT TOPIC --listen PORT [opts]
//!   spar-pubbench binding-rabbitmq AMQP_URL QUEUE --listen PORT [opts]
//!       spar as the *input binding* path: publishes with the broker's own
//!       client (rumqttc QoS 1 to the binding's topic; lapin confirmed
//!       persistent publish to the binding's queue on the default exchange)
//!       and is the app spar POSTs each event to (`/{binding}`, the body the
//!       raw message). Waits until a probe message reaches the app before
//!       measuring.
//!
//! opts: --rate R (messages/s, open loop; 0 = flat out: as fast as
//! --inflight concurrent publishes go while at most --window messages are
//! published but not yet delivered, so the figure is the pipeline's
//! sustained rate, not a queue filling up) --seconds S --inflight N
//! --window W --size BYTES --tail S (wait for stragglers: until
//! nothing arrived for S seconds, default 3).
//! Prints one line: `sent delivered msgs_per_s p50_ms p90_ms p99_ms max_ms`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

struct Opts {
    rate: f64,
    seconds: f64,
    inflight: usize,
    window: usize,
    size: usize,
    tail: f64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// `{"t":<send time µs>,"i":<seq>,"p":"xxxx"}`.
fn payload(i: u64, size: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"t":{},"i":{i},"p":"{}"}}"#,
        now_us(),
        "x".repeat(size)
    ))
}

/// Receive times, as latencies in µs; each delivery frees a window slot.
#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u32>>>, Arc<tokio::sync::Semaphore>);

impl Default for Sink {
    fn default() -> Self {
        Sink(Arc::default(), Arc::new(tokio::sync::Semaphore::new(0)))
    }
}

impl Sink {
    /// Records a message given its JSON (the payload itself or a
    /// CloudEvent around it).
    fn record(&self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let d = v.get("data").unwrap_or(&v);
        if let Some(t) = d.get("t").and_then(|t| t.as_u64()) {
            let lat = now_us().saturating_sub(t).min(u32::MAX as u64) as u32;
            self.0.lock().unwrap().push(lat);
            self.1.add_permits(1);
        }
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

type Publish = Arc<
    dyn Fn(Bytes) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync,
>;

/// Publishes for `seconds` at `rate` (or flat out), at most `inflight` at
/// once; returns how many were sent and when the first left.
async fn drive(o: &Opts, publish: Publish, sink: &Sink) -> (u64, Instant) {
    let sem = Arc::new(tokio::sync::Semaphore::new(o.inflight.max(1)));
    let window = sink.1.clone();
    window.add_permits(o.window.max(1));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.seconds);
    let mut i = 0u64;
    let mut failed = 0u64;
    let fails = Arc::new(std::sync::atomic::AtomicU64::new(0));
    while Instant::now() < end {
        if o.rate > 0.0 {
            let at = start + Duration::from_secs_f64(i as f64 / o.rate);
            if at >= end {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        if o.rate <= 0.0 {
            // Flat out: wait for a delivery when the window is full.
            match tokio::time::timeout_at(end.into(), window.acquire()).await {
                Ok(Ok(p)) => p.forget(),
                _ => break,
            }
        }
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (p, f) = (publish.clone(), fails.clone());
        let body = payload(i, o.size);
        tokio::spawn(async move {
            if !p(body).await {
                f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(permit);
        });
        i += 1;
    }
    let _ = sem.acquire_many(o.inflight.max(1) as u32).await;
    failed += fails.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        eprintln!("spar-pubbench: {failed} publishes failed");
    }
    (i - failed, start)
}

async fn report(o: &Opts, sent: u64, start: Instant, sink: &Sink) {
    // Wait for the tail: until everything arrived or nothing came for
    // --tail seconds (default 3).
    let (mut last, mut at) = (sink.len(), Instant::now());
    while (sink.len() as u64) < sent && at.elapsed() < Duration::from_secs_f64(o.tail) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if sink.len() != last {
            (last, at) = (sink.len(), Instant::now());
        }
    }
    let took = start.elapsed() - at.elapsed().min(start.elapsed());
    let mut l = sink.0.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| {
        if l.is_empty() {
            return 0.0;
        }
        l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1] as f64 / 1000.0
    };
    println!(
        "{sent} {} {:.0} {:.3} {:.3} {:.3} {:.3}",
        l.len(),
        l.len() as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        l.last().map_or(0.0, |m| *m as f64 / 1000.0)
    );
}

// ---------------------------------------------------------------- spar

/// Requests the app server has received, measured or not (the input
/// binding modes wait on it for their probe).
static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn app_server(port: u16, sink: Sink) {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("listen");
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        tcp.set_nodelay(true).ok();
        let sink = sink.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        HITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Ok(b) = body {
                            sink.record(&b);
                        }
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(
                            br#"{"status":"SUCCESS"}"#,
                        ))))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn h1(host: &str, port: u16) -> Option<H1> {
    let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
    tcp.set_nodelay(true).ok();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(tx)
}

async fn spar(args: &[String], o: &Opts) -> Result<(), String> {
    let [url, pubsub, topic, ..] = args else {
        return Err("spar SIDECAR_URL PUBSUB TOPIC --listen PORT".into());
    };
    let port: u16 = flag(args, "--listen")
        .ok_or("--listen PORT")?
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let sink = Sink::default();
    tokio::spawn(app_server(port, sink.clone()));
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let (host, sport) = (
        uri.host().unwrap_or("127.0.0.1").to_string(),
        uri.port_u16().unwrap_or(3500),
    );
    // Wait until spar has subscribed (it does once the app port is open).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let meta = reqwest_like_get(&host, sport, "/v1.0/metadata").await;
        if meta.contains(topic.as_str()) {
            break;
        }
        if Instant::now() > deadline {
            return Err("spar did not subscribe within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A pool of keep-alive connections, one per in-flight publish.
    let pool = Arc::new(Mutex::new(Vec::<H1>::new()));
    let path = format!("/v1.0/publish/{pubsub}/{topic}");
    let publish: Publish = Arc::new(move |body: Bytes| {
        let (pool, host, path) = (pool.clone(), host.clone(), path.clone());
        Box::pin(async move {
            let conn = pool.lock().unwrap().pop();
            let mut tx = match conn {
                Some(t) => t,
                None => match h1(&host, sport).await {
                    Some(t) => t,
                    None => return false,
                },
            };
            if tx.ready().await.is_err() {
                return false;
            }
            let req = http::Request::post(path.as_str())
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap();
            let ok = match tx.send_request(req).await {
                Ok(r) => {
                    let ok = r.status().is_success();
                    let _ = r.into_body().collect().await;
                    ok
                }
                Err(_) => return false,
            };
            pool.lock().unwrap().push(tx);
            ok
        })
    });
    let (sent, start) = drive(o, publish, &sink).await;
    report(o, sent, start, &sink).await;
    Ok(())
}

async fn reqwest_like_get(host: &str, port: u16, path: &str) -> String {
    let Some(mut tx) = h1(host, port).await else {
        return String::new();
    };
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    match tx.send_request(req).await {
        Ok(r) => r
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

// ---------------------------------------------------------------- redis

async fn redis_native(args: &[String], o: &Opts) -> Result<(), String> {
    use redis::AsyncCommands;
    let [url, stream, ..] = args else {
        return Err("redis REDIS_URL STREAM".into());
    };
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg(&["CREATE", stream, "bench", "0", "MKSTREAM"])
        .query_async(&mut c)
        .await;
    let sink = Sink::default();
    let (s2, key) = (sink.clone(), stream.clone());
    let mut rc = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut ack = c.clone();
    tokio::spawn(async move {
        loop {
            let opts = redis::streams::StreamReadOptions::default()
                .group("bench", "c1")
                .count(100)
                .block(100);
            let r: Result<redis::streams::StreamReadReply, _> =
                rc.xread_options(&[&key], &[">"], &opts).await;
            let Ok(r) = r else { continue };
            for k in r.keys {
                let mut ids = Vec::with_capacity(k.ids.len());
                for id in k.ids {
                    if let Some(redis::Value::BulkString(b)) = id.map.get("data") {
                        s2.record(b);
                    }
                    ids.push(id.id);
                }
                if !ids.is_empty() {
                    let _: Result<i64, _> = ack.xack(&key, "bench", &ids).await;
                }
            }
        }
    });
    let (k, pc) = (stream.clone(), c.clone());
    let publish: Publish = Arc::new(move |body: Bytes| {
        let (k, mut pc) = (k.clone(), pc.clone());
        Box::pin(async move {
            pc.xadd::<_, _, _, _, String>(&k, "*", &[("data", body.as_ref())])
                .await
                .is_ok()
        })
    });
    let (sent, start) = drive(o, publish, &sink).await;
    report(o, sent, start, &sink).await;
    let _: Result<i64, _> = c.del(stream).await;
    Ok(())
}

// ------------------------------------------------------------ jetstream

async fn jetstream_native(args: &[String], o: &Opts) -> Result<(), String> {
    use async_nats::jetstream::{self, consumer, stream};
    use futures::StreamExt;
    let [url, subject, ..] = args else {
        return Err("jetstream NATS_URL SUBJECT".into());
    };
    let client = async_nats::connect(url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client);
    let name = subject.replace(['.', '*', '>'], "_");
    let s = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let c = s
        .get_or_create_consumer(
            "bench",
            consumer::pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let sink = Sink::default();
    let s2 = sink.clone();
    let mut msgs = c.messages().await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(Ok(m)) = msgs.next().await {
            s2.record(&m.payload);
            let _ = m.ack().await;
        }
    });
    let (js2, subj) = (js.clone(), subject.clone());
    let publish: Publish = Arc::new(move |body: Bytes| {
        let (js, subj) = (js2.clone(), subj.clone());
        Box::pin(async move {
            match js.publish(subj, body).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        })
    });
    let (sent, start) = drive(o, publish, &sink).await;
    report(o, sent, start, &sink).await;
    let _ = js.delete_stream(&name).await;
    Ok(())
}

// ------------------------------------------------------------- rabbitmq

async fn rabbitmq_native(args: &[String], o: &Opts) -> Result<(), String> {
    use futures::StreamExt;
    use lapin::options::*;
    use lapin::types::FieldTable;
    let [url, exchange, ..] = args else {
        return Err("rabbitmq AMQP_URL EXCHANGE".into());
    };
    let e = |e: lapin::Error| e.to_string();
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .map_err(e)?;
    let ch = conn.create_channel().await.map_err(e)?;
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(e)?;
    let queue = format!("{exchange}-q");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(e)?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(e)?;
    let sub = conn.create_channel().await.map_err(e)?;
    sub.basic_qos(o.inflight as u16, BasicQosOptions::default())
        .await
        .map_err(e)?;
    let mut consumer = sub
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(e)?;
    let sink = Sink::default();
    let s2 = sink.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            s2.record(&d.data);
            let _ = d.ack(BasicAckOptions::default()).await;
        }
    });
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(e)?;
    let publish = rabbit_publisher(ch.clone(), exchange.clone(), String::new());
    let (sent, start) = drive(o, publish, &sink).await;
    report(o, sent, start, &sink).await;
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    Ok(())
}

/// Confirmed persistent publishes to `exchange` with `key` (on a channel
/// in confirm mode); each resolves on the broker's ack.
fn rabbit_publisher(ch: lapin::Channel, exchange: String, key: String) -> Publish {
    use lapin::options::BasicPublishOptions;
    Arc::new(move |body: Bytes| {
        let (ch, ex, key) = (ch.clone(), exchange.clone(), key.clone());
        Box::pin(async move {
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            match ch
                .basic_publish(
                    ex.as_str().into(),
                    key.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
            {
                Ok(c) => c.await.is_ok_and(|c| c.is_ack()),
                Err(_) => false,
            }
        })
    })
}

// ----------------------------------------------------------------- mqtt

async fn mqtt_native(args: &[String], o: &Opts) -> Result<(), String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let [addr, topic, ..] = args else {
        return Err("mqtt HOST:PORT TOPIC".into());
    };
    let (host, port) = addr.rsplit_once(':').ok_or("HOST:PORT")?;
    let port: u16 = port.parse().map_err(|_| "port")?;
    let id = format!("pubbench-{}", std::process::id());
    // Subscriber: QoS 1, manual acks.
    let mut so = MqttOptions::new(format!("{id}-sub"), host, port);
    so.set_manual_acks(true)
        .set_inflight(o.inflight.max(1) as u16);
    let (sc, mut sev) = AsyncClient::new(so, 1024);
    sc.subscribe(topic.as_str(), QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let sink = Sink::default();
    let (s2, sc2) = (sink.clone(), sc.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        while let Ok(ev) = sev.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    s2.record(&p.payload);
                    let _ = sc2.ack(&p).await;
                }
                _ => {}
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;
    let publish = mqtt_publisher(host, port, &format!("{id}-pub"), topic, o.inflight);
    let (sent, start) = drive(o, publish, &sink).await;
    report(o, sent, start, &sink).await;
    Ok(())
}

/// QoS 1 publishes to `topic`; each call resolves on its PUBACK (matched
/// in order).
fn mqtt_publisher(host: &str, port: u16, id: &str, topic: &str, inflight: usize) -> Publish {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    let mut po = MqttOptions::new(id, host, port);
    po.set_inflight(inflight.max(1) as u16);
    let (pc, mut pev) = AsyncClient::new(po, 1024);
    type W = tokio::sync::oneshot::Sender<()>;
    let queued: Arc<Mutex<std::collections::VecDeque<W>>> = Arc::default();
    let q2 = queued.clone();
    tokio::spawn(async move {
        let mut sent: std::collections::HashMap<u16, W> = Default::default();
        while let Ok(ev) = pev.poll().await {
            match ev {
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(w) = q2.lock().unwrap().pop_front() {
                        sent.insert(pkid, w);
                    }
                }
                Event::Incoming(Packet::PubAck(a)) => {
                    if let Some(w) = sent.remove(&a.pkid) {
                        let _ = w.send(());
                    }
                }
                _ => {}
            }
        }
    });
    let t = topic.to_string();
    Arc::new(move |body: Bytes| {
        let (pc, q, t) = (pc.clone(), queued.clone(), t.clone());
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            {
                let mut g = q.lock().unwrap();
                if pc
                    .try_publish(t.as_str(), QoS::AtLeastOnce, false, body.to_vec())
                    .is_err()
                {
                    return false;
                }
                g.push_back(tx);
            }
            rx.await.is_ok()
        })
    })
}

// ------------------------------------------------------- input bindings

/// spar as the input binding path: publishes with the broker's own client,
/// receives as the app spar POSTs each event to.
async fn binding_input(kind: &str, args: &[String], o: &Opts) -> Result<(), String> {
    let [addr, target, ..] = args else {
        return Err(format!("binding-{kind} BROKER TOPIC|QUEUE --listen PORT"));
    };
    let port: u16 = flag(args, "--listen")
        .ok_or("--listen PORT")?
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let sink = Sink::default();
    tokio::spawn(app_server(port, sink.clone()));
    // Kept alive until the end: lapin closes a dropped connection.
    let mut _conn = None;
    let publish = match kind {
        "mqtt" => {
            let (host, bport) = addr.rsplit_once(':').ok_or("HOST:PORT")?;
            let bport: u16 = bport.parse().map_err(|_| "port")?;
            let id = format!("pubbench-{}-in", std::process::id());
            mqtt_publisher(host, bport, &id, target, o.inflight)
        }
        _ => {
            use lapin::options::ConfirmSelectOptions;
            let e = |e: lapin::Error| e.to_string();
            let conn = lapin::Connection::connect(addr, lapin::ConnectionProperties::default())
                .await
                .map_err(e)?;
            let ch = conn.create_channel().await.map_err(e)?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(e)?;
            _conn = Some(conn);
            // The default exchange routes by queue name.
            rabbit_publisher(ch, String::new(), target.clone())
        }
    };
    // Until spar has subscribed (MQTT) or declared and consumes the queue
    // (RabbitMQ), a publish can be lost: probe until one reaches the app.
    // Probes carry no timestamp, so the sink does not count them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let hit = || HITS.load(std::sync::atomic::Ordering::Relaxed) > 0;
    while !hit() {
        if Instant::now() > deadline {
            return Err("no probe reached the app within 20 s".into());
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            publish(Bytes::from_static(br#"{"probe":true}"#)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let late probes drain before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, start) = drive(o, publish, &sink).await;
    report(o, sent, start, &sink).await;
    Ok(())
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |n: &str, d: f64| flag(&args, n).and_then(|v| v.parse().ok()).unwrap_or(d);
    let o = Opts {
        rate: num("--rate", 0.0),
        seconds: num("--seconds", 5.0),
        inflight: num("--inflight", 32.0) as usize,
        window: num("--window", 1000.0) as usize,
        size: num("--size", 64.0) as usize,
        tail: num("--tail", 3.0),
    };
    let rest = args.get(1..).unwrap_or_default();
    let r = match args.first().map(String::as_str) {
        Some("spar") => spar(rest, &o).await,
        Some("redis") => redis_native(rest, &o).await,
        Some("jetstream") => jetstream_native(rest, &o).await,
        Some("rabbitmq") => rabbitmq_native(rest, &o).await,
        Some("mqtt") => mqtt_native(rest, &o).await,
        Some("binding-mqtt") => binding_input("mqtt", rest, &o).await,
        Some("binding-rabbitmq") => binding_input("rabbitmq", rest, &o).await,
        _ => Err(
            "usage: spar-pubbench spar|redis|jetstream|rabbitmq|mqtt|binding-mqtt|binding-rabbitmq ... (see the source header)"
                .into(),
        ),
    };
    if let Err(e) = r {
        eprintln!("spar-pubbench: {e}");
        std::process::exit(2);
    }
    std::process::exit(0);
}
