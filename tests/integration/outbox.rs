//! The transactional outbox: a state store with `outboxPublishPubsub` /
//! `outboxPublishTopic` publishes each upsert of a committed transaction,
//! with the saved value as the event's data, to a real subscriber app — on
//! SQLite, Redis, PostgreSQL and MySQL; through a publish-broker outage
//! after the commit (the event arrives once the broker is back); never for
//! a transaction that failed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{get_json, sqlite_component, unique, Options, PrivateRedis, Sidecar};

type Seen = Arc<Mutex<Vec<Value>>>;

/// The `traceparent` header an event came with, kept in the recorded event.
const TRACEPARENT_HEADER: &str = "test.traceparentHeader";

/// The subscriber app: records every event delivered to `/events`.
async fn subscriber_app() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(seen): State<Seen>, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                if uri.path() == "/events" {
                    let mut ev: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if let Some(t) = headers.get("traceparent") {
                        ev[TRACEPARENT_HEADER] = json!(t.to_str().unwrap_or("?"));
                    }
                    seen.lock().unwrap().push(ev);
                }
                axum::Json(json!({"status": "SUCCESS"}))
            },
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

/// Waits (up to `limit`) until at least `n` events arrived; returns them.
async fn events(seen: &Seen, n: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let s = seen.lock().unwrap().clone();
        if s.len() >= n || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Metadata items to append to a component.
fn items(kv: &[(&str, &str)]) -> String {
    kv.iter()
        .map(|(k, v)| format!("  - name: {k}\n    value: \"{v}\"\n"))
        .collect()
}

fn outbox(ps: &str, topic: &str) -> String {
    items(&[("outboxPublishPubsub", ps), ("outboxPublishTopic", topic)])
}

fn component(name: &str, type_: &str, meta: &[(&str, &str)]) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {type_}\n  version: v1\n  metadata:\n{}",
        items(meta)
    )
}

fn redis_pubsub(name: &str, port: u16) -> String {
    component(
        name,
        "pubsub.redis",
        &[
            ("redisHost", &format!("127.0.0.1:{port}")),
            ("processingTimeout", "2s"),
            ("redeliverInterval", "1s"),
        ],
    )
}

fn subscription(ps: &str, topic: &str, app_id: &str) -> String {
    format!(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: outbox-sub\nspec:\n  pubsubname: {ps}\n  topic: {topic}\n  routes:\n    default: /events\nscopes:\n  - {app_id}\n"
    )
}

fn app_port(port: u16) -> Vec<String> {
    vec!["--app-port".into(), port.to_string()]
}

async fn transact(c: &Client, sc: &Sidecar, store: &str, body: Value) -> reqwest::Response {
    c.post(format!("{}/v1.0/state/{store}/transaction", sc.http()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn upsert(key: &str, value: Value, md: Value) -> Value {
    json!({"operation": "upsert", "request": {"key": key, "value": value, "metadata": md}})
}

/// The event fields daprd sets, for an event published by `app_id`.
fn assert_envelope(ev: &Value, app_id: &str, ps: &str, topic: &str) {
    assert!(
        ev["id"].as_str().is_some_and(|i| i.starts_with("outbox-")),
        "{ev}"
    );
    assert_eq!(ev["source"], app_id, "{ev}");
    assert_eq!(ev["type"], "com.dapr.event.sent", "{ev}");
    assert_eq!(ev["specversion"], "1.0", "{ev}");
    assert_eq!(ev["topic"], topic, "{ev}");
    assert_eq!(ev["pubsubname"], ps, "{ev}");
    assert_ne!(ev[TRACEPARENT_HEADER], "", "no empty traceparent: {ev}");
}

fn with_data<'a>(evs: &'a [Value], data: &Value) -> Vec<&'a Value> {
    evs.iter().filter(|e| &e["data"] == data).collect()
}

/// SQLite store, in-memory broker, HTTP API: each upsert's saved value is
/// its event's data (a JSON value with `contentType: application/json`, a
/// string as text), projections replace the data without being saved,
/// deletes publish nothing, operation metadata become event attributes, and
/// the internal subscription is not listed as the app's.
#[tokio::test]
async fn sqlite_events_carry_the_saved_values() {
    let u = unique("ob");
    let topic = format!("orders-{u}");
    let (port, seen) = subscriber_app().await;
    let app_id = unique("obx");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![
            sqlite_component("store") + &outbox("ps", &topic),
            component("ps", "pubsub.in-memory", &[]),
            subscription("ps", &topic, &app_id),
        ],
        extra_args: app_port(port),
        ..Default::default()
    });
    let c = Client::new();
    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [
            upsert("a", json!({"n": 1}), json!({"contentType": "application/json", "outbox.cloudevent.myapp": "v1", "data": "x", "id": "y"})),
            upsert("b", json!("text"), json!({})),
            upsert("c", json!("saved"), json!({})),
            upsert("c", json!("projected"), json!({"outbox.projection": "true"})),
            {"operation": "delete", "request": {"key": "gone"}},
        ]}),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );

    let evs = events(&seen, 3, Duration::from_secs(30)).await;
    assert_eq!(evs.len(), 3, "one event per saved upsert: {evs:?}");
    for e in &evs {
        assert_envelope(e, &app_id, "ps", &topic);
    }
    let a = with_data(&evs, &json!({"n": 1}));
    assert_eq!(a.len(), 1, "{evs:?}");
    assert_eq!(a[0]["datacontenttype"], "application/json");
    assert_eq!(
        a[0]["outbox.cloudevent.myapp"], "v1",
        "metadata as attributes"
    );
    assert_ne!(a[0]["id"], "y", "`id` metadata does not replace the id");
    let b = with_data(&evs, &json!("text"));
    assert_eq!(b.len(), 1, "{evs:?}");
    assert_eq!(b[0]["datacontenttype"], "text/plain");
    assert_eq!(with_data(&evs, &json!("projected")).len(), 1, "{evs:?}");
    assert!(with_data(&evs, &json!("saved")).is_empty(), "{evs:?}");

    let get = |k: &str| get_json(&c, format!("{}/v1.0/state/store/{k}", sc.http()));
    assert_eq!(get("c").await, json!("saved"), "a projection is not saved");
    assert_eq!(get("a").await, json!({"n": 1}));

    let md = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    let subs = md["subscriptions"].as_array().cloned().unwrap_or_default();
    assert_eq!(subs.len(), 1, "only the app's subscription: {md}");
    assert_eq!(subs[0]["topic"], topic);
}

