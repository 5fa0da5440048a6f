//! Subscription kinds beyond plain HTTP delivery, against the real `spar`
//! binary and the in-memory broker (Mosquitto for an MQTT wildcard filter):
//! bulk subscribe to an HTTP app (batches, rawPayload entries,
//! per-entry RETRY / DROP, dead letters), a gRPC app built on the official
//! Rust SDK's generated `AppCallback` service (`ListTopicSubscriptions`
//! with routes, `OnTopicEvent`, `OnBulkTopicEvent`), and streaming
//! subscriptions through the SDK's generated `Dapr` client
//! (`SubscribeTopicEventsAlpha1`), including an event handed back to the
//! broker when its stream goes away unanswered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as pb;
use pb::app_callback_server::{AppCallback, AppCallbackServer};
use pb::topic_event_response::TopicEventResponseStatus as Status;
use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{free_port, get_json, unique, Options, Sidecar};
use tonic::{Request, Response};

fn in_memory() -> String {
    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.in-memory\n  version: v1\n".into()
}

async fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subscribed(c: &Client, sc: &Sidecar, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_json(c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_none_or(|a| a.len() < n)
    {
        assert!(Instant::now() < deadline, "subscriptions not started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish(c: &Client, sc: &Sidecar, topic: &str, body: Value) {
    let r = c
        .post(format!("{}/v1.0/publish/ps/{topic}", sc.http()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
}

type Posts = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP app taking bulk deliveries on `/bulk`: entries whose data has
/// `"drop": true` get DROP, `"retry": true` RETRY the first time; single
/// deliveries (the dead-letter topic) are recorded on their path.
async fn bulk_app() -> (u16, Posts) {
    let posts: Posts = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(posts): State<Posts>, uri: Uri, body: Bytes| async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut p = posts.lock().unwrap();
                let retried: Vec<Value> = p
                    .iter()
                    .filter(|(path, _)| path == "/bulk")
                    .flat_map(|(_, b)| b["entries"].as_array().cloned().unwrap_or_default())
                    .map(|e| e["event"]["data"]["n"].clone())
                    .collect();
                p.push((uri.path().to_string(), v.clone()));
                if uri.path() != "/bulk" {
                    return axum::Json(json!({"status": "SUCCESS"}));
                }
                let statuses: Vec<Value> = v["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let d = &e["event"]["data"];
                        let status = if d["drop"] == true {
                            "DROP"
                        } else if d["retry"] == true && !retried.contains(&d["n"]) {
                            "RETRY"
                        } else {
                            "SUCCESS"
                        };
                        json!({"entryId": e["entryId"], "status": status})
                    })
                    .collect();
                axum::Json(json!({ "statuses": statuses }))
            },
        )
        .with_state(posts.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_subscribe_http() {
    let (port, posts) = bulk_app().await;
    let (topic, dlq) = (unique("bulk"), unique("bulk-dlq"));
    let subs = format!(
        r#"apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: bulk-sub
spec:
  pubsubname: ps
  topic: {topic}
  routes:
    default: /bulk
  deadLetterTopic: {dlq}
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 10
    maxAwaitDurationMs: 300
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: dlq-sub
spec:
  pubsubname: ps
  topic: {dlq}
  routes:
    default: /dead
"#
    );
    let sc = Sidecar::start(Options {
        resources: vec![in_memory(), subs],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    subscribed(&c, &sc, 2).await;
    for n in 0..25 {
        publish(
            &c,
            &sc,
            &topic,
            json!({"n": n, "retry": n == 3, "drop": n == 7}),
        )
        .await;
    }
    let done = wait_until(Duration::from_secs(15), || {
        let p = posts.lock().unwrap();
        let dead = p.iter().filter(|(path, _)| path == "/dead").count();
        let mut ok: Vec<i64> = Vec::new();
        for (path, b) in p.iter().filter(|(path, _)| path == "/bulk") {
            assert_eq!(path, "/bulk");
            for e in b["entries"].as_array().unwrap() {
                ok.push(e["event"]["data"]["n"].as_i64().unwrap());
            }
        }
        ok.sort();
        ok.dedup();
        (ok.len() == 25 && dead == 1).then(|| p.clone())
    })
    .await
    .expect("every message delivered in bulk, the dropped one dead-lettered");
    let bulks: Vec<&Value> = done
        .iter()
        .filter(|(p, _)| p == "/bulk")
        .map(|(_, b)| b)
        .collect();
    assert!(bulks.len() >= 3, "25 messages in batches of at most 10");
    for b in &bulks {
        let n = b["entries"].as_array().unwrap().len();
        assert!((1..=10).contains(&n), "batch of {n}");
        assert_eq!(b["type"], "com.dapr.event.sent.bulk");
        assert_eq!(b["topic"], topic.as_str());
        assert_eq!(b["pubsubname"], "ps");
        let e = &b["entries"][0];
        assert_eq!(e["contentType"], "application/cloudevents+json");
        assert_eq!(e["event"]["specversion"], "1.0");
        assert_eq!(e["event"]["source"], sc.app_id.as_str());
    }
    // n = 3 came once more after its RETRY; n = 7 went to the dead letters.
    let threes = bulks
        .iter()
        .flat_map(|b| b["entries"].as_array().unwrap())
        .filter(|e| e["event"]["data"]["n"] == 3)
        .count();
    assert_eq!(threes, 2);
    let dead = done.iter().find(|(p, _)| p == "/dead").unwrap();
    assert_eq!(dead.1["data"]["n"], 7);
}

/// Bulk subscribe with `rawPayload` to an HTTP app: each entry is the
/// broker's bytes in base64 as `application/octet-stream`, as daprd sends
/// it, not a CloudEvent wrapper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_subscribe_http_raw_payload() {
    use base64::Engine;
    let (port, posts) = bulk_app().await;
    let topic = unique("bulk-raw");
    let subs = format!(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: raw-bulk\nspec:\n  pubsubname: ps\n  topic: {topic}\n  routes:\n    default: /bulk\n  metadata:\n    rawPayload: \"true\"\n  bulkSubscribe:\n    enabled: true\n    maxMessagesCount: 10\n    maxAwaitDurationMs: 200\n"
    );
    let sc = Sidecar::start(Options {
        resources: vec![in_memory(), subs],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::new();
    subscribed(&c, &sc, 1).await;
    for n in 0..5 {
        let r = c
            .post(format!(
                "{}/v1.0/publish/ps/{topic}?metadata.rawPayload=true",
                sc.http()
            ))
            .header("content-type", "text/plain")
            .body(format!("raw-{n}\u{0}\u{ff}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let bulks = wait_until(Duration::from_secs(10), || {
        let p = posts.lock().unwrap();
        let n: usize = p
            .iter()
            .map(|(_, b)| b["entries"].as_array().map_or(0, Vec::len))
            .sum();
        (n >= 5).then(|| p.clone())
    })
    .await
    .expect("five raw entries");
    let mut got = Vec::new();
    let mut ids = Vec::new();
    for (_, b) in bulks.iter().filter(|(path, _)| path == "/bulk") {
        assert_eq!(b["type"], "com.dapr.event.sent.bulk");
        assert_eq!(b["pubsubname"], "ps");
        assert_eq!(b["topic"], topic.as_str());
        assert_eq!(b["metadata"]["pubsubName"], "ps", "{b}");
        for e in b["entries"].as_array().unwrap() {
            assert_eq!(e["contentType"], "application/octet-stream", "{e}");
            let text = e["event"].as_str().expect("event is a base64 string");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap();
            got.push(String::from_utf8_lossy(&bytes).into_owned());
            assert!(e["metadata"].is_object(), "{e}");
            ids.push(e["entryId"].as_str().unwrap().to_string());
        }
    }
    got.sort();
    let want: Vec<String> = (0..5).map(|n| format!("raw-{n}\u{0}\u{ff}")).collect();
    assert_eq!(got, want);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "entry ids are unique");
    // Answered SUCCESS by entry id: nothing comes again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let n: usize = posts
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b["entries"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(n, 5);
}

/// `pubsubname` and `tenant` from an `OnTopicEvent` call's gRPC metadata.
type EventMetadata = (Option<String>, Option<String>);

/// A gRPC app on the SDK's generated `AppCallback` service.
#[derive(Default, Clone)]
struct GrpcApp {
    topic: String,
    bulk_topic: String,
    events: Arc<Mutex<Vec<pb::TopicEventRequest>>>,
    /// The gRPC metadata of each `OnTopicEvent` call.
    metadata: Arc<Mutex<Vec<EventMetadata>>>,
    /// `pubsubname` from each `OnBulkTopicEvent` call's gRPC metadata.
    bulk_pubsub: Arc<Mutex<Vec<Option<String>>>>,
    bulks: Arc<Mutex<Vec<pb::TopicEventBulkRequest>>>,
}

#[tonic::async_trait]
impl AppCallback for GrpcApp {
    async fn on_invoke(
        &self,
        _: Request<common::InvokeRequest>,
    ) -> Result<Response<common::InvokeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListTopicSubscriptionsResponse>, tonic::Status> {
        Ok(Response::new(pb::ListTopicSubscriptionsResponse {
            subscriptions: vec![
                pb::TopicSubscription {
                    pubsub_name: "ps".into(),
                    topic: self.topic.clone(),
                    routes: Some(pb::TopicRoutes {
                        rules: vec![pb::TopicRule {
                            r#match: r#"event.data.kind == "urgent""#.into(),
                            path: "urgent".into(),
                        }],
                        default: "normal".into(),
                    }),
                    ..Default::default()
                },
                pb::TopicSubscription {
                    pubsub_name: "ps".into(),
                    topic: self.bulk_topic.clone(),
                    bulk_subscribe: Some(pb::BulkSubscribeConfig {
                        enabled: true,
                        max_messages_count: 5,
                        max_await_duration_ms: 200,
                    }),
                    ..Default::default()
                },
            ],
        }))
    }

    async fn on_topic_event(
        &self,
        req: Request<pb::TopicEventRequest>,
    ) -> Result<Response<pb::TopicEventResponse>, tonic::Status> {
        let md = |k: &str| {
            req.metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let got = (md("pubsubname"), md("tenant"));
        self.metadata.lock().unwrap().push(got);
        let ev = req.into_inner();
        let seen = {
            let mut e = self.events.lock().unwrap();
            e.push(ev.clone());
            e.iter().filter(|x| x.id == ev.id).count()
        };
        // "flaky" events are retried once.
        let status = if ev.data.windows(5).any(|w| w == b"flaky") && seen == 1 {
            Status::Retry
        } else {
            Status::Success
        };
        Ok(Response::new(pb::TopicEventResponse {
            status: status as i32,
        }))
    }

    async fn list_input_bindings(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListInputBindingsResponse>, tonic::Status> {
        Ok(Response::new(Default::default()))
    }

    async fn on_binding_event(
        &self,
        _: Request<pb::BindingEventRequest>,
    ) -> Result<Response<pb::BindingEventResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }

    async fn on_bulk_topic_event(
        &self,
        req: Request<pb::TopicEventBulkRequest>,
    ) -> Result<Response<pb::TopicEventBulkResponse>, tonic::Status> {
        let pubsub = req.metadata().get("pubsubname").cloned();
        let pubsub = pubsub.and_then(|v| v.to_str().ok().map(str::to_owned));
        self.bulk_pubsub.lock().unwrap().push(pubsub);
        let b = req.into_inner();
        let statuses = b
            .entries
            .iter()
            .map(|e| pb::TopicEventBulkResponseEntry {
                entry_id: e.entry_id.clone(),
                status: Status::Success as i32,
            })
            .collect();
        self.bulks.lock().unwrap().push(b);
        Ok(Response::new(pb::TopicEventBulkResponse { statuses }))
    }

    async fn on_job_event(
        &self,
        _: Request<pb::JobEventRequest>,
    ) -> Result<Response<pb::JobEventResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_programmatic_routes_retry_and_bulk() {
    let app = GrpcApp {
        topic: unique("grpc-orders"),
        bulk_topic: unique("grpc-bulk"),
        ..Default::default()
    };
    let port = free_port();
    let svc = AppCallbackServer::new(app.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve(([127, 0, 0, 1], port).into()),
    );
    let sc = Sidecar::start(Options {
        resources: vec![in_memory()],
        extra_args: vec![
            "--app-port".into(),
            port.to_string(),
            "--app-protocol".into(),
            "grpc".into(),
        ],
        ..Default::default()
    });
    let c = Client::new();
    subscribed(&c, &sc, 2).await;
    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(sc.grpc()))
            .await
            .unwrap();
    for (i, kind) in ["urgent", "normal", "flaky"].iter().enumerate() {
        let data = json!({"kind": kind, "n": i}).to_string().into_bytes();
        // The publish metadata reaches the app as gRPC metadata, as daprd.
        let md = HashMap::from([("tenant".to_string(), "acme".to_string())]);
        sdk.publish_event("ps", app.topic.as_str(), "application/json", data, Some(md))
            .await
            .unwrap();
    }
    let events = wait_until(Duration::from_secs(10), || {
        let e = app.events.lock().unwrap();
        (e.len() >= 4).then(|| e.clone())
    })
    .await
    .expect("three events, one of them twice");
    let path_of = |kind: &str| {
        events
            .iter()
            .find(|e| e.data.windows(kind.len()).any(|w| w == kind.as_bytes()))
            .map(|e| e.path.clone())
    };
    assert_eq!(path_of("urgent").as_deref(), Some("urgent"));
    assert_eq!(path_of("normal").as_deref(), Some("normal"));
    let e = &events[0];
    assert_eq!(e.pubsub_name, "ps");
    assert_eq!(e.topic, app.topic);
    assert_eq!(e.r#type, "com.dapr.event.sent");
    assert_eq!(e.spec_version, "1.0");
    assert_eq!(e.data_content_type, "application/json");
    assert_eq!(e.source, sc.app_id);
    let ext = e.extensions.as_ref().expect("extensions");
    assert!(ext.fields.contains_key("traceparent"), "{ext:?}");
    assert!(ext.fields.contains_key("topic"));
    let data: Value = serde_json::from_slice(&e.data).unwrap();
    assert!(data["kind"].is_string());
    let flaky: Vec<_> = events
        .iter()
        .filter(|e| e.data.windows(5).any(|w| w == b"flaky"))
        .collect();
    assert_eq!(flaky.len(), 2, "RETRY → delivered again");
    assert_eq!(flaky[0].id, flaky[1].id);
    // daprd's gRPC metadata on every OnTopicEvent: `pubsubname` and the
    // message's metadata.
    let md = app.metadata.lock().unwrap().clone();
    assert!(md.len() >= 4);
    for (pubsub, tenant) in &md {
        assert_eq!(pubsub.as_deref(), Some("ps"), "{md:?}");
        assert_eq!(tenant.as_deref(), Some("acme"), "{md:?}");
    }

    // Bulk: 12 events arrive in batches of at most 5.
    for n in 0..12 {
        publish(&c, &sc, &app.bulk_topic, json!({ "n": n })).await;
    }
    let bulks = wait_until(Duration::from_secs(10), || {
        let b = app.bulks.lock().unwrap();
        (b.iter().map(|b| b.entries.len()).sum::<usize>() >= 12).then(|| b.clone())
    })
    .await
    .expect("12 events in bulk");
    assert!(bulks.iter().all(|b| (1..=5).contains(&b.entries.len())));
    let b = &bulks[0];
    assert_eq!(b.topic, app.bulk_topic);
    assert_eq!(b.r#type, "com.dapr.event.sent.bulk");
    assert_eq!(b.metadata.get("pubsubName").map(String::as_str), Some("ps"));
    let md = app.bulk_pubsub.lock().unwrap().clone();
    assert!(md.iter().all(|p| p.as_deref() == Some("ps")), "{md:?}");
    let Some(pb::topic_event_bulk_request_entry::Event::CloudEvent(ce)) = &b.entries[0].event
    else {
        panic!("a CloudEvent entry")
    };
    assert_eq!(ce.r#type, "com.dapr.event.sent");
    assert!(serde_json::from_slice::<Value>(&ce.data).unwrap()["n"].is_number());

    // daprd's gRPC client metrics for the calls to the app.
    let text = reqwest::get(sc.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |method: &str, status: &str| {
        text.lines().any(|l| {
            l.starts_with("dapr_grpc_io_client_completed_rpcs")
                && l.contains(&format!("grpc_client_method=\"{method}\""))
                && l.contains(&format!("grpc_client_status=\"{status}\""))
        })
    };
    assert!(
        has("/dapr.proto.runtime.v1.AppCallback/OnTopicEvent", "OK"),
        "{text}"
    );
    assert!(has(
        "/dapr.proto.runtime.v1.AppCallback/ListTopicSubscriptions",
        "OK"
    ));
}

/// A gRPC app subscribed to an MQTT wildcard filter gets each event with
/// its concrete topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_mqtt_wildcard_topic() {
    let u = unique("gwild");
    let app = GrpcApp {
        topic: format!("{u}/home/+/temperature"),
        bulk_topic: format!("{u}/bulk"),
        ..Default::default()
    };
    let port = free_port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AppCallbackServer::new(app.clone()))
            .serve(([127, 0, 0, 1], port).into()),
    );
    let app_id = unique("gwild-app");
    let sc = Sidecar::start(Options {
        app_id: app_id.clone(),
        resources: vec!["apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.mqtt3\n  version: v1\n  metadata:\n  - name: url\n    value: tcp://127.0.0.1:1883\n".into()],
        extra_args: vec![
            "--app-port".into(),
            port.to_string(),
            "--app-protocol".into(),
            "grpc".into(),
        ],
        ..Default::default()
    });
    let c = Client::new();
    subscribed(&c, &sc, 2).await;
    let concrete = format!("{u}/home/kitchen/temperature");
    publish(&c, &sc, &concrete, json!({"kind": "urgent"})).await;
    let events = wait_until(Duration::from_secs(10), || {
        let e = app.events.lock().unwrap();
        (!e.is_empty()).then(|| e.clone())
    })
    .await
    .expect("the event");
    assert_eq!(events[0].topic, concrete);
    assert_eq!(events[0].path, "urgent");
    assert_eq!(events[0].pubsub_name, "ps");
    drop(sc);
    spar_tests::clear_mqtt_sessions(&[&app_id]).await;
}

type Events = tonic::Streaming<pb::SubscribeTopicEventsResponseAlpha1>;
type Outbox = tokio::sync::mpsc::Sender<pb::SubscribeTopicEventsRequestAlpha1>;

async fn open_stream(sc: &Sidecar, topic: &str) -> (Outbox, Events) {
    use pb::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as In;
    let mut client = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(pb::SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(In::InitialRequest(
            pb::SubscribeTopicEventsRequestInitialAlpha1 {
                pubsub_name: "ps".into(),
                topic: topic.into(),
                metadata: HashMap::new(),
                dead_letter_topic: None,
            },
        )),
    })
    .await
    .unwrap();
    let mut events = client
        .subscribe_topic_events_alpha1(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    use pb::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as Out;
    let first = events.message().await.unwrap().unwrap();
    assert!(matches!(
        first.subscribe_topic_events_response_type,
        Some(Out::InitialResponse(_))
    ));
    (tx, events)
}

async fn next_event(events: &mut Events) -> pb::TopicEventRequest {
    use pb::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as Out;
    let m = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .unwrap();
    match m.subscribe_topic_events_response_type {
        Some(Out::EventMessage(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn answer(tx: &Outbox, id: &str, status: Status) {
    use pb::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as In;
    tx.send(pb::SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(In::EventProcessed(
            pb::SubscribeTopicEventsRequestProcessedAlpha1 {
                id: id.into(),
                status: Some(pb::TopicEventResponse {
                    status: status as i32,
                }),
            },
        )),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_subscription() {
    let sc = Sidecar::start(Options {
        resources: vec![in_memory()],
        ..Default::default()
    });
    let c = Client::new();
    let topic = unique("stream");
    let (tx, mut events) = open_stream(&sc, &topic).await;
    let m = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    assert_eq!(m["subscriptions"][0]["type"], "STREAMING", "{m}");

    publish(&c, &sc, &topic, json!({"n": 1})).await;
    let e = next_event(&mut events).await;
    assert_eq!(e.topic, topic);
    assert_eq!(serde_json::from_slice::<Value>(&e.data).unwrap()["n"], 1);
    answer(&tx, &e.id, Status::Success).await;

    // An event left unanswered when the stream goes away is not lost: the
    // next stream on the topic gets it.
    publish(&c, &sc, &topic, json!({"n": 2})).await;
    let e2 = next_event(&mut events).await;
    drop(tx);
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_json(&c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "stream's subscription still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (tx, mut events) = open_stream(&sc, &topic).await;
    let again = next_event(&mut events).await;
    assert_eq!(again.id, e2.id);
    answer(&tx, &again.id, Status::Success).await;

    // Errors: unknown component, and a stream that does not start with an
    // initial request.
    let mut client = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let (etx, erx) = tokio::sync::mpsc::channel(1);
    etx.send(pb::SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(
            pb::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType::InitialRequest(
                pb::SubscribeTopicEventsRequestInitialAlpha1 {
                    pubsub_name: "nope".into(),
                    topic: "t".into(),
                    ..Default::default()
                },
            ),
        ),
    })
    .await
    .unwrap();
    let err = client
        .subscribe_topic_events_alpha1(tokio_stream::wrappers::ReceiverStream::new(erx))
        .await
        .unwrap_err();
    // daprd's code for an unknown pubsub.
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("nope"), "{err:?}");
    let (etx, erx) = tokio::sync::mpsc::channel(1);
    answer(&etx, "x", Status::Success).await;
    let err = client
        .subscribe_topic_events_alpha1(tokio_stream::wrappers::ReceiverStream::new(erx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
}
