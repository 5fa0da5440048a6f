//! The configuration API against the real `spar` binary and real stores:
//! values changed from outside (a Redis client, SQL on PostgreSQL, a
//! second SQLite connection — what `redis-cli`, `psql` and `sqlite3` do)
//! reach HTTP apps and gRPC streams (the official Rust `dapr` crate);
//! unsubscribing stops them; a store outage is survived; bad input gets
//! daprd's error codes.
//!
//! Latency from a write's return to its delivery is printed (`measured`)
//! and asserted against a generous bound, so a loaded 2-core machine
//! passes; the API's target is 100 ms.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use dapr::client::ClientOptions;
use dapr::dapr::proto::runtime::v1 as pb;
use reqwest::Client;
use serde_json::{json, Value};
use spar_components::configuration::conformance::Writer;
use spar_tests::{unique, Options, PrivateRedis, RedisWriter, Sidecar};
use tonic::Streaming;

/// Generous: the API's target is 100 ms; CI machines are loaded.
const LATENCY_BOUND: Duration = Duration::from_millis(1500);

fn redis_component(name: &str, port: u16) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: configuration.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{port}\n  - name: dialTimeout\n    value: 1s\n"
    )
}

type Posts = Arc<Mutex<Vec<(String, Value, Instant)>>>;

/// An HTTP app recording every POST (path, JSON body, arrival).
async fn app() -> (u16, Posts) {
    let posts: Posts = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(posts): State<Posts>, uri: Uri, body: Bytes| async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                posts
                    .lock()
                    .unwrap()
                    .push((uri.path().to_string(), v, Instant::now()));
                "ok"
            },
        )
        .with_state(posts.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, posts)
}

