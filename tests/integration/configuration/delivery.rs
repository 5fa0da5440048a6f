//! Changes reaching subscribers: HTTP apps (and gRPC apps through
//! `OnInvoke`), gRPC streams (the Rust `dapr` crate), every store; several
//! streams on one key; unsubscribe, stream close and shutdown ending them;
//! a slow app getting the latest value rather than a backlog.

use super::*;

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