/// Redis store and Redis Streams, gRPC API: values are bytes, published as
/// given; the internal topic is daprd's `{NAMESPACE}{app id}{topic}outbox`;
/// the marker the transaction wrote (the event's id) is deleted once the
/// event is out.
#[tokio::test]
async fn redis_grpc_events_and_marker_cleanup() {
    use dapr::dapr::proto::common::v1::StateItem;
    use dapr::dapr::proto::runtime::v1 as pb;
    let u = unique("ob");
    let topic = format!("orders-{u}");
    let (port, seen) = subscriber_app().await;
    let app_id = unique("obx");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![
            component("store", "state.redis", &[("redisHost", "127.0.0.1:6379")])
                + &outbox("ps", &topic),
            redis_pubsub("ps", 6379),
            subscription("ps", &topic, &app_id),
        ],
        extra_args: app_port(port),
        env: vec![("NAMESPACE".into(), "ns1".into())],
        ..Default::default()
    });
    let mut g = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let op = |k: &str, v: &[u8], md: &[(&str, &str)]| pb::TransactionalStateOperation {
        operation_type: "upsert".into(),
        request: Some(StateItem {
            key: k.into(),
            value: v.to_vec(),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
    };
    g.execute_state_transaction(pb::ExecuteStateTransactionRequest {
        store_name: "store".into(),
        operations: vec![
            op("j", br#"{"n":2}"#, &[("contentType", "application/json")]),
            op("t", b"hello", &[]),
        ],
        metadata: Default::default(),
    })
    .await
    .unwrap();
    let evs = events(&seen, 2, Duration::from_secs(30)).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    for e in &evs {
        assert_envelope(e, &app_id, "ps", &topic);
    }
    assert_eq!(with_data(&evs, &json!({"n": 2})).len(), 1, "{evs:?}");
    assert_eq!(with_data(&evs, &json!("hello")).len(), 1, "{evs:?}");

    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    // daprd's internal topic: {namespace}{app id}{topic}outbox.
    let internal: String = redis::cmd("TYPE")
        .arg(format!("ns1{app_id}{topic}outbox"))
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(internal, "stream");
    for e in &evs {
        let id = e["id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n: i64 = redis::cmd("EXISTS")
                .arg(id)
                .query_async(&mut r)
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "marker {id} was not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let saved = Client::new()
        .get(format!("{}/v1.0/state/store/t", sc.http()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(saved, "hello");
    spar_tests::delete_redis_keys(&format!("*{u}*")).await;
    spar_tests::delete_redis_keys(&format!("{app_id}*")).await;
}

/// PostgreSQL store on a sidecar with no app at all (the internal
/// subscription runs anyway), publishing over Redis Streams to a subscriber
/// app behind another sidecar.
#[tokio::test]
async fn postgresql_without_an_app_publishes_to_another_sidecar() {
    let u = unique("ob");
    let topic = format!("orders-{u}");
    let table = unique("outbox").replace('-', "_");
    let conn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
    let (port, seen) = subscriber_app().await;
    let sub_id = unique("obsub");
    let _sub = Sidecar::start(Options {
        app_id: sub_id.clone(),
        resources: vec![
            redis_pubsub("ps", 6379),
            subscription("ps", &topic, &sub_id),
        ],
        extra_args: app_port(port),
        ..Default::default()
    });
    let pub_id = unique("obpub");
    let sc = Sidecar::start(Options {
        app_id: pub_id.clone(),
        resources: vec![
            component(
                "store",
                "state.postgresql",
                &[("connectionString", conn), ("tableName", &table)],
            ) + &outbox("ps", &topic),
            redis_pubsub("ps", 6379),
        ],
        ..Default::default()
    });
    let c = Client::new();
    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [upsert("order-1", json!({"item": "book", "qty": 2}), json!({"contentType": "application/json"}))]}),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    let evs = events(&seen, 1, Duration::from_secs(30)).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_envelope(&evs[0], &pub_id, "ps", &topic);
    assert_eq!(evs[0]["data"], json!({"item": "book", "qty": 2}));
    let md = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    assert!(
        md["subscriptions"].as_array().is_none_or(|s| s.is_empty()),
        "the internal subscription is not listed: {md}"
    );
    drop(sc);
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
        .execute(&pool)
        .await;
    spar_tests::delete_redis_keys(&format!("*{u}*")).await;
}

/// MySQL (MariaDB) store, in-memory broker.
#[tokio::test]
async fn mysql_events_carry_the_saved_values() {
    let u = unique("ob");
    let topic = format!("orders-{u}");
    let table = unique("outbox").replace('-', "_");
    let (port, seen) = subscriber_app().await;
    let app_id = unique("obx");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![
            component(
                "store",
                "state.mysql",
                &[
                    ("connectionString", "root:@tcp(127.0.0.1:3306)/"),
                    ("schemaName", "test"),
                    ("tableName", &table),
                ],
            ) + &outbox("ps", &topic),
            component("ps", "pubsub.in-memory", &[]),
            subscription("ps", &topic, &app_id),
        ],
        extra_args: app_port(port),
        ..Default::default()
    });
    let c = Client::new();
    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [
            upsert("m1", json!({"total": 9.5}), json!({"contentType": "application/json"})),
            upsert("m2", json!("plain"), json!({})),
        ]}),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    let evs = events(&seen, 2, Duration::from_secs(30)).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    for e in &evs {
        assert_envelope(e, &app_id, "ps", &topic);
    }
    assert_eq!(with_data(&evs, &json!({"total": 9.5})).len(), 1, "{evs:?}");
    assert_eq!(with_data(&evs, &json!("plain")).len(), 1, "{evs:?}");
    drop(sc);
    let pool = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/test")
        .await
        .unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
        .execute(&pool)
        .await;
}