/// Waits for a POST to `path` whose items carry `value` for `key`;
/// returns its body and arrival.
async fn wait_post(posts: &Posts, path: &str, key: &str, value: &str) -> (Value, Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((_, v, t)) = posts
            .lock()
            .unwrap()
            .iter()
            .find(|(p, v, _)| p == path && v["items"][key]["value"] == value)
        {
            return (v.clone(), *t);
        }
        assert!(
            Instant::now() < deadline,
            "no POST {path} with {key}={value}: {:?}",
            posts.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn sdk(sc: &Sidecar) -> dapr::Client<dapr::client::TonicClientWithAuth> {
    dapr::Client::from_options(ClientOptions::new().with_address(sc.grpc()))
        .await
        .expect("connect")
}

async fn raw(sc: &Sidecar) -> pb::dapr_client::DaprClient<tonic::transport::Channel> {
    pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .expect("connect")
}

/// The next message of a subscription stream that has `key` at `value`
/// (earlier ones, e.g. for other keys, are skipped), and when it came.
async fn wait_stream(
    s: &mut Streaming<pb::SubscribeConfigurationResponse>,
    key: &str,
    value: &str,
) -> Instant {
    let deadline = Duration::from_secs(10);
    tokio::time::timeout(deadline, async {
        loop {
            let m = s
                .message()
                .await
                .expect("stream error")
                .expect("stream ended");
            if m.items.get(key).is_some_and(|i| i.value == value) {
                return Instant::now();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key}={value} did not arrive on the stream"))
}

/// Opens a stream and reads its first message: the id, no items.
async fn open_stream(
    c: &mut dapr::Client<dapr::client::TonicClientWithAuth>,
    store: &str,
    keys: Vec<&str>,
) -> (String, Streaming<pb::SubscribeConfigurationResponse>) {
    let mut s = c
        .subscribe_configuration(store, keys, None)
        .await
        .expect("subscribe");
    let first = s.message().await.unwrap().expect("first message");
    assert!(!first.id.is_empty());
    assert!(first.items.is_empty(), "{first:?}");
    (first.id, s)
}

fn report(what: &str, samples: &[Duration]) {
    let max = samples.iter().max().copied().unwrap_or_default();
    eprintln!("measured {what}: {samples:?} (max {max:?})");
    assert!(
        max <= LATENCY_BOUND,
        "{what}: {max:?} from write to delivery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_several_keys_then_subscription_reaches_the_app() {
    let (app_port, posts) = app().await;
    let store = "cfg";
    let sc = Sidecar::start(Options {
        resources: vec![redis_component(store, 6379)],
        extra_args: vec!["--app-port".into(), app_port.to_string()],
        ..Default::default()
    });
    let w = RedisWriter::connect("redis://127.0.0.1:6379").await;
    let p = unique("cfg");
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    w.set(&a, "alpha", "1").await;
    w.set(&b, "beta", "2").await;
    let c = Client::new();
    for v in ["v1.0", "v1.0-alpha1"] {
        let r = c
            .get(format!(
                "{}/{v}/configuration/{store}?key={a}&key={b}&key={p}-none",
                sc.http()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({a.clone(): {"value": "alpha", "version": "1"}, b.clone(): {"value": "beta", "version": "2"}})
        );
    }
    // Nothing found: 204, as daprd.
    let r = c
        .get(format!(
            "{}/v1.0/configuration/{store}?key={p}-none",
            sc.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let r: Value = c
        .get(format!(
            "{}/v1.0/configuration/{store}/subscribe?key={a}&key={b}",
            sc.http()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().expect("subscription id").to_string();

    let mut lat = Vec::new();
    for n in 2..=4 {
        let v = format!("alpha{n}");
        w.set(&a, &v, &n.to_string()).await;
        let written = Instant::now();
        let (body, at) = wait_post(&posts, &format!("/configuration/{store}/{a}"), &a, &v).await;
        lat.push(at.duration_since(written));
        assert_eq!(body["id"], id);
        assert_eq!(body["items"][&a]["version"], n.to_string());
    }
    report("redis → HTTP app", &lat);
    // A deleted key arrives as an empty item.
    w.delete(&b).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !posts
        .lock()
        .unwrap()
        .iter()
        .any(|(path, v, _)| path.ends_with(&b) && v["items"][&b] == json!({}))
    {
        assert!(Instant::now() < deadline, "the delete did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let r = c
        .get(format!(
            "{}/v1.0/configuration/{store}/{id}/unsubscribe",
            sc.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));
    let before = posts.lock().unwrap().len();
    w.set(&a, "after", "9").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        posts.lock().unwrap().len(),
        before,
        "a change reached the app after unsubscribe"
    );
    // Unsubscribing again: daprd's error.
    let r = c
        .get(format!(
            "{}/v1.0/configuration/{store}/{id}/unsubscribe",
            sc.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_CONFIGURATION_UNSUBSCRIBE"
    );
    spar_tests::delete_redis_keys(&format!("{p}*")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streams_each_get_every_change_until_unsubscribed() {
    let store = "cfg";
    let sc = Sidecar::start(Options {
        resources: vec![redis_component(store, 6379)],
        ..Default::default()
    });
    let w = RedisWriter::connect("redis://127.0.0.1:6379").await;
    let key = unique("cfg");
    w.set(&key, "0", "0").await;
    let mut c = sdk(&sc).await;
    let got = c
        .get_configuration(store, vec![key.as_str()], None)
        .await
        .unwrap();
    assert_eq!(got.items[&key].value, "0");
    assert_eq!(got.items[&key].version, "0");

    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(open_stream(&mut c, store, vec![key.as_str()]).await);
    }
    let mut lat = Vec::new();
    for n in 1..=3 {
        let v = n.to_string();
        w.set(&key, &v, &v).await;
        let written = Instant::now();
        for (_, s) in streams.iter_mut() {
            lat.push(wait_stream(s, &key, &v).await.duration_since(written));
        }
    }
    report("redis → gRPC streams", &lat);

    // Unsubscribe the first: it ends, the others go on.
    let (id0, mut s0) = streams.remove(0);
    let r = c.unsubscribe_configuration(store, &id0).await.unwrap();
    assert!(r.ok, "{r:?}");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s0.message().await {
                Ok(Some(m)) if m.items.is_empty() => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the unsubscribed stream did not end");
    assert!(matches!(end, Ok(None)), "{end:?}");
    w.set(&key, "4", "4").await;
    for (_, s) in streams.iter_mut() {
        wait_stream(s, &key, "4").await;
    }
    // An unknown id is an answer, not an error (daprd).
    let r = c.unsubscribe_configuration(store, &id0).await.unwrap();
    assert!(!r.ok);
    assert!(r.message.contains("does not exist"), "{r:?}");

    spar_tests::delete_redis_keys(&format!("{key}*")).await;
}

/// A Redis server's `notify-keyspace-events`.
async fn notify_flags(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let (_, v): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(&mut c)
        .await
        .unwrap();
    v
}

/// How many connections listen to `key`'s keyspace notifications.
async fn listeners(key: &str) -> i64 {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("__keyspace@0__:{key}"))
        .query_async(&mut c)
        .await
        .unwrap();
    n
}

async fn wait_listeners(key: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while listeners(key).await != n {
        assert!(Instant::now() < deadline, "{key}: expected {n} listeners");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscription's store watch stops with it: when its stream closes,
/// and on unsubscribe over either face.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_release_the_store_when_they_end() {
    let (app_port, _posts) = app().await;
    let store = "cfg";
    let sc = Sidecar::start(Options {
        resources: vec![redis_component(store, 6379)],
        extra_args: vec!["--app-port".into(), app_port.to_string()],
        ..Default::default()
    });
    let key = unique("cfg");
    let mut c = sdk(&sc).await;
    let (_, s) = open_stream(&mut c, store, vec![key.as_str()]).await;
    let (id2, _s2) = open_stream(&mut c, store, vec![key.as_str()]).await;
    let r: Value = Client::new()
        .get(format!(
            "{}/v1.0/configuration/{store}/subscribe?key={key}",
            sc.http()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id3 = r["id"].as_str().unwrap().to_string();
    wait_listeners(&key, 3).await;
    drop(s);
    wait_listeners(&key, 2).await;
    assert!(c.unsubscribe_configuration(store, &id2).await.unwrap().ok);
    wait_listeners(&key, 1).await;
    let r = Client::new()
        .get(format!(
            "{}/v1.0/configuration/{store}/{id3}/unsubscribe",
            sc.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_listeners(&key, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_changes_reach_grpc_and_http() {
    let (app_port, posts) = app().await;
    let table = unique("cfg").replace('-', "_");
    let channel = format!("{table}_ch");
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    spar_tests::create_pg_config_table(&pool, &table, &channel).await;
    let store = "pgcfg";
    let sc = Sidecar::start(Options {
        resources: vec![format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {store}\nspec:\n  type: configuration.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: host=127.0.0.1 user=postgres port=5432 dbname=postgres\n  - name: table\n    value: {table}\n  - name: notifyChannel\n    value: {channel}\n"
        )],
        extra_args: vec!["--app-port".into(), app_port.to_string()],
        ..Default::default()
    });
    let w = spar_tests::PgWriter {
        pool: pool.clone(),
        table: table.clone(),
    };
    let key = format!("{table}_k");
    w.set(&key, "one", "1").await;
    let mut c = sdk(&sc).await;
    let got = c
        .get_configuration(store, vec![key.as_str()], None)
        .await
        .unwrap();
    assert_eq!(got.items[&key].value, "one");
    assert_eq!(got.items[&key].metadata["source"], "test");
    let (_, mut s) = open_stream(&mut c, store, vec![key.as_str()]).await;
    let r: Value = Client::new()
        .get(format!(
            "{}/v1.0/configuration/{store}/subscribe?key={key}",
            sc.http()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["id"].is_string(), "{r}");
    let (mut grpc_lat, mut http_lat) = (Vec::new(), Vec::new());
    for n in 2..=4 {
        let v = format!("v{n}");
        w.set(&key, &v, &n.to_string()).await;
        let written = Instant::now();
        grpc_lat.push(wait_stream(&mut s, &key, &v).await.duration_since(written));
        let (_, at) = wait_post(&posts, &format!("/configuration/{store}/{key}"), &key, &v).await;
        http_lat.push(at.duration_since(written));
    }
    report("postgresql → gRPC stream", &grpc_lat);
    report("postgresql → HTTP app", &http_lat);
    drop(s);
    drop(sc);
    spar_tests::drop_pg_config_table(&pool, &table).await;
}

/// The zero-install start: no YAML, a `configstore` in the data directory
/// that a second SQLite connection (as `sqlite3`) edits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_configstore_sees_sqlite3_edits() {
    let sc = Sidecar::start(Options {
        no_resources: true,
        ..Default::default()
    });
    let w = spar_tests::SqliteWriter {
        path: sc.dir.path().join("data").join("spar-configuration.db"),
        table: "configuration".into(),
    };
    w.set("greeting", "hello", "1").await;
    let mut c = sdk(&sc).await;
    let got = c
        .get_configuration("configstore", vec!["greeting"], None)
        .await
        .unwrap();
    assert_eq!(got.items["greeting"].value, "hello");
    let (_, mut s) = open_stream(&mut c, "configstore", vec!["greeting"]).await;
    let mut lat = Vec::new();
    for n in 2..=4 {
        let v = format!("hello{n}");
        w.set("greeting", &v, &n.to_string()).await;
        let written = Instant::now();
        lat.push(
            wait_stream(&mut s, "greeting", &v)
                .await
                .duration_since(written),
        );
    }
    report("sqlite → gRPC stream", &lat);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_then_recovery_resumes_the_subscription() {
    let mut redis = PrivateRedis::start(&[]);
    let store = "cfg";
    let (app_port, posts) = app().await;
    let sc = Sidecar::start(Options {
        resources: vec![redis_component(store, redis.port)],
        extra_args: vec!["--app-port".into(), app_port.to_string()],
        ..Default::default()
    });
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let w = RedisWriter::connect(&url).await;
    w.set("k", "before", "1").await;
    let mut c = sdk(&sc).await;
    let (_, mut s) = open_stream(&mut c, store, vec!["k"]).await;
    let r: Value = Client::new()
        .get(format!(
            "{}/v1.0/configuration/{store}/subscribe?key=k",
            sc.http()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["id"].is_string(), "{r}");
    w.set("k", "up", "2").await;
    wait_stream(&mut s, "k", "up").await;
    // A fresh server has keyspace notifications off: the store turned on
    // the ones it needs.
    let flags = notify_flags(&url).await;
    assert!(
        "Kg$xe".chars().all(|f| flags.contains(f)),
        "notify-keyspace-events {flags:?}"
    );

    redis.stop();
    // While Redis is down, a get fails with daprd's code, promptly.
    let r = Client::new()
        .get(format!("{}/v1.0/configuration/{store}?key=k", sc.http()))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_CONFIGURATION_GET"
    );
    redis.restart();
    // The restarted server is empty and has notifications off: the
    // subscription turns them on again when it reconnects. Writes repeat
    // until one arrives (the first may land before the reconnection; the
    // re-read after it reports that one too).
    let w = RedisWriter::connect(&url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let v = format!("back{n}");
        w.set("k", &v, &n.to_string()).await;
        let got = tokio::time::timeout(Duration::from_millis(700), s.message()).await;
        if let Ok(Ok(Some(m))) = got {
            if m.items
                .get("k")
                .is_some_and(|i| i.value.starts_with("back"))
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the subscription did not resume");
    }
    // After recovery, changes flow with the usual latency, to both faces.
    w.set("k", "steady", "100").await;
    let written = Instant::now();
    let at = wait_stream(&mut s, "k", "steady").await;
    let (_, at_app) = wait_post(&posts, &format!("/configuration/{store}/k"), "k", "steady").await;
    report(
        "redis after recovery → gRPC, HTTP",
        &[at.duration_since(written), at_app.duration_since(written)],
    );
}

/// `GetConfigurationRequest` with field 1 (`store_name`, a string) sent as
/// a number.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongGetConfiguration {
    #[prost(int64, tag = "1")]
    store_name: i64,
}

async fn wrong_type_get(sc: &Sidecar) -> tonic::Status {
    let ch = tonic::transport::Endpoint::from_shared(sc.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    let r: Result<tonic::Response<pb::GetConfigurationResponse>, _> = g
        .unary(
            tonic::Request::new(WrongGetConfiguration { store_name: 7 }),
            http::uri::PathAndQuery::from_static("/dapr.proto.runtime.v1.Dapr/GetConfiguration"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    r.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_daprd_codes() {
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", 6379)],
        ..Default::default()
    });
    let c = Client::new();
    let get = |path: String| {
        let c = c.clone();
        async move {
            let r = c.get(path).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["errorCode"].as_str().unwrap_or("").to_string())
        }
    };
    let h = sc.http();
    for (path, status, code) in [
        (
            format!("{h}/v1.0/configuration/nope?key=a"),
            400,
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
        ),
        (
            format!("{h}/v1.0-alpha1/configuration/nope/subscribe?key=a"),
            400,
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
        ),
        (
            format!("{h}/v1.0/configuration/nope/x/unsubscribe"),
            400,
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
        ),
        // No --app-port: nowhere to deliver.
        (
            format!("{h}/v1.0/configuration/cfg/subscribe?key=a"),
            500,
            "ERR_APP_CHANNEL_NIL",
        ),
        (
            format!("{h}/v1.0/configuration/cfg/no-such-id/unsubscribe"),
            500,
            "ERR_CONFIGURATION_UNSUBSCRIBE",
        ),
    ] {
        assert_eq!(
            get(path.clone()).await,
            (status, code.to_string()),
            "{path}"
        );
    }
    let r = c
        .post(format!("{h}/v1.0/configuration/cfg?key=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    let mut g = raw(&sc).await;
    let e = g
        .get_configuration(pb::GetConfigurationRequest {
            store_name: "nope".into(),
            keys: vec!["a".into()],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("configuration store nope not found"));
    let e = g
        .subscribe_configuration(pb::SubscribeConfigurationRequest {
            store_name: String::new(),
            keys: vec![],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // No store in the path: no such route.
    assert_eq!(
        get(format!("{h}/v1.0/configuration")).await,
        (404, "ERR_NOT_FOUND".to_string())
    );
    // A field of the wrong protobuf type: refused as undecodable (INTERNAL,
    // as gRPC-Go answers an unmarshal failure), and the sidecar serves on.
    let e = wrong_type_get(&sc).await;
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    assert_eq!(
        get(format!("{h}/v1.0/configuration/nope?key=a")).await.0,
        400
    );

    // No configuration store at all.
    let bare = Sidecar::start(Options {
        resources: vec![spar_tests::memory_component("mem")],
        ..Default::default()
    });
    assert_eq!(
        get(format!("{}/v1.0/configuration/cfg?key=a", bare.http())).await,
        (500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED".to_string())
    );
    let e = raw(&bare)
        .await
        .get_configuration_alpha1(pb::GetConfigurationRequest {
            store_name: "cfg".into(),
            keys: vec![],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
}

/// PostgreSQL without a notify channel: subscribe fails with daprd's code
/// and message; a store whose table is missing fails at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_subscribe_needs_a_channel() {
    let table = unique("cfg").replace('-', "_");
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    spar_tests::create_pg_config_table(&pool, &table, "unused").await;
    let sc = Sidecar::start(Options {
        resources: vec![format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: configuration.postgres\n  version: v1\n  metadata:\n  - name: connectionString\n    value: host=127.0.0.1 user=postgres port=5432 dbname=postgres\n  - name: table\n    value: {table}\n"
        )],
        ..Default::default()
    });
    let e = raw(&sc)
        .await
        .subscribe_configuration(pb::SubscribeConfigurationRequest {
            store_name: "pg".into(),
            keys: vec!["a".into()],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("notifyChannel must be set"), "{e:?}");
    // The request may name the channel instead (daprd's fallback).
    let mut ok = raw(&sc)
        .await
        .subscribe_configuration(pb::SubscribeConfigurationRequest {
            store_name: "pg".into(),
            keys: vec!["a".into()],
            metadata: [("pgNotifyChannel".to_string(), "unused".to_string())].into(),
        })
        .await
        .expect("subscribe with pgNotifyChannel")
        .into_inner();
    let first = ok.message().await.unwrap().expect("first message");
    assert!(!first.id.is_empty());
    drop(ok);
    // Keys daprd's store refuses.
    let e = raw(&sc)
        .await
        .get_configuration(pb::GetConfigurationRequest {
            store_name: "pg".into(),
            keys: vec!["a'b".into()],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    assert!(e.message().contains("invalid key"), "{e:?}");
    drop(sc);
    spar_tests::drop_pg_config_table(&pool, &table).await;
}

/// As for state and pub/sub: `secretKeyRef` metadata, component scopes,
/// the metadata API, Dapr's metric names and hot reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_scopes_metadata_metrics_and_hot_reload() {
    let scoped_out = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: elsewhere\nspec:\n  type: configuration.sqlite\n  version: v1\nscopes:\n- some-other-app\n";
    let with_secret = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cfg\nspec:\n  type: configuration.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    secretKeyRef:\n      name: CFG_TEST_REDIS_HOST\n      key: CFG_TEST_REDIS_HOST\n";
    let sc = Sidecar::start(Options {
        resources: vec![with_secret.to_string(), scoped_out.to_string()],
        env: vec![("CFG_TEST_REDIS_HOST".into(), "127.0.0.1:6379".into())],
        ..Default::default()
    });
    let c = Client::new();
    let w = RedisWriter::connect("redis://127.0.0.1:6379").await;
    let key = unique("cfg");
    w.set(&key, "v", "1").await;
    let got: Value = c
        .get(format!("{}/v1.0/configuration/cfg?key={key}", sc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got[&key]["value"], "v", "secretKeyRef resolved: {got}");

    let r = c
        .get(format!("{}/v1.0/configuration/elsewhere?key=a", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a component scoped to another app is not loaded"
    );

    let meta = spar_tests::get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    let comps = meta["components"].as_array().unwrap();
    assert!(
        comps
            .iter()
            .any(|x| x["name"] == "cfg" && x["type"] == "configuration.redis"),
        "{meta}"
    );
    assert!(!comps.iter().any(|x| x["name"] == "elsewhere"), "{meta}");

    let metrics = c
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dapr_component_configuration_count{")
                && l.contains("component=\"cfg\"")
                && l.contains("operation=\"get\"")
                && l.contains("success=\"true\"")),
        "{metrics}"
    );
    assert!(metrics.contains("dapr_component_configuration_latencies_bucket{"));

    // Hot reload: a store added while serving, then removed.
    let added = sc.dir.path().join("resources").join("added.yaml");
    std::fs::write(
        &added,
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: added\nspec:\n  type: configuration.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n",
            sc.dir.path().join("added.db").display()
        ),
    )
    .unwrap();
    let status = |name: &'static str| {
        let c = c.clone();
        let url = format!("{}/v1.0/configuration/{name}?key=a", sc.http());
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while status("added").await != 204 {
        assert!(Instant::now() < deadline, "the added store never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A stream on the added store ends when a reload removes the store.
    let mut client = sdk(&sc).await;
    let (_, mut on_added) = open_stream(&mut client, "added", vec!["a"]).await;
    std::fs::remove_file(&added).unwrap();
    while status("added").await != 400 {
        assert!(Instant::now() < deadline, "the removed store kept serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = tokio::time::timeout(Duration::from_secs(5), on_added.message())
        .await
        .expect("the stream on a removed store did not end");
    assert!(matches!(end, Ok(None)), "{end:?}");
    // The unchanged store was carried over and still serves.
    assert_eq!(status("cfg").await, 204);
    spar_tests::delete_redis_keys(&format!("{key}*")).await;
}

/// `components.{store}.outbound` applies to configuration calls: with the
/// store down, the breaker opens and calls fail fast with its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_resiliency_policy_applies() {
    let mut redis = PrivateRedis::start(&[]);
    let policy = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    retries:\n      twice:\n        policy: constant\n        duration: 10ms\n        maxRetries: 2\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 30s\n        trip: consecutiveFailures > 2\n  targets:\n    components:\n      cfg:\n        outbound:\n          retry: twice\n          circuitBreaker: cb\n";
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", redis.port), policy.to_string()],
        ..Default::default()
    });
    redis.stop();
    let c = Client::new();
    let mut last = Value::Null;
    for _ in 0..3 {
        let r = c
            .get(format!("{}/v1.0/configuration/cfg?key=a", sc.http()))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        last = r.json().await.unwrap();
        assert_eq!(last["errorCode"], "ERR_CONFIGURATION_GET");
    }
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{last}"
    );
}

/// A slow app does not make the sidecar queue every change: while a POST
/// is in flight, changes wait coalesced (latest per key), and the newest
/// value arrives once the app catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_app_gets_the_latest_not_a_backlog() {
    let posts: Posts = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(posts): State<Posts>, uri: Uri, body: Bytes| async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                posts
                    .lock()
                    .unwrap()
                    .push((uri.path().to_string(), v, Instant::now()));
                tokio::time::sleep(Duration::from_millis(500)).await;
                "ok"
            },
        )
        .with_state(posts.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", 6379)],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let key = unique("cfg");
    let r: Value = Client::new()
        .get(format!(
            "{}/v1.0/configuration/cfg/subscribe?key={key}",
            sc.http()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["id"].is_string());
    let w = RedisWriter::connect("redis://127.0.0.1:6379").await;
    for n in 1..=50 {
        w.set(&key, &format!("v{n}"), &n.to_string()).await;
    }
    let path = format!("/configuration/cfg/{key}");
    wait_post(&posts, &path, &key, "v50").await;
    let n = posts.lock().unwrap().len();
    assert!(n < 10, "{n} POSTs for 50 changes: the changes were queued");
    spar_tests::delete_redis_keys(&format!("{key}*")).await;
}

/// A PostgreSQL outage: the LISTEN connection is re-made when the server is
/// back, and a change made while it was down (here: the first write after
/// the restart may land before the watch has reconnected) is reported by
/// the re-read that follows the reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_outage_then_recovery_resumes_the_subscription() {
    let mut pg = spar_tests::PrivatePostgres::start();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    spar_tests::create_pg_config_table(&pool, "cfg", "cfgch").await;
    let sc = Sidecar::start(Options {
        resources: vec![format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: configuration.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n  - name: table\n    value: cfg\n  - name: notifyChannel\n    value: cfgch\n  - name: timeout\n    value: 2s\n",
            pg.connection_string()
        )],
        ..Default::default()
    });
    let w = spar_tests::PgWriter {
        pool,
        table: "cfg".into(),
    };
    w.set("k", "before", "1").await;
    let mut c = sdk(&sc).await;
    let (_, mut s) = open_stream(&mut c, "pg", vec!["k"]).await;
    w.set("k", "up", "2").await;
    wait_stream(&mut s, "k", "up").await;

    w.pool.close().await;
    pg.stop();
    pg.restart();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let w = spar_tests::PgWriter {
        pool,
        table: "cfg".into(),
    };
    w.set("k", "while-away", "3").await;
    wait_stream(&mut s, "k", "while-away").await;
    w.set("k", "steady", "4").await;
    let written = Instant::now();
    let at = wait_stream(&mut s, "k", "steady").await;
    report(
        "postgresql after recovery → gRPC",
        &[at.duration_since(written)],
    );
}

/// Shutdown ends every subscription: open streams complete and the sidecar
/// exits cleanly without waiting for their clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let mut sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", 6379)],
        extra_args: vec!["--dapr-graceful-shutdown-seconds".into(), "30".into()],
        ..Default::default()
    });
    let key = unique("cfg");
    let mut c = sdk(&sc).await;
    let (_, mut s) = open_stream(&mut c, "cfg", vec![key.as_str()]).await;
    let started = Instant::now();
    let code = tokio::task::block_in_place(|| sc.terminate());
    assert_eq!(code, Some(0), "{}", sc.stderr());
    // Well within the 30 s grace period: nothing waited for the stream.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("the stream did not end");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    wait_listeners(&key, 0).await;
}

/// The store adds the keyspace-notification flags it needs to the ones the
/// server already has, never replacing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_notification_flags_are_kept() {
    let redis = PrivateRedis::start(&["--notify-keyspace-events", "El"]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", redis.port)],
        ..Default::default()
    });
    let mut c = sdk(&sc).await;
    let (_, mut s) = open_stream(&mut c, "cfg", vec!["k"]).await;
    let flags = notify_flags(&url).await;
    assert!(
        "ElKg$xe".chars().all(|f| flags.contains(f)),
        "notify-keyspace-events {flags:?}"
    );
    RedisWriter::connect(&url).await.set("k", "v", "1").await;
    wait_stream(&mut s, "k", "v").await;
}

/// daprd's start-up check: the table must exist (the store never creates
/// it); `schema.table` is looked up in that schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_table_must_exist() {
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let table = unique("cfg").replace('-', "_");
    spar_tests::create_pg_config_table(&pool, &table, "unused").await;
    let build = |t: &str| {
        spar_components::registry::Registry::default()
            .build_configuration(
                &spar_config::Component::new(
                    "pg",
                    "configuration.postgresql",
                    &[
                        (
                            "connectionString",
                            "host=127.0.0.1 user=postgres port=5432 dbname=postgres",
                        ),
                        ("table", t),
                    ],
                ),
                &Default::default(),
            )
            .expect("build")
    };
    let e = build("no_such_table_here").init().await.unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    build(&format!("public.{table}"))
        .init()
        .await
        .expect("public.table");
    assert!(build(&format!("other.{table}")).init().await.is_err());
    spar_tests::drop_pg_config_table(&pool, &table).await;
}

/// A gRPC app (the Rust SDK's generated `AppCallback`) recording the
/// configuration updates it is invoked with.
#[derive(Default, Clone)]
struct GrpcApp {
    invoked: Arc<Mutex<Vec<(String, Value)>>>,
}

#[tonic::async_trait]
impl pb::app_callback_server::AppCallback for GrpcApp {
    async fn on_invoke(
        &self,
        req: tonic::Request<dapr::dapr::proto::common::v1::InvokeRequest>,
    ) -> Result<tonic::Response<dapr::dapr::proto::common::v1::InvokeResponse>, tonic::Status> {
        let r = req.into_inner();
        let body = r.data.map(|d| d.value).unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.invoked.lock().unwrap().push((r.method, v));
        Ok(tonic::Response::new(Default::default()))
    }

    async fn list_topic_subscriptions(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::ListTopicSubscriptionsResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn on_topic_event(
        &self,
        _: tonic::Request<pb::TopicEventRequest>,
    ) -> Result<tonic::Response<pb::TopicEventResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn list_input_bindings(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::ListInputBindingsResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn on_binding_event(
        &self,
        _: tonic::Request<pb::BindingEventRequest>,
    ) -> Result<tonic::Response<pb::BindingEventResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn on_bulk_topic_event(
        &self,
        _: tonic::Request<pb::TopicEventBulkRequest>,
    ) -> Result<tonic::Response<pb::TopicEventBulkResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn on_job_event(
        &self,
        _: tonic::Request<pb::JobEventRequest>,
    ) -> Result<tonic::Response<pb::JobEventResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }
}

/// With `--app-protocol grpc`, an HTTP subscription's updates reach the
/// app as `OnInvoke` of `/configuration/{store}/{key}` (daprd's gRPC app
/// channel), the update as its JSON data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_subscription_reaches_a_grpc_app() {
    let app = GrpcApp::default();
    let port = spar_tests::free_port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::app_callback_server::AppCallbackServer::new(app.clone()))
            .serve(([127, 0, 0, 1], port).into()),
    );
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", 6379)],
        extra_args: vec![
            "--app-port".into(),
            port.to_string(),
            "--app-protocol".into(),
            "grpc".into(),
        ],
        ..Default::default()
    });
    let key = unique("cfg");
    let r: Value = Client::new()
        .get(format!(
            "{}/v1.0/configuration/cfg/subscribe?key={key}",
            sc.http()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().expect("id").to_string();
    let w = RedisWriter::connect("redis://127.0.0.1:6379").await;
    w.set(&key, "grpc", "1").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = app.invoked.lock().unwrap().clone();
        if let Some((method, v)) = got.first() {
            assert_eq!(method, &format!("/configuration/cfg/{key}"));
            assert_eq!(v["id"], id);
            assert_eq!(v["items"][&key]["value"], "grpc");
            break;
        }
        assert!(Instant::now() < deadline, "the gRPC app was not invoked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    spar_tests::delete_redis_keys(&format!("{key}*")).await;
}
