//! The bindings API against the real binary: output over HTTP and gRPC
//! (the Rust `dapr` crate's generated client) to `bindings.http` (a local
//! axum server) and `bindings.localstorage`, daprd's errors, input
//! delivery of `bindings.cron` events to an HTTP app and to a gRPC app,
//! hot reload adding a binding, the metadata API and the metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{free_port, get_json, unique, Options, Sidecar};

fn component(name: &str, ty: &str, meta: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n"
    );
    for (k, v) in meta {
        s.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    if meta.is_empty() {
        s.push_str("  []\n");
    }
    s
}

/// What a test server saw: method, path, headers, body.
type Seen = Arc<Mutex<Vec<(String, String, HeaderMap, Bytes)>>>;

/// A server answering every request with its body echoed, `x-echo: yes`,
/// and 500 on `/fail`, after 3 s on `/slow`; 404 to `OPTIONS /unheard`
/// (an app not listening).
async fn echo_server() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(seen): State<Seen>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move {
                seen.lock().unwrap().push((
                    method.to_string(),
                    uri.to_string(),
                    headers,
                    body.clone(),
                ));
                if uri.path().ends_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let status = match (method.as_str(), uri.path()) {
                    (_, p) if p.ends_with("/fail") => StatusCode::INTERNAL_SERVER_ERROR,
                    ("OPTIONS", "/unheard") => StatusCode::NOT_FOUND,
                    _ => StatusCode::OK,
                };
                (status, [("x-echo", "yes")], body)
            },
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

