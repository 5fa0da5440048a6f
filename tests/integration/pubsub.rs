//! Publish and subscribe end to end: a real HTTP subscriber app behind a
//! sidecar, declarative (v2alpha1 routing rules, dead-letter topic) and
//! programmatic (`GET /dapr/subscribe`) subscriptions, CloudEvents as Dapr
//! builds them, RETRY / DROP / error answers, bulk publish, scoping, the
//! Rust SDK over gRPC — against the in-memory broker, Redis Streams, NATS
//! JetStream, RabbitMQ and MQTT.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus, Uri};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{get_json, unique, Options, Sidecar};

#[derive(Clone, Debug)]
struct Got {
    path: String,
    content_type: String,
    /// The `retained` header (MQTT deliveries).
    retained: Option<String>,
    body: Bytes,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

type Seen = Arc<Mutex<Vec<Got>>>;

/// The subscriber app: records every delivery; `/flaky` answers RETRY
/// twice per event id, `/poison` always fails, `/gone` is 404.
async fn subscriber_app(programmatic: Value) -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let sub = programmatic.clone();
    let app = axum::Router::new()
        .route(
            "/dapr/subscribe",
            axum::routing::get(move || async move { axum::Json(sub.clone()) }),
        )
        .fallback(
            |State(seen): State<Seen>, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                let got = Got {
                    path: uri.path().to_string(),
                    content_type: headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    retained: headers
                        .get("retained")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body,
                };
                let id = got.json()["id"].as_str().unwrap_or_default().to_string();
                let path = got.path.clone();
                let attempts = {
                    let mut s = seen.lock().unwrap();
                    s.push(got);
                    s.iter()
                        .filter(|g| g.path == path && g.json()["id"].as_str() == Some(&id))
                        .count()
                };
                match path.as_str() {
                    "/flaky" if attempts <= 2 => {
                        (AxStatus::OK, axum::Json(json!({"status": "RETRY"})))
                    }
                    "/poison" => (AxStatus::INTERNAL_SERVER_ERROR, axum::Json(json!({}))),
                    "/gone" => (AxStatus::NOT_FOUND, axum::Json(json!({}))),
                    _ => (AxStatus::OK, axum::Json(json!({"status": "SUCCESS"}))),
                }
            },
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

async fn wait_for(seen: &Seen, limit: Duration, f: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let deadline = Instant::now() + limit;
    loop {
        let s = seen.lock().unwrap().clone();
        if f(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn on(s: &[Got], path: &str) -> Vec<Got> {
    s.iter().filter(|g| g.path == path).cloned().collect()
}

/// Returns the subscriber's app id (its consumer group).
async fn end_to_end(component: String, u: &str) -> String {
    let (orders, prog, dlq, flaky, gone, raw) = (
        format!("orders-{u}"),
        format!("prog-{u}"),
        format!("dlq-{u}"),
        format!("flaky-{u}"),
        format!("gone-{u}"),
        format!("raw-{u}"),
    );
    let programmatic = json!([
        {"pubsubname": "ps", "topic": prog, "route": "/prog"},
        {"pubsubname": "ps", "topic": flaky, "route": "/flaky"},
        {"pubsubname": "ps", "topic": gone, "route": "/gone"},
        {"pubsubname": "ps", "topic": raw, "route": "/raw", "metadata": {"rawPayload": "true"}},
        {"pubsubname": "ps", "topic": dlq, "route": "/dead"},
    ]);
    let (port, seen) = subscriber_app(programmatic).await;
    let app_id = unique("sub-app");
    let declarative = format!(
        r#"apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders-sub
spec:
  pubsubname: ps
  topic: {orders}
  routes:
    rules:
      - match: event.data.kind == "book" && event.data.n > 1
        path: /books
      - match: event.type == "order.cancelled"
        path: /cancelled
    default: /orders
  deadLetterTopic: {dlq}
scopes:
  - {app_id}
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: poison-sub
spec:
  pubsubname: ps
  topic: poison-{u}
  route: /poison
  deadLetterTopic: {dlq}
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: not-mine
spec:
  pubsubname: ps
  topic: {orders}
  route: /never
scopes:
  - some-other-app
"#
    );
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![component, declarative],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    let publish = |topic: &str, body: Vec<u8>, ct: &str| {
        c.post(format!("{base}/v1.0/publish/ps/{topic}"))
            .header("content-type", ct)
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(body)
    };
    // Subscriptions start once the app is up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = get_json(&c, format!("{base}/v1.0/metadata")).await;
        if m["subscriptions"].as_array().is_some_and(|a| a.len() >= 7) {
            let topics: Vec<&str> = m["subscriptions"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["topic"].as_str())
                .collect();
            assert!(
                topics.contains(&orders.as_str()) && topics.contains(&prog.as_str()),
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "subscriptions not listed: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // JSON payload → routed by rules, wrapped as Dapr wraps it.
    for (kind, n) in [("book", 2), ("book", 1), ("car", 5)] {
        let r = publish(
            &orders,
            serde_json::to_vec(&json!({"kind": kind, "n": n})).unwrap(),
            "application/json",
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // A CloudEvent is kept (its id and type), and routed on its type.
    let ce = json!({"specversion": "1.0", "id": "ce-1", "source": "shop", "type": "order.cancelled", "datacontenttype": "application/json", "data": {"kind": "car", "n": 9}});
    let r = publish(
        &orders,
        serde_json::to_vec(&ce).unwrap(),
        "application/cloudevents+json",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let s = wait_for(&seen, Duration::from_secs(10), |s| {
        on(s, "/books").len() == 1 && on(s, "/orders").len() == 2 && on(s, "/cancelled").len() == 1
    })
    .await;
    let paths: Vec<&str> = s.iter().map(|g| g.path.as_str()).collect();
    assert_eq!(on(&s, "/books").len(), 1, "{paths:?} {}", sc.stderr());
    let book = on(&s, "/books")[0].clone();
    assert_eq!(book.content_type, "application/cloudevents+json");
    let ev = book.json();
    assert_eq!(ev["data"], json!({"kind": "book", "n": 2}));
    assert_eq!(ev["source"], app_id);
    assert_eq!(ev["type"], "com.dapr.event.sent");
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["datacontenttype"], "application/json");
    assert_eq!(ev["topic"], orders);
    assert_eq!(ev["pubsubname"], "ps");
    assert_eq!(
        ev["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert!(ev["id"].as_str().is_some_and(|i| !i.is_empty()));
    assert!(ev["time"].as_str().is_some());
    assert_eq!(on(&s, "/orders").len(), 2, "default route");
    let cancelled = on(&s, "/cancelled")[0].json();
    assert_eq!(
        (cancelled["id"].as_str(), cancelled["source"].as_str()),
        (Some("ce-1"), Some("shop"))
    );
    assert!(cancelled.get("data_base64").is_none(), "not wrapped twice");
    assert!(
        on(&s, "/never").is_empty(),
        "a subscription scoped to another app is ignored"
    );

    // Programmatic subscription; text payload.
    publish(&prog, b"hello".to_vec(), "text/plain")
        .send()
        .await
        .unwrap();
    let s = wait_for(&seen, Duration::from_secs(10), |s| {
        on(s, "/prog").len() == 1
    })
    .await;
    assert_eq!(on(&s, "/prog")[0].json()["data"], "hello");

    // Raw payload, both ways.
    let r = c
        .post(format!(
            "{base}/v1.0/publish/ps/{raw}?metadata.rawPayload=true"
        ))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 1, 2, 255])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let s = wait_for(&seen, Duration::from_secs(10), |s| on(s, "/raw").len() == 1).await;
    // As daprd: a rawPayload subscriber gets the bytes in a CloudEvent of
    // its own, as data_base64.
    let raw_ev = on(&s, "/raw")[0].json();
    assert_eq!(raw_ev["data_base64"], "AAEC/w==");
    assert_eq!(raw_ev["datacontenttype"], "application/octet-stream");
    assert_eq!(raw_ev["topic"], raw.as_str());

    // RETRY → delivered again until SUCCESS; 404 → dropped, not redelivered.
    publish(&flaky, b"{}".to_vec(), "application/json")
        .send()
        .await
        .unwrap();
    publish(&gone, b"{}".to_vec(), "application/json")
        .send()
        .await
        .unwrap();
    let s = wait_for(&seen, Duration::from_secs(15), |s| {
        on(s, "/flaky").len() >= 3
    })
    .await;
    assert_eq!(on(&s, "/flaky").len(), 3);
    // A poison message: retried, then moved to the dead-letter topic.
    publish(
        &format!("poison-{u}"),
        b"{\"bad\":true}".to_vec(),
        "application/json",
    )
    .send()
    .await
    .unwrap();
    let s = wait_for(&seen, Duration::from_secs(15), |s| {
        on(s, "/dead").len() == 1
    })
    .await;
    assert!(
        on(&s, "/poison").len() >= 2,
        "retried before dead-lettering"
    );
    assert_eq!(on(&s, "/dead")[0].json()["data"], json!({"bad": true}));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = seen.lock().unwrap().clone();
    assert_eq!(on(&s, "/gone").len(), 1, "DROP (404) is not redelivered");
    assert_eq!(on(&s, "/dead").len(), 1);

    // Bulk publish: every entry delivered, 204.
    let entries: Vec<Value> = (0..5)
        .map(|i| json!({"entryId": format!("e{i}"), "event": {"kind": "bulk", "i": i}, "contentType": "application/json"}))
        .collect();
    let r = c
        .post(format!("{base}/v1.0-alpha1/publish/bulk/ps/{prog}"))
        .json(&entries)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let s = wait_for(&seen, Duration::from_secs(10), |s| {
        on(s, "/prog").len() == 6
    })
    .await;
    assert_eq!(on(&s, "/prog").len(), 6);

    // The Rust SDK over gRPC.
    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(sc.grpc()))
            .await
            .unwrap();
    sdk.publish_event(
        "ps",
        prog.as_str(),
        "application/json",
        br#"{"from":"sdk"}"#.to_vec(),
        None,
    )
    .await
    .unwrap();
    let s = wait_for(&seen, Duration::from_secs(10), |s| {
        on(s, "/prog").len() == 7
    })
    .await;
    assert!(on(&s, "/prog")
        .iter()
        .any(|g| g.json()["data"] == json!({"from": "sdk"})));

    // Errors in Dapr's format.
    let err = |r: reqwest::Response| async move {
        (
            r.status(),
            r.json::<Value>().await.unwrap()["errorCode"].clone(),
        )
    };
    for (path, ct, body, status, code) in [
        (
            "/v1.0/publish/nope/t",
            "text/plain",
            "x",
            StatusCode::NOT_FOUND,
            "ERR_PUBSUB_NOT_FOUND",
        ),
        (
            "/v1.0/publish/ps/",
            "text/plain",
            "x",
            StatusCode::NOT_FOUND,
            "ERR_TOPIC_NAME_EMPTY",
        ),
        (
            "/v1.0/publish/ps/x",
            "application/cloudevents+json",
            "not json",
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
        ),
        (
            "/v1.0-alpha1/publish/bulk/ps/x",
            "application/json",
            "{",
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_EVENTS_SER",
        ),
    ] {
        let r = c
            .post(format!("{base}{path}"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let (st, got) = err(r).await;
        assert_eq!((st, got.as_str()), (status, Some(code)), "{path}");
    }
    app_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_in_memory() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.in-memory\n  version: v1\n".to_string();
    end_to_end(component, &unique("mem")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_redis_streams() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n  - name: processingTimeout\n    value: 2s\n  - name: redeliverInterval\n    value: 500ms\n".to_string();
    let u = unique("rds");
    end_to_end(component, &u).await;
    spar_tests::delete_redis_keys(&format!("*{u}*")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_jetstream() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.jetstream\n  version: v1\n  metadata:\n  - name: natsURL\n    value: nats://127.0.0.1:4222\n  - name: ackWait\n    value: 2s\n".to_string();
    let u = unique("js");
    end_to_end(component, &u).await;
    spar_tests::delete_jetstream_streams(&u).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_rabbitmq() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.rabbitmq\n  version: v1\n  metadata:\n  - name: connectionString\n    value: amqp://guest:guest@127.0.0.1:5672\n  - name: durable\n    value: \"true\"\n  - name: deletedWhenUnused\n    value: \"false\"\n  - name: requeueInFailure\n    value: \"true\"\n".to_string();
    let u = unique("rmq");
    end_to_end(component, &u).await;
    spar_tests::delete_rabbitmq(&u).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_mqtt3() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.mqtt3\n  version: v1\n  metadata:\n  - name: url\n    value: tcp://127.0.0.1:1883\n".to_string();
    let app_id = end_to_end(component, &unique("mqtt")).await;
    spar_tests::clear_mqtt_sessions(&[&app_id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoping_and_embedded_default() {
    // publishingScopes / allowedTopics enforced with ERR_PUBSUB_FORBIDDEN.
    let app_id = unique("scoped");
    let component = format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.in-memory\n  version: v1\n  metadata:\n  - name: allowedTopics\n    value: a,b,c\n  - name: publishingScopes\n    value: \"{app_id}=a,b;other=c\"\n");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![component],
        ..Default::default()
    });
    let c = Client::new();
    for (topic, want) in [("a", 204), ("c", 403), ("zzz", 403)] {
        let r = c
            .post(format!("{}/v1.0/publish/ps/{topic}", sc.http()))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{topic}");
        if want == 403 {
            assert_eq!(
                r.json::<Value>().await.unwrap()["errorCode"],
                "ERR_PUBSUB_FORBIDDEN"
            );
        }
    }
    // No YAML at all: `pubsub` (in memory) is there.
    let sc = Sidecar::start(Options {
        no_resources: true,
        ..Default::default()
    });
    let r = c
        .post(format!("{}/v1.0/publish/pubsub/t", sc.http()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// MQTT wildcard subscriptions (`+`, `#`) go to the broker as filters, as
/// daprd passes them; each matching message arrives once per subscription,
/// with its concrete topic. Publishing to a wildcard stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt3_wildcard_subscriptions() {
    let u = unique("wild");
    let (port, seen) = subscriber_app(json!([])).await;
    let app_id = unique("wild-app");
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.mqtt3\n  version: v1\n  metadata:\n  - name: url\n    value: tcp://127.0.0.1:1883\n".to_string();
    let sub = |name: &str, topic: &str, path: &str, raw: bool| {
        let meta = if raw {
            "  metadata:\n    rawPayload: \"true\"\n"
        } else {
            ""
        };
        format!("apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: {name}\nspec:\n  pubsubname: ps\n  topic: {topic}\n  routes:\n    default: {path}\n{meta}")
    };
    let subs = [
        sub("temp", &format!("{u}/home/+/temperature"), "/temp", false),
        sub("all", &format!("{u}/home/#"), "/all", false),
        sub("raw", &format!("{u}/raw/+"), "/raw", true),
    ]
    .join("---\n");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![component, subs],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_json(&c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_none_or(|a| a.len() < 3)
    {
        assert!(Instant::now() < deadline, "not subscribed: {}", sc.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish = |topic: String, body: String| {
        c.post(format!("{}/v1.0/publish/ps/{topic}", sc.http()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (n, place) in [
        (1, "home/kitchen/temperature"),
        (2, "home/garage/door"),
        (3, "home/hall/temperature"),
        (4, "raw/x"),
    ] {
        let r = publish(format!("{u}/{place}"), json!({ "n": n }).to_string())
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204, "{place}");
    }
    let r = publish(format!("{u}/home/+/temperature"), "{}".into())
        .await
        .unwrap();
    assert!(
        !r.status().is_success(),
        "publishing to a wildcard is refused"
    );

    wait_for(&seen, Duration::from_secs(10), |s| s.len() >= 6).await;
    // A moment more for any extra copy.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = seen.lock().unwrap().clone();
    let summary = |path: &str| -> Vec<(i64, String)> {
        let mut v: Vec<(i64, String)> = on(&got, path)
            .iter()
            .map(|g| {
                let ce = g.json();
                let n = ce["data"]["n"].as_i64().unwrap_or(-1);
                (n, ce["topic"].as_str().unwrap_or_default().to_string())
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        summary("/temp"),
        vec![
            (1, format!("{u}/home/kitchen/temperature")),
            (3, format!("{u}/home/hall/temperature"))
        ],
        "{got:?}"
    );
    assert_eq!(
        summary("/all"),
        vec![
            (1, format!("{u}/home/kitchen/temperature")),
            (2, format!("{u}/home/garage/door")),
            (3, format!("{u}/home/hall/temperature"))
        ],
        "{got:?}"
    );
    // The message's metadata as headers, as daprd: MQTT's retain flag.
    assert!(
        got.iter().all(|g| g.retained.as_deref() == Some("false")),
        "{got:?}"
    );
    // rawPayload: the wrapper names the concrete topic.
    let raw = on(&got, "/raw");
    assert_eq!(raw.len(), 1, "{got:?}");
    let ce = raw[0].json();
    assert_eq!(ce["topic"], format!("{u}/raw/x"));
    assert_eq!(ce["pubsubname"], "ps");
    drop(sc);
    spar_tests::clear_mqtt_sessions(&[&app_id]).await;
}

/// A Redis user whose ACL forbids `CLIENT` (as some managed services do):
/// the subscription still reads (closing then waits for the block to end
/// instead of unblocking it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_user_without_client_command() {
    let redis = spar_tests::PrivateRedis::start(&[
        "--user", "alice", "on", ">pw", "~*", "&*", "+@all", "-client",
    ]);
    let (port, seen) = subscriber_app(json!([])).await;
    let component = format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{}\n  - name: redisUsername\n    value: alice\n  - name: redisPassword\n    value: pw\n", redis.port);
    let sub = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: ps\n  topic: orders\n  routes:\n    default: /orders\n".to_string();
    let mut sc = Sidecar::start(Options {
        resources: vec![component, sub],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_json(&c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline, "not subscribed: {}", sc.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in 0..3 {
        let r = c
            .post(format!("{}/v1.0/publish/ps/orders", sc.http()))
            .json(&json!({ "n": n }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", sc.stderr());
    }
    let got = wait_for(&seen, Duration::from_secs(10), |s| s.len() >= 3).await;
    let mut ns: Vec<i64> = got
        .iter()
        .filter_map(|g| g.json()["data"]["n"].as_i64())
        .collect();
    ns.sort();
    assert_eq!(ns, vec![0, 1, 2], "{}", sc.stderr());
    assert!(!sc.stderr().contains("redis pubsub"), "{}", sc.stderr());
    assert_eq!(sc.terminate(), Some(0), "{}", sc.stderr());
}