/// The publish broker goes down after the commit: the event is not lost,
/// it arrives once the broker is back. With the broker that carries the
/// internal events down, the transaction is refused and nothing is saved.
#[tokio::test]
async fn publish_broker_outage_after_commit_loses_nothing() {
    let aof = tempfile::tempdir().unwrap();
    let dir = aof.path().display().to_string();
    // Persistent, so the stream and the subscriber's group survive the outage.
    let mut redis = PrivateRedis::start(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        &dir,
    ]);
    let u = unique("ob");
    let topic = format!("orders-{u}");
    let (port, seen) = subscriber_app().await;
    let app_id = unique("obx");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![
            // Internal events on the in-memory broker, which stays up;
            // the events themselves on the private Redis.
            sqlite_component("store")
                + &outbox("down", &topic)
                + &items(&[("outboxPubsub", "internal")]),
            // Internal events on the private Redis too.
            sqlite_component("direct") + &outbox("down", &topic),
            component("internal", "pubsub.in-memory", &[]),
            redis_pubsub("down", redis.port),
            subscription("down", &topic, &app_id),
        ],
        extra_args: app_port(port),
        ..Default::default()
    });
    let c = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // The app's subscription is up before the outage.
    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [upsert("before", json!("first"), json!({}))]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let evs = events(&seen, 1, Duration::from_secs(30)).await;
    assert_eq!(with_data(&evs, &json!("first")).len(), 1, "{evs:?}");

    redis.stop();
    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [upsert("during", json!("second"), json!({}))]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "committed");
    // The relay tried, and failed, to publish it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sc.stderr().contains("failed to publish outbox event") {
        assert!(
            Instant::now() < deadline,
            "no publish attempt during the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The broker for internal events is down: refused, nothing saved.
    let r = transact(
        &c,
        &sc,
        "direct",
        json!({"operations": [upsert("refused", json!("x"), json!({}))]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_PUBLISH_OUTBOX", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("error while publishing outbox message: ")),
        "{body}"
    );
    let r = c
        .get(format!("{}/v1.0/state/direct/refused", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "not saved");

    redis.restart();
    let evs = events(&seen, 2, Duration::from_secs(60)).await;
    let second = with_data(&evs, &json!("second"));
    assert_eq!(second.len(), 1, "arrives after the outage: {evs:?}");
    assert_envelope(second[0], &app_id, "down", &topic);
}

/// A transaction that fails (ETag mismatch) publishes nothing: its
/// internal event finds no marker and, with
/// `outboxDiscardWhenMissingState`, is dropped. The next good transaction
/// is published.
#[tokio::test]
async fn failed_transaction_publishes_nothing() {
    let u = unique("ob");
    let topic = format!("orders-{u}");
    let (port, seen) = subscriber_app().await;
    let app_id = unique("obx");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec![
            sqlite_component("store")
                + &outbox("ps", &topic)
                + &items(&[("outboxDiscardWhenMissingState", "true")]),
            component("ps", "pubsub.in-memory", &[]),
            subscription("ps", &topic, &app_id),
        ],
        extra_args: app_port(port),
        ..Default::default()
    });
    let c = Client::new();
    let r = c
        .post(format!("{}/v1.0/state/store", sc.http()))
        .json(&json!([{"key": "k", "value": "v0"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [
            upsert("other", json!("never"), json!({})),
            {"operation": "upsert", "request": {"key": "k", "value": "v1", "etag": "999"}},
        ]}),
    )
    .await;
    assert_ne!(
        r.status(),
        StatusCode::NO_CONTENT,
        "the ETag mismatch fails it"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while sc.stderr().matches("discarding message").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the internal events were not discarded: {}",
            sc.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing published for a failed transaction"
    );
    let r = c
        .get(format!("{}/v1.0/state/store/other", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "rolled back");

    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [upsert("k", json!("v2"), json!({}))]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let evs = events(&seen, 1, Duration::from_secs(30)).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["data"], "v2");
}

/// An outbox naming a pub/sub that is not loaded: the sidecar starts (with
/// daprd's warning) and each transaction fails with `ERR_PUBLISH_OUTBOX`,
/// saving nothing.
#[tokio::test]
async fn unknown_pubsub_fails_transactions_not_startup() {
    let sc = Sidecar::start(Options {
        resources: vec![sqlite_component("store") + &outbox("nope", "orders")],
        ..Default::default()
    });
    let c = Client::new();
    let r = transact(
        &c,
        &sc,
        "store",
        json!({"operations": [upsert("k", json!(1), json!({}))]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_PUBLISH_OUTBOX");
    assert_eq!(
        body["message"],
        "error while publishing outbox message: pubsub 'nope' not found"
    );
    let r = c
        .get(format!("{}/v1.0/state/store/k", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "not saved");
    // Over gRPC: INTERNAL with the same message.
    use dapr::dapr::proto::common::v1::StateItem;
    use dapr::dapr::proto::runtime::v1 as pb;
    let mut g = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let err = g
        .execute_state_transaction(pb::ExecuteStateTransactionRequest {
            store_name: "store".into(),
            operations: vec![pb::TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(StateItem {
                    key: "k".into(),
                    value: b"1".to_vec(),
                    ..Default::default()
                }),
            }],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert_eq!(
        err.message(),
        "error while publishing outbox message: pubsub 'nope' not found"
    );
    assert!(
        sc.stderr().contains(
            "could not subscribe to internal outbox topic: outbox pubsub nope not loaded"
        ),
        "{}",
        sc.stderr()
    );
}

/// Outbox settings added to a running store by hot reload take effect
/// without a restart: the internal subscription starts with them.
#[tokio::test]
async fn outbox_added_by_hot_reload() {
    let u = unique("ob");
    let topic = format!("orders-{u}");
    let (port, seen) = subscriber_app().await;
    let app_id = unique("obx");
    let rest = [
        component("ps", "pubsub.in-memory", &[]),
        subscription("ps", &topic, &app_id),
    ];
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: [vec![sqlite_component("store")], rest.to_vec()].concat(),
        extra_args: app_port(port),
        ..Default::default()
    });
    let with_outbox = [
        vec![sqlite_component("store") + &outbox("ps", &topic)],
        rest.to_vec(),
    ]
    .concat()
    .join("\n---\n")
    .replace("{dir}", &sc.dir.path().display().to_string());
    std::fs::write(
        sc.dir.path().join("resources").join("components.yaml"),
        with_outbox,
    )
    .unwrap();
    let c = Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        let r = transact(
            &c,
            &sc,
            "store",
            json!({"operations": [upsert("k", json!(format!("v{i}")), json!({}))]}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        if !events(&seen, 1, Duration::from_secs(3)).await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox never started");
    }
    let evs = seen.lock().unwrap().clone();
    assert_envelope(&evs[0], &app_id, "ps", &topic);
}