async fn invoke(c: &Client, sc: &Sidecar, name: &str, body: &str) -> (u16, HeaderMap, Bytes) {
    let r = c
        .post(format!("{}/v1.0/bindings/{name}", sc.http()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap())
}

fn error_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_bindings_over_http() {
    let (port, seen) = echo_server().await;
    let url = format!("http://127.0.0.1:{port}/base");
    let sc = Sidecar::start(Options {
        resources: vec![
            component("web", "bindings.http", &[("url", &url)]),
            component(
                "lenient",
                "bindings.http",
                &[("url", &url), ("errorIfNot2XX", "false")],
            ),
            component(
                "hasty",
                "bindings.http",
                &[("url", &url), ("responseTimeout", "300ms")],
            ),
            component(
                "files",
                "bindings.localstorage",
                &[("rootPath", "{dir}/files")],
            ),
            component(
                "inonly",
                "bindings.localstorage",
                &[("rootPath", "{dir}/x"), ("direction", "input")],
            ),
            // Scoped to another app: not loaded here.
            component(
                "elsewhere",
                "bindings.localstorage",
                &[("rootPath", "{dir}/y")],
            ) + "scopes:\n- some-other-app\n",
        ],
        ..Default::default()
    });
    let c = Client::new();

    // bindings.http: path appended, capitalised metadata as headers, the
    // answer's status and headers as metadata.* response headers.
    let (s, h, b) = invoke(
        &c,
        &sc,
        "web",
        r#"{"operation":"post","data":{"b":1,"a":"x"},"metadata":{"path":"/items?q=1","X-Custom":"v","lower":"no"}}"#,
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(&b[..], br#"{"a":"x","b":1}"#);
    assert_eq!(h["metadata.statuscode"], "200");
    assert_eq!(h["metadata.x-echo"], "yes");
    {
        let seen = seen.lock().unwrap();
        let (m, uri, headers, body) = seen.last().unwrap();
        assert_eq!((m.as_str(), uri.as_str()), ("POST", "/base/items?q=1"));
        assert_eq!(headers["x-custom"], "v");
        assert!(headers.get("lower").is_none());
        assert_eq!(&body[..], br#"{"a":"x","b":1}"#);
    }
    // A non-2xx answer: ERR_INVOKE_OUTPUT_BINDING with the metadata still
    // sent; errorIfNot2XX: false passes it through.
    let (s, h, b) = invoke(
        &c,
        &sc,
        "web",
        r#"{"operation":"get","metadata":{"path":"/fail"}}"#,
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(error_of(&b)["errorCode"], "ERR_INVOKE_OUTPUT_BINDING");
    assert_eq!(h["metadata.statuscode"], "500");
    let (s, h, _) = invoke(
        &c,
        &sc,
        "lenient",
        r#"{"operation":"get","metadata":{"path":"/fail"}}"#,
    )
    .await;
    assert_eq!(
        (s, h["metadata.statuscode"].to_str().unwrap()),
        (200, "500")
    );

    // responseTimeout bounds a call.
    let started = Instant::now();
    let (s, _, b) = invoke(
        &c,
        &sc,
        "hasty",
        r#"{"operation":"get","metadata":{"path":"/slow"}}"#,
    )
    .await;
    assert_eq!(s, 500, "{}", String::from_utf8_lossy(&b));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // daprd's errors.
    let (s, _, b) = invoke(&c, &sc, "web", r#"{"operation":"explode"}"#).await;
    assert_eq!(s, 500);
    let e = error_of(&b);
    assert_eq!(e["errorCode"], "ERR_INVOKE_OUTPUT_BINDING");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("does not support operation explode"),
        "{e}"
    );
    let (s, _, b) = invoke(&c, &sc, "nosuch", r#"{"operation":"get"}"#).await;
    assert_eq!(s, 500);
    assert_eq!(
        error_of(&b)["message"],
        "error invoking output binding nosuch: couldn't find output binding nosuch"
    );
    let (s, _, b) = invoke(&c, &sc, "elsewhere", r#"{"operation":"list"}"#).await;
    assert_eq!(s, 500);
    assert!(error_of(&b)["message"]
        .as_str()
        .unwrap()
        .contains("couldn't find output binding"));
    // An input-only binding has no output side.
    let (s, _, b) = invoke(&c, &sc, "inonly", r#"{"operation":"list"}"#).await;
    assert_eq!(s, 500, "{}", String::from_utf8_lossy(&b));
    let (s, _, b) = invoke(&c, &sc, "web", r#"{"data":1}"#).await;
    assert_eq!(s, 500);
    assert!(error_of(&b)["message"]
        .as_str()
        .unwrap()
        .contains("operation field is missing"));
    for bad in ["", "{", r#"{"operation":"get","metadata":{"n":1}}"#] {
        let (s, _, b) = invoke(&c, &sc, "web", bad).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(error_of(&b)["errorCode"], "ERR_MALFORMED_REQUEST");
    }
    let r = c
        .get(format!("{}/v1.0/bindings/web", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // bindings.localstorage: create / get / list / delete, escapes refused.
    let (s, h, _) = invoke(
        &c,
        &sc,
        "files",
        r#"{"operation":"create","data":"Hello World","metadata":{"fileName":"a/b.txt"}}"#,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["metadata.filename"], "a/b.txt");
    assert_eq!(
        std::fs::read_to_string(sc.dir.path().join("files/a/b.txt")).unwrap(),
        "Hello World"
    );
    let (s, _, b) = invoke(
        &c,
        &sc,
        "files",
        r#"{"operation":"get","metadata":{"fileName":"a/b.txt"}}"#,
    )
    .await;
    assert_eq!((s, &b[..]), (200, &b"Hello World"[..]));
    let (s, _, b) = invoke(&c, &sc, "files", r#"{"operation":"create","data":"x"}"#).await;
    assert_eq!(s, 200);
    let generated = error_of(&b)["fileName"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID name");
    let (s, _, b) = invoke(&c, &sc, "files", r#"{"operation":"list"}"#).await;
    assert_eq!(s, 200);
    assert_eq!(error_of(&b).as_array().unwrap().len(), 2);
    for escape in ["../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt"] {
        let body = json!({"operation": "create", "data": "no", "metadata": {"fileName": escape}});
        let (s, _, b) = invoke(&c, &sc, "files", &body.to_string()).await;
        assert_eq!(s, 500, "{escape}");
        assert_eq!(error_of(&b)["errorCode"], "ERR_INVOKE_OUTPUT_BINDING");
    }
    assert!(!sc.dir.path().join("escaped.txt").exists());
    let (s, _, b) = invoke(&c, &sc, "files", r#"{"operation":"get"}"#).await;
    assert_eq!(s, 500);
    assert!(error_of(&b)["message"]
        .as_str()
        .unwrap()
        .contains("fileName"));
    let (s, _, _) = invoke(
        &c,
        &sc,
        "files",
        r#"{"operation":"delete","metadata":{"fileName":"a/b.txt"}}"#,
    )
    .await;
    assert_eq!(s, 204);
    assert!(!sc.dir.path().join("files/a/b.txt").exists());

    // The metadata API lists them; metrics count the calls.
    let md = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    let comps = md["components"].as_array().unwrap();
    let web = comps.iter().find(|c| c["name"] == "web").unwrap();
    assert_eq!(
        (web["type"].as_str(), web["version"].as_str()),
        (Some("bindings.http"), Some("v1"))
    );
    assert!(!comps.iter().any(|c| c["name"] == "elsewhere"));
    assert!(comps
        .iter()
        .any(|c| c["name"] == "files" && c["type"] == "bindings.localstorage"));
    let text = c
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("dapr_component_output_binding_count")
                && l.contains("component=\"web\"")
                && l.contains("operation=\"post\"")
                && l.contains("success=\"true\"")),
        "{text}"
    );
    assert!(text.contains("dapr_component_output_binding_latencies_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_binding_over_grpc_with_the_rust_sdk() {
    use dapr::dapr::proto::runtime::v1 as pb;
    let sc = Sidecar::start(Options {
        resources: vec![component(
            "files",
            "bindings.localstorage",
            &[("rootPath", "{dir}/files")],
        )],
        ..Default::default()
    });
    let mut client = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let req = |op: &str, data: &[u8], md: &[(&str, &str)]| pb::InvokeBindingRequest {
        name: "files".into(),
        data: data.to_vec(),
        metadata: md
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        operation: op.into(),
    };
    let r = client
        .invoke_binding(req("create", b"\"grpc data\"", &[("fileName", "g.txt")]))
        .await
        .unwrap();
    assert_eq!(r.metadata().get("metadata.filename").unwrap(), "g.txt");
    assert_eq!(r.get_ref().metadata["fileName"], "g.txt");
    let got = client
        .invoke_binding(req("get", b"", &[("fileName", "g.txt")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.data, b"grpc data");
    let e = client
        .invoke_binding(req("explode", b"", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    assert!(
        e.message().starts_with(
            "error invoking output binding files: binding files does not support operation explode"
        ),
        "{}",
        e.message()
    );
    let mut other = req("get", b"", &[]);
    other.name = "nosuch".into();
    let e = client.invoke_binding(other).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    assert!(e.message().contains("couldn't find output binding nosuch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_into_an_http_app() {
    let (port, seen) = echo_server().await;
    let sc = Sidecar::start(Options {
        resources: vec![
            component(
                "tick",
                "bindings.cron",
                &[("schedule", "@every 1s"), ("route", "/ticks")],
            ),
            // The app answers 404 to OPTIONS /unheard: not delivered.
            component("unheard", "bindings.cron", &[("schedule", "@every 1s")]),
        ],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let elapsed = start.elapsed().as_secs();
    let posts: Vec<(String, HeaderMap)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _, _, _)| m == "POST")
        .map(|(_, u, h, _)| (u.clone(), h.clone()))
        .collect();
    let ticks: Vec<_> = posts.iter().filter(|(u, _)| u == "/ticks").collect();
    // Generous: the machine is shared; one event a second, give or take.
    assert!(
        ticks.len() >= 3 && ticks.len() as u64 <= elapsed + 2,
        "{} ticks in {elapsed}s",
        ticks.len()
    );
    assert!(
        !posts.iter().any(|(u, _)| u == "/unheard"),
        "a binding the app does not listen to"
    );
    let h = &ticks[0].1;
    assert_eq!(h["timezone"], "UTC");
    assert!(h["readtimeutc"].to_str().unwrap().ends_with("+0000 UTC"));
    assert_eq!(h["content-type"], "application/json");
    let text = c
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("dapr_component_input_binding_count")
                && l.contains("component=\"tick\"")
                && l.contains("success=\"true\"")),
        "{text}"
    );
}

#[derive(Clone, Default)]
struct GrpcApp {
    events: Arc<Mutex<Vec<dapr::dapr::proto::runtime::v1::BindingEventRequest>>>,
}

#[tonic::async_trait]
impl dapr::dapr::proto::runtime::v1::app_callback_server::AppCallback for GrpcApp {
    async fn on_invoke(
        &self,
        _: tonic::Request<dapr::dapr::proto::common::v1::InvokeRequest>,
    ) -> Result<tonic::Response<dapr::dapr::proto::common::v1::InvokeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn list_topic_subscriptions(
        &self,
        _: tonic::Request<()>,
    ) -> Result<
        tonic::Response<dapr::dapr::proto::runtime::v1::ListTopicSubscriptionsResponse>,
        tonic::Status,
    > {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn on_topic_event(
        &self,
        _: tonic::Request<dapr::dapr::proto::runtime::v1::TopicEventRequest>,
    ) -> Result<tonic::Response<dapr::dapr::proto::runtime::v1::TopicEventResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn list_input_bindings(
        &self,
        _: tonic::Request<()>,
    ) -> Result<
        tonic::Response<dapr::dapr::proto::runtime::v1::ListInputBindingsResponse>,
        tonic::Status,
    > {
        Ok(tonic::Response::new(
            dapr::dapr::proto::runtime::v1::ListInputBindingsResponse {
                bindings: vec!["grpccron".into()],
            },
        ))
    }

    async fn on_binding_event(
        &self,
        req: tonic::Request<dapr::dapr::proto::runtime::v1::BindingEventRequest>,
    ) -> Result<tonic::Response<dapr::dapr::proto::runtime::v1::BindingEventResponse>, tonic::Status>
    {
        self.events.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }

    async fn on_bulk_topic_event(
        &self,
        _: tonic::Request<dapr::dapr::proto::runtime::v1::TopicEventBulkRequest>,
    ) -> Result<
        tonic::Response<dapr::dapr::proto::runtime::v1::TopicEventBulkResponse>,
        tonic::Status,
    > {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn on_job_event(
        &self,
        _: tonic::Request<dapr::dapr::proto::runtime::v1::JobEventRequest>,
    ) -> Result<tonic::Response<dapr::dapr::proto::runtime::v1::JobEventResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("no"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_into_a_grpc_app() {
    use dapr::dapr::proto::runtime::v1::app_callback_server::AppCallbackServer;
    let app = GrpcApp::default();
    let port = free_port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AppCallbackServer::new(app.clone()))
            .serve(([127, 0, 0, 1], port).into()),
    );
    let _sc = Sidecar::start(Options {
        resources: vec![
            component("grpccron", "bindings.cron", &[("schedule", "@every 1s")]),
            // Not listed by the app: not delivered.
            component("unlisted", "bindings.cron", &[("schedule", "@every 1s")]),
        ],
        extra_args: vec![
            "--app-port".into(),
            port.to_string(),
            "--app-protocol".into(),
            "grpc".into(),
        ],
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    let events = app.events.lock().unwrap().clone();
    assert!(
        events.len() >= 3 && events.len() <= 9,
        "{} events",
        events.len()
    );
    assert!(events.iter().all(|e| e.name == "grpccron"));
    assert_eq!(events[0].metadata["timeZone"], "UTC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_adds_a_binding() {
    let sc = Sidecar::start(Options {
        resources: vec![component(
            "first",
            "bindings.localstorage",
            &[("rootPath", "{dir}/one")],
        )],
        ..Default::default()
    });
    let c = Client::new();
    let (s, _, _) = invoke(&c, &sc, "second", r#"{"operation":"list"}"#).await;
    assert_eq!(s, 500);
    let root = sc.dir.path().join("two").display().to_string();
    std::fs::write(
        sc.dir.path().join("resources/second.yaml"),
        component("second", "bindings.localstorage", &[("rootPath", &root)]),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _, b) = invoke(&c, &sc, "second", r#"{"operation":"list"}"#).await;
        if s == 200 {
            assert_eq!(&b[..], b"[]");
            break;
        }
        assert!(Instant::now() < deadline, "the new binding never loaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let md = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    let names: Vec<&str> = md["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"first") && names.contains(&"second"),
        "{names:?}"
    );
}

#[test]
fn unknown_binding_type_stops_start_up() {
    let mut cmd = std::process::Command::new(spar_tests::spar_bin());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kafka.yaml"),
        component("queue", "bindings.kafka", &[("brokers", "localhost:9092")]),
    )
    .unwrap();
    let out = cmd
        .args([
            "run",
            "--app-id",
            &unique("bad"),
            "--dapr-http-port",
            &free_port().to_string(),
            "--dapr-grpc-port",
            &free_port().to_string(),
            "--metrics-port",
            &free_port().to_string(),
            "--resources-path",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bindings.kafka") && err.contains("kafka.yaml"),
        "{err}"
    );
}

/// `bindings.postgresql` and `bindings.mysql` on the machine's PostgreSQL
/// (5432) and MariaDB (3306): exec with bound parameters (a value that
/// looks like SQL stays a value), query rows as daprd shapes them, a
/// failing statement, missing `sql`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_bindings_on_postgresql_and_mariadb() {
    let sc = Sidecar::start(Options {
        resources: vec![
            component(
                "pg",
                "bindings.postgresql",
                &[(
                    "connectionString",
                    "host=127.0.0.1 user=postgres port=5432 dbname=postgres",
                )],
            ),
            component(
                "my",
                "bindings.mysql",
                &[("connectionString", "root:@tcp(127.0.0.1:3306)/test")],
            ),
        ],
        ..Default::default()
    });
    let c = Client::new();
    let table = unique("sqlbind").replace('-', "_");
    let sql = |op: &str, sql: &str, params: Value| {
        let mut md = json!({ "sql": sql });
        if !params.is_null() {
            md["params"] = Value::String(params.to_string());
        }
        json!({ "operation": op, "metadata": md }).to_string()
    };
    let evil = "x'); DROP TABLE nothing; --";
    for (name, ph) in [("pg", ["$1", "$2"]), ("my", ["?", "?"])] {
        let (s, _, b) = invoke(
            &c,
            &sc,
            name,
            &sql(
                "exec",
                &format!("CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(100))"),
                Value::Null,
            ),
        )
        .await;
        assert_eq!(s, 200, "{name}: {}", String::from_utf8_lossy(&b));
        let insert = format!(
            "INSERT INTO {table} (id, name) VALUES ({}, {})",
            ph[0], ph[1]
        );
        let (s, h, _) = invoke(&c, &sc, name, &sql("exec", &insert, json!([1, "one"]))).await;
        assert_eq!(s, 200);
        assert_eq!(h["metadata.rows-affected"], "1");
        assert_eq!(h["metadata.operation"], "exec");
        let (s, _, _) = invoke(&c, &sc, name, &sql("exec", &insert, json!([2, evil]))).await;
        assert_eq!(s, 200);
        let (s, _, b) = invoke(
            &c,
            &sc,
            name,
            &sql(
                "query",
                &format!(
                    "SELECT id, name FROM {table} WHERE id >= {} ORDER BY id",
                    ph[0]
                ),
                json!([1]),
            ),
        )
        .await;
        assert_eq!(s, 200, "{name}: {}", String::from_utf8_lossy(&b));
        let rows: Value = serde_json::from_slice(&b).unwrap();
        let expected = if name == "pg" {
            json!([[1, "one"], [2, evil]])
        } else {
            json!([{"id": 1, "name": "one"}, {"id": 2, "name": evil}])
        };
        assert_eq!(rows, expected, "{name}");
        let (s, _, b) = invoke(
            &c,
            &sc,
            name,
            &sql("query", "SELECT * FROM no_such_table_here", Value::Null),
        )
        .await;
        assert_eq!(s, 500);
        assert_eq!(error_of(&b)["errorCode"], "ERR_INVOKE_OUTPUT_BINDING");
        let (s, _, b) = invoke(&c, &sc, name, r#"{"operation":"query"}"#).await;
        assert_eq!(s, 500);
        assert!(error_of(&b)["message"].as_str().unwrap().contains("sql"));
        let (s, _, _) = invoke(
            &c,
            &sc,
            name,
            &sql("exec", &format!("DROP TABLE {table}"), Value::Null),
        )
        .await;
        assert_eq!(s, 200);
        let (s, _, _) = invoke(&c, &sc, name, r#"{"operation":"close"}"#).await;
        assert_eq!(s, 204);
    }
}

/// An app that refuses each distinct body twice (500), then takes it.
async fn refusing_app() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(seen): State<Seen>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move {
                let mut s = seen.lock().unwrap();
                let before = s
                    .iter()
                    .filter(|(m, u, _, b)| m == "POST" && u == &uri.to_string() && b == &body)
                    .count();
                s.push((method.to_string(), uri.to_string(), headers, body.clone()));
                if method == Method::POST && before < 2 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            },
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

/// `bindings.mqtt3` (Mosquitto, 1883) and `bindings.rabbitmq` (5672), both
/// sides: what the output side sends comes back through the input side to
/// the app, which refuses it twice and gets it a third time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_bindings_redeliver_until_the_app_takes_it() {
    let (port, seen) = refusing_app().await;
    let (topic, queue, mqc) = (unique("bind/mqtt"), unique("bindq"), unique("mqc"));
    let sc = Sidecar::start(Options {
        resources: vec![
            component(
                "mq",
                "bindings.mqtt3",
                &[
                    ("url", "tcp://127.0.0.1:1883"),
                    ("topic", &topic),
                    ("consumerID", &mqc),
                    ("direction", "input, output"),
                ],
            ),
            component(
                "rabbit",
                "bindings.rabbitmq",
                &[
                    ("host", "amqp://guest:guest@127.0.0.1:5672"),
                    ("queueName", &queue),
                    ("deleteWhenUnused", "true"),
                    ("direction", "input, output"),
                ],
            ),
        ],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    // Input subscriptions start once the app is up; give them a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, route) in [("mq", "/mq"), ("rabbit", "/rabbit")] {
        let body = json!({"operation": "create", "data": format!("to-{name}")}).to_string();
        let (s, _, b) = invoke(&c, &sc, name, &body).await;
        assert_eq!(s, 204, "{name}: {}", String::from_utf8_lossy(&b));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, u, _, _)| m == "POST" && u == route)
                .count();
            if n >= 3 {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: {n} deliveries");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Taken the third time: no fourth delivery.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let posts: Vec<Bytes> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, u, _, _)| m == "POST" && u == route)
            .map(|(_, _, _, b)| b.clone())
            .collect();
        assert_eq!(posts.len(), 3, "{name}");
        assert!(
            posts
                .iter()
                .all(|b| &b[..] == format!("\"to-{name}\"").as_bytes()),
            "{name}: {posts:?}"
        );
    }
    spar_tests::clear_mqtt_clients(&[&mqc]).await;
}

/// A Python with `aiosmtpd` (`$SPAR_PYTHON`, else the repository's
/// `.venv`), or `None`: the SMTP test then says it is skipped.
fn python_with_aiosmtpd() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("SPAR_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
        });
    let ok = std::process::Command::new(&p)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

/// `aiosmtpd` on `port` storing mail in `maildir` (a Maildir), once it
/// accepts connections.
fn aiosmtpd(
    python: &std::path::Path,
    port: u16,
    maildir: &std::path::Path,
    extra: &[&str],
) -> std::process::Child {
    let server = std::process::Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(extra)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// The mails in a Maildir, waiting (bounded) for the first.
async fn mails(maildir: &std::path::Path) -> Vec<String> {
    let mut mails = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mails.is_empty() && Instant::now() < deadline {
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
                for e in rd.flatten() {
                    mails.push(std::fs::read_to_string(e.path()).unwrap());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mails
}

/// `bindings.smtp` against a local `aiosmtpd` server (plain SMTP, no
/// auth): the mail arrives with daprd's fields, a call's metadata
/// overriding the component's; missing `emailTo` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_binding_sends_mail() {
    let Some(python) = python_with_aiosmtpd() else {
        eprintln!("skipped: no Python with aiosmtpd (set SPAR_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let port = free_port();
    let mut server = aiosmtpd(&python, port, &maildir, &[]);
    let sc = Sidecar::start(Options {
        resources: vec![component(
            "mail",
            "bindings.smtp",
            &[
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("emailFrom", "spar@example.com"),
                ("subject", "default subject"),
            ],
        )],
        ..Default::default()
    });
    let c = Client::new();
    let body = json!({
        "operation": "create",
        "data": "<b>hello</b>",
        "metadata": {"emailTo": "a@example.com;b@example.com", "emailBCC": "hidden@example.com", "subject": "Greetings", "priority": "1"}
    });
    let (s, _, b) = invoke(&c, &sc, "mail", &body.to_string()).await;
    assert_eq!(s, 204, "{}", String::from_utf8_lossy(&b));
    let (s, _, b) = invoke(&c, &sc, "mail", r#"{"operation":"create","data":"x"}"#).await;
    assert_eq!(s, 500);
    assert!(error_of(&b)["message"]
        .as_str()
        .unwrap()
        .contains("emailTo"));
    let mails = mails(&maildir).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    for want in [
        "From: spar@example.com",
        "To: a@example.com, b@example.com",
        "Subject: Greetings",
        "X-Priority: 1",
        "\"<b>hello</b>\"",
    ] {
        assert!(m.contains(want), "{want:?} not in {m}");
    }
    // Bcc: a recipient (aiosmtpd's X-RcptTo lists the envelope), not a header.
    assert!(!m.lines().any(|l| l.starts_with("Bcc:")), "{m}");
    let rcpt = m
        .lines()
        .find(|l| l.starts_with("X-RcptTo:"))
        .unwrap_or_default();
    assert!(
        rcpt.contains("hidden@example.com") && rcpt.contains("b@example.com"),
        "{rcpt}"
    );
}

/// An HTTPS server with a self-signed certificate for `localhost`
/// answering every request `200 ok`; returns its port and the
/// certificate's PEM.
async fn https_server() -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, cert.pem())
}

/// `bindings.http` over TLS: trusted through `MTLSRootCA` (a file path,
/// or the PEM itself); refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_binding_trusts_its_root_ca() {
    let (port, pem) = https_server().await;
    let url = format!("https://localhost:{port}");
    let sc = Sidecar::start_with_files(
        Options {
            resources: vec![
                component(
                    "tls",
                    "bindings.http",
                    &[("url", &url), ("MTLSRootCA", "{dir}/ca.pem")],
                ),
                component("untrusted", "bindings.http", &[("url", &url)]),
            ],
            ..Default::default()
        },
        &[("ca.pem", &pem)],
    );
    let c = Client::new();
    let (s, h, b) = invoke(&c, &sc, "tls", r#"{"operation":"get"}"#).await;
    assert_eq!(
        (s, &b[..]),
        (200, &b"ok"[..]),
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(h["metadata.statuscode"], "200");
    let (s, _, b) = invoke(&c, &sc, "untrusted", r#"{"operation":"get"}"#).await;
    assert_eq!(s, 500);
    assert_eq!(error_of(&b)["errorCode"], "ERR_INVOKE_OUTPUT_BINDING");
}

/// `targets.components.{name}.inbound` retries wrap input deliveries: a
/// cron event the app refuses twice is retried at once and taken, well
/// before the next tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_resiliency_retries_input_deliveries() {
    let (port, seen) = refusing_app().await;
    let resiliency = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    retries:\n      quick:\n        policy: constant\n        duration: 50ms\n        maxRetries: 3\n  targets:\n    components:\n      slow:\n        inbound:\n          retry: quick\n";
    let _sc = Sidecar::start(Options {
        resources: vec![
            component(
                "slow",
                "bindings.cron",
                &[("schedule", "@every 3s"), ("direction", "input")],
            ),
            resiliency.to_string(),
        ],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let posts = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(m, u, _, _)| m == "POST" && u == "/slow")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while posts() == 0 {
        assert!(Instant::now() < deadline, "no tick");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        posts(),
        3,
        "refused twice, retried, taken — before the next tick"
    );
}

/// With app health checks on, input events stop while the app is
/// unhealthy and resume when it is healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_events_while_the_app_is_unhealthy() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    #[derive(Clone, Default)]
    struct App {
        sick: Arc<AtomicBool>,
        ticks: Arc<AtomicUsize>,
    }
    let app = App::default();
    let router = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(|State(a): State<App>| async move {
                if a.sick.load(Ordering::SeqCst) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/beat",
            axum::routing::post(|State(a): State<App>| async move {
                a.ticks.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }),
        )
        .with_state(app.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    let _sc = Sidecar::start(Options {
        resources: vec![component(
            "beat",
            "bindings.cron",
            &[("schedule", "@every 1s"), ("direction", "input")],
        )],
        extra_args: [
            "--app-port",
            &port.to_string(),
            "--enable-app-health-check",
            "--app-health-check-path",
            "/healthz",
            "--app-health-probe-interval",
            "1",
            "--app-health-threshold",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.ticks.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no events while healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.sick.store(true, Ordering::SeqCst);
    // One probe interval (and a tick in flight) for the sidecar to notice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let frozen = app.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        app.ticks.load(Ordering::SeqCst),
        frozen,
        "events while unhealthy"
    );
    app.sick.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.ticks.load(Ordering::SeqCst) == frozen {
        assert!(Instant::now() < deadline, "events did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `bindings.redis` on the machine's Redis: create (with a TTL), get,
/// increment, delete, and a missing key refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_binding_round_trip() {
    let sc = Sidecar::start(Options {
        resources: vec![component(
            "cache",
            "bindings.redis",
            &[("redisHost", "127.0.0.1:6379")],
        )],
        ..Default::default()
    });
    let c = Client::new();
    let key = unique("bindkey");
    let call = |op: &str, data: Value, md: Value| {
        json!({"operation": op, "data": data, "metadata": md}).to_string()
    };
    let (s, _, _) = invoke(
        &c,
        &sc,
        "cache",
        &call(
            "create",
            json!({"n": 1}),
            json!({"key": key, "ttlInSeconds": "60"}),
        ),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _, b) = invoke(
        &c,
        &sc,
        "cache",
        &call("get", Value::Null, json!({"key": key})),
    )
    .await;
    assert_eq!((s, &b[..]), (200, &br#"{"n":1}"#[..]));
    let mut r = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut r)
        .await
        .unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    let counter = format!("{key}-n");
    for _ in 0..3 {
        let (s, _, _) = invoke(
            &c,
            &sc,
            "cache",
            &call("increment", Value::Null, json!({"key": counter})),
        )
        .await;
        assert_eq!(s, 204);
    }
    let (s, _, b) = invoke(
        &c,
        &sc,
        "cache",
        &call("get", Value::Null, json!({"key": counter})),
    )
    .await;
    assert_eq!((s, &b[..]), (200, &b"3"[..]));
    for k in [&key, &counter] {
        let (s, _, _) = invoke(
            &c,
            &sc,
            "cache",
            &call("delete", Value::Null, json!({"key": k})),
        )
        .await;
        assert_eq!(s, 204);
    }
    let (s, _, _) = invoke(
        &c,
        &sc,
        "cache",
        &call("get", Value::Null, json!({"key": key})),
    )
    .await;
    assert_eq!(s, 204, "a missing key answers nothing");
    let (s, _, b) = invoke(&c, &sc, "cache", &call("get", Value::Null, json!({}))).await;
    assert_eq!(s, 500);
    assert!(error_of(&b)["message"]
        .as_str()
        .unwrap()
        .contains("missing key"));
}

/// Nothing lost when the sidecar reading a broker binding is SIGKILLed
/// mid-stream: another sidecar sends 0..200 through the binding's output
/// side while the reading one is killed and restarted; the app gets every
/// message at least once (RabbitMQ: durable queue, persistent messages,
/// unacknowledged ones requeued; MQTT: the persistent session resumes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_bindings_lose_nothing_when_the_sidecar_is_killed() {
    const N: usize = 200;
    for ty in ["bindings.rabbitmq", "bindings.mqtt3"] {
        let got: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
        let router =
            axum::Router::new()
                .fallback(
                    |State(got): State<Arc<Mutex<std::collections::BTreeSet<String>>>>,
                     body: Bytes| async move {
                        got.lock()
                            .unwrap()
                            .insert(String::from_utf8_lossy(&body).into_owned());
                        StatusCode::OK
                    },
                )
                .with_state(got.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
        let (name, consumer) = (unique("durq"), unique("durc"));
        let meta = |direction: &str| -> String {
            if ty == "bindings.rabbitmq" {
                component(
                    "stream",
                    ty,
                    &[
                        ("host", "amqp://guest:guest@127.0.0.1:5672"),
                        ("queueName", &name),
                        ("durable", "true"),
                        ("deliveryMode", "2"),
                        ("reconnectWait", "300ms"),
                        ("direction", direction),
                    ],
                )
            } else {
                component(
                    "stream",
                    ty,
                    &[
                        ("url", "tcp://127.0.0.1:1883"),
                        ("topic", &name),
                        ("consumerID", &consumer),
                        ("direction", direction),
                    ],
                )
            }
        };
        let reader = |port: u16| {
            Sidecar::start(Options {
                resources: vec![meta("input")],
                extra_args: vec!["--app-port".into(), port.to_string()],
                ..Default::default()
            })
        };
        let mut sub = reader(port);
        // The reader's queue / session exists before anything is sent.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let publisher = Sidecar::start(Options {
            resources: vec![meta("output")],
            ..Default::default()
        });
        let url = format!("{}/v1.0/bindings/stream", publisher.http());
        let sender = tokio::spawn(async move {
            let c = Client::new();
            for n in 0..N {
                let body = json!({"operation": "create", "data": {"n": n}}).to_string();
                let r = c.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 204);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.lock().unwrap().len() < 30 {
            assert!(Instant::now() < deadline, "{ty}: no deliveries");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sub.child.kill().unwrap(); // SIGKILL
        sub.child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _sub2 = reader(port);
        sender.await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.lock().unwrap().len() < N && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = got.lock().unwrap().clone();
        let missing: Vec<usize> = (0..N)
            .filter(|n| !got.contains(&format!("{{\"n\":{n}}}")))
            .collect();
        if ty == "bindings.rabbitmq" {
            spar_tests::delete_rabbitmq(&name).await;
        } else {
            spar_tests::clear_mqtt_clients(&[&consumer]).await;
        }
        assert!(
            missing.is_empty(),
            "{ty}: lost {} messages: {missing:?}",
            missing.len()
        );
    }
}

/// Hot reload adding an input binding starts its delivery to the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_starts_a_new_input_binding() {
    let (port, seen) = echo_server().await;
    let sc = Sidecar::start(Options {
        resources: vec![component(
            "files",
            "bindings.localstorage",
            &[("rootPath", "{dir}/files")],
        )],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    std::fs::write(
        sc.dir.path().join("resources/late.yaml"),
        component(
            "late",
            "bindings.cron",
            &[("schedule", "@every 1s"), ("direction", "input")],
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|(m, u, _, _)| m == "POST" && u == "/late")
    {
        assert!(
            Instant::now() < deadline,
            "the new cron binding never fired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `bindings.mqtt3` input on a wildcard topic gets what another binding
/// publishes to a concrete topic (a call's `topic` metadata), with that
/// topic in the event's metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_binding_wildcard_input() {
    let (port, seen) = echo_server().await;
    let (base, consumer) = (unique("bindwild"), unique("wildc"));
    let sc = Sidecar::start(Options {
        resources: vec![
            component(
                "wild",
                "bindings.mqtt3",
                &[
                    ("url", "tcp://127.0.0.1:1883"),
                    ("topic", &format!("{base}/+")),
                    ("consumerID", &consumer),
                    ("direction", "input"),
                ],
            ),
            component(
                "out",
                "bindings.mqtt3",
                &[
                    ("url", "tcp://127.0.0.1:1883"),
                    ("topic", &format!("{base}/default")),
                    ("direction", "output"),
                ],
            ),
        ],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body =
        json!({"operation": "create", "data": "w", "metadata": {"topic": format!("{base}/room1")}});
    let (s, _, _) = invoke(&c, &sc, "out", &body.to_string()).await;
    assert_eq!(s, 204);
    let deadline = Instant::now() + Duration::from_secs(15);
    let topic = loop {
        let t = seen
            .lock()
            .unwrap()
            .iter()
            .find(|(m, u, _, _)| m == "POST" && u == "/wild")
            .map(|(_, _, h, _)| h["topic"].to_str().unwrap().to_string());
        if let Some(t) = t {
            break t;
        }
        assert!(Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(topic, format!("{base}/room1"));
    spar_tests::clear_mqtt_clients(&[&consumer]).await;
}

/// `bindings.smtp` upgrades with STARTTLS when the server offers it (this
/// `aiosmtpd` refuses mail without it): with `skipTLSVerify` its
/// self-signed certificate is accepted; without, the call fails and
/// nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_binding_uses_starttls() {
    let Some(python) = python_with_aiosmtpd() else {
        eprintln!("skipped: no Python with aiosmtpd (set SPAR_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key_pair.serialize_pem()).unwrap();
    let maildir = dir.path().join("mail");
    let port = free_port();
    let mut server = aiosmtpd(
        &python,
        port,
        &maildir,
        &[
            "--tlscert",
            cert_file.to_str().unwrap(),
            "--tlskey",
            key_file.to_str().unwrap(),
        ],
    );
    let smtp = |name: &str, skip: &str| {
        component(
            name,
            "bindings.smtp",
            &[
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("skipTLSVerify", skip),
                ("emailFrom", "spar@example.com"),
                ("emailTo", "tls@example.com"),
            ],
        )
    };
    let sc = Sidecar::start(Options {
        resources: vec![smtp("tls", "true"), smtp("strict", "false")],
        ..Default::default()
    });
    let c = Client::new();
    let (s, _, b) = invoke(&c, &sc, "strict", r#"{"operation":"create","data":"no"}"#).await;
    assert_eq!(s, 500, "{}", String::from_utf8_lossy(&b));
    assert!(error_of(&b)["message"]
        .as_str()
        .unwrap()
        .contains("TLS handshake"));
    let (s, _, b) = invoke(
        &c,
        &sc,
        "tls",
        r#"{"operation":"create","data":"over tls"}"#,
    )
    .await;
    assert_eq!(s, 204, "{}", String::from_utf8_lossy(&b));
    let got = mails(&maildir).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("over tls"));
}
