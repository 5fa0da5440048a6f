//! Invocation of gRPC apps (`--app-protocol grpc`) through
//! `AppCallback/OnInvoke`, as daprd does it: over the HTTP API and over
//! gRPC `InvokeService`, from another sidecar and from the app's own; and
//! an HTTP app invoked by `InvokeService`. The app is a real tonic server
//! on the generated `AppCallback` service.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};
use spar_proto::common::{self, http_extension::Verb, HttpExtension};
use spar_proto::runtime::{self as pb, app_callback_server::AppCallback};
use spar_tests::{unique, Options, Sidecar};
use tonic::{Request, Response, Status};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const TYPE_URL: &str = "type.googleapis.com/google.protobuf.StringValue";

/// Answers every `OnInvoke` with what it received, as JSON; `fail` with
/// NOT_FOUND (and metadata), `typed` with data that has a type URL,
/// `sleep` after 5 s.
#[derive(Clone, Default)]
struct App {
    seen: Arc<Mutex<Vec<Value>>>,
}

#[tonic::async_trait]
impl AppCallback for App {
    async fn on_invoke(
        &self,
        req: Request<common::InvokeRequest>,
    ) -> Result<Response<common::InvokeResponse>, Status> {
        let md = |k: &str| {
            req.metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let m = req.get_ref();
        let ext = m.http_extension.clone().unwrap_or_default();
        let data = m.data.clone().unwrap_or_default();
        let seen = json!({
            "method": m.method,
            "verb": ext.verb,
            "query": ext.querystring,
            "content_type": m.content_type,
            "data": String::from_utf8_lossy(&data.value),
            "type_url": data.type_url,
            "x-order": md("x-order"),
            "dapr-content-type": md("dapr-content-type"),
            "token": md("dapr-api-token"),
            "traceparent": md("traceparent"),
            "trace-bin": req.metadata().get_bin("grpc-trace-bin").map(|v| v.to_bytes().map(|b| b.len()).unwrap_or(0)),
            "dapr-app-id": md("dapr-app-id"),
        });
        self.seen.lock().unwrap().push(seen.clone());
        match m.method.as_str() {
            "fail" => {
                let mut s = Status::not_found("no such order");
                s.metadata_mut().insert("x-reason", "gone".parse().unwrap());
                Err(s)
            }
            "sleep" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Err(Status::internal("too late"))
            }
            "typed" => Ok(Response::new(common::InvokeResponse {
                data: Some(prost_types::Any {
                    type_url: TYPE_URL.into(),
                    value: b"\x0a\x02ok".to_vec(),
                }),
                content_type: "application/json".into(),
            })),
            _ => {
                let mut r = Response::new(common::InvokeResponse {
                    data: Some(prost_types::Any {
                        type_url: String::new(),
                        value: seen.to_string().into_bytes(),
                    }),
                    content_type: "application/json".into(),
                });
                r.metadata_mut().insert("x-app", "yes".parse().unwrap());
                Ok(r)
            }
        }
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListTopicSubscriptionsResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn on_topic_event(
        &self,
        _: Request<pb::TopicEventRequest>,
    ) -> Result<Response<pb::TopicEventResponse>, Status> {
        Err(Status::unimplemented("no"))
    }

    async fn on_bulk_topic_event(
        &self,
        _: Request<pb::TopicEventBulkRequest>,
    ) -> Result<Response<pb::TopicEventBulkResponse>, Status> {
        Err(Status::unimplemented("no"))
    }

    async fn list_input_bindings(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListInputBindingsResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn on_binding_event(
        &self,
        _: Request<pb::BindingEventRequest>,
    ) -> Result<Response<pb::BindingEventResponse>, Status> {
        Err(Status::unimplemented("no"))
    }

    async fn on_job_event(
        &self,
        _: Request<pb::JobEventRequest>,
    ) -> Result<Response<pb::JobEventResponse>, Status> {
        Err(Status::unimplemented("no"))
    }
}

async fn start_app() -> (u16, App) {
    let app = App::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::app_callback_server::AppCallbackServer::new(app.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    (port, app)
}

/// Tracing on, spans sent nowhere that listens (the exporter drops them).
fn traced() -> String {
    let dead = spar_tests::free_port();
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: http://127.0.0.1:{dead}/api/v2/spans\n"
    )
}

/// The gRPC app's sidecar (with `APP_API_TOKEN`) and a caller sidecar.
fn sidecars(app_port: u16, protocol: &str) -> (String, Sidecar, Sidecar) {
    sidecars_env(app_port, protocol, vec![])
}

fn sidecars_env(
    app_port: u16,
    protocol: &str,
    env: Vec<(String, String)>,
) -> (String, Sidecar, Sidecar) {
    let callee_id = unique("grpcapp");
    let callee = Sidecar::start(Options {
        app_id: callee_id.clone(),
        config: Some(traced()),
        extra_args: vec![
            "--app-port".into(),
            app_port.to_string(),
            "--app-protocol".into(),
            protocol.into(),
        ],
        env: [("APP_API_TOKEN".into(), "app-secret".into())]
            .into_iter()
            .chain(env.clone())
            .collect(),
        ..Default::default()
    });
    let caller = Sidecar::start(Options {
        app_id: unique("grpcapp-caller"),
        config: Some(traced()),
        env,
        ..Default::default()
    });
    (callee_id, callee, caller)
}

/// The checks shared by the peer and self paths over HTTP.
async fn over_http(c: &Client, base: &str, target: &str) {
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let url = format!("{base}/v1.0/invoke/{target}/method/orders/7?x=1&y=two");
    let r = crate::invoke::call(
        c,
        c.put(&url)
            .header("content-type", "text/plain")
            .header("x-order", "7")
            .header("dapr-api-token", "not-for-the-app")
            .header("traceparent", &parent)
            .body("hi"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-app"], "yes", "the app's metadata as headers");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["method"], "orders/7");
    assert_eq!(v["verb"], Verb::Put as i32);
    assert_eq!(v["query"], "x=1&y=two");
    assert_eq!(v["content_type"], "text/plain");
    assert_eq!(v["data"], "hi");
    assert_eq!(v["type_url"], "");
    assert_eq!(v["x-order"], "7", "headers travel as metadata");
    assert_eq!(
        v["dapr-content-type"], "text/plain",
        "renamed as daprd does"
    );
    assert_eq!(v["token"], "app-secret", "APP_API_TOKEN, not the caller's");
    assert_eq!(v["dapr-app-id"], Value::Null);
    // The app's parent is the callee sidecar's span, in the caller's trace.
    let tp = v["traceparent"].as_str().unwrap();
    assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
    assert!(!tp.contains(PARENT), "{tp}");
    assert_eq!(v["trace-bin"], 29, "and in gRPC's binary form");

    // Any verb; no body.
    let r = c
        .get(format!("{base}/v1.0/invoke/{target}/method/stock"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["verb"].clone(), v["data"].clone()),
        (json!(Verb::Get as i32), json!(""))
    );

    // An app error: daprd's HTTP status for its code, the status as JSON.
    let r = c
        .post(format!("{base}/v1.0/invoke/{target}/method/fail"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-reason"], "gone");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"code": 5, "message": "no such order"}));

    // Data with a type URL answers as protobuf.
    let r = c
        .post(format!("{base}/v1.0/invoke/{target}/method/typed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"\x0a\x02ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_invoked_over_http_by_a_peer_and_by_itself() {
    let (port, _app) = start_app().await;
    let (callee_id, callee, caller) = sidecars(port, "grpc");
    let c = Client::new();
    over_http(&c, &caller.http(), &callee_id).await;
    over_http(&c, &callee.http(), &callee_id).await;
}

/// The same with every request on pingora-proxy (`SPAR_HTTP_FAST_PATH=off`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_invoked_over_http_through_pingora_proxy() {
    let (port, _app) = start_app().await;
    let off = vec![("SPAR_HTTP_FAST_PATH".into(), "off".into())];
    let (callee_id, callee, caller) = sidecars_env(port, "grpc", off);
    let c = Client::new();
    over_http(&c, &caller.http(), &callee_id).await;
    over_http(&c, &callee.http(), &callee_id).await;
}

fn invoke_request(id: &str, method: &str, verb: Verb) -> Request<pb::InvokeServiceRequest> {
    let mut r = Request::new(pb::InvokeServiceRequest {
        id: id.into(),
        message: Some(common::InvokeRequest {
            method: method.into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: b"hi".to_vec(),
            }),
            content_type: "text/plain".into(),
            http_extension: Some(HttpExtension {
                verb: verb as i32,
                querystring: "x=1".into(),
            }),
        }),
    });
    let md = r.metadata_mut();
    md.insert("x-order", "7".parse().unwrap());
    md.insert(
        "traceparent",
        format!("00-{TRACE}-{PARENT}-01").parse().unwrap(),
    );
    r
}

/// `InvokeService` through `sidecar` to the gRPC app `target`.
async fn over_grpc(sidecar: &Sidecar, target: &str) {
    let mut client = pb::dapr_client::DaprClient::connect(sidecar.grpc())
        .await
        .unwrap();
    let mut answer = None;
    for _ in 0..200 {
        match client
            .invoke_service(invoke_request(target, "orders/7", Verb::Patch))
            .await
        {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            // mDNS may not have seen the callee yet.
            Err(e) => {
                answer = None;
                assert_ne!(e.code(), tonic::Code::NotFound, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await
            }
        }
    }
    let r = answer.expect("InvokeService answered");
    assert_eq!(
        r.metadata().get("x-app").unwrap(),
        "yes",
        "the app's metadata"
    );
    let r = r.into_inner();
    assert_eq!(r.content_type, "application/json");
    let data = r.data.unwrap();
    let v: Value = serde_json::from_slice(&data.value).unwrap();
    assert_eq!(v["method"], "orders/7");
    assert_eq!(v["verb"], Verb::Patch as i32);
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["content_type"], "text/plain");
    assert_eq!(v["data"], "hi");
    assert_eq!(v["x-order"], "7", "the caller's metadata reaches the app");
    assert_eq!(v["token"], "app-secret");
    let tp = v["traceparent"].as_str().unwrap();
    assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");

    // The app's status as it gave it.
    let e = client
        .invoke_service(invoke_request(target, "fail", Verb::Post))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(e.message(), "no such order");

    // The app's answer as it gave it: the type URL kept.
    let r = client
        .invoke_service(invoke_request(target, "typed", Verb::None))
        .await
        .unwrap()
        .into_inner();
    let data = r.data.unwrap();
    assert_eq!(data.type_url, TYPE_URL);
    assert_eq!(data.value, b"\x0a\x02ok");
    assert_eq!(r.content_type, "application/json");

    // The caller's deadline bounds the wait for the app.
    let mut req = invoke_request(target, "sleep", Verb::Post);
    req.set_timeout(Duration::from_millis(300));
    let e = client.invoke_service(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_invoked_over_invoke_service_by_a_peer_and_by_itself() {
    let (port, app) = start_app().await;
    let (callee_id, callee, caller) = sidecars(port, "grpc");
    over_grpc(&caller, &callee_id).await;
    over_grpc(&callee, &callee_id).await;
    assert!(app.seen.lock().unwrap().len() >= 6);
}

/// An HTTP app invoked by `InvokeService`: verb, query string, content
/// type and body as an HTTP request; its answer as `InvokeResponse`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_app_invoked_over_invoke_service_by_a_peer_and_by_itself() {
    let app = axum::Router::new().fallback(
        |method: axum::http::Method,
         uri: axum::http::Uri,
         headers: axum::http::HeaderMap,
         body: axum::body::Bytes| async move {
            let h = |k: &str| {
                headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            (
                [("content-type", "application/json")],
                json!({
                    "method": method.as_str(),
                    "path": uri.path(),
                    "query": uri.query(),
                    "content_type": h("content-type"),
                    "x-order": h("x-order"),
                    "traceparent": h("traceparent"),
                    "reply-form": h("spar-invoke-reply"),
                    "body": String::from_utf8_lossy(&body),
                })
                .to_string(),
            )
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let (callee_id, callee, caller) = sidecars(port, "http");
    for sc in [&caller, &callee] {
        let mut client = pb::dapr_client::DaprClient::connect(sc.grpc())
            .await
            .unwrap();
        let mut answer = None;
        for _ in 0..200 {
            match client
                .invoke_service(invoke_request(&callee_id, "orders/7", Verb::Put))
                .await
            {
                Ok(r) => {
                    answer = Some(r.into_inner());
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let r = answer.expect("InvokeService answered");
        assert_eq!(r.content_type, "application/json");
        let v: Value = serde_json::from_slice(&r.data.unwrap().value).unwrap();
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["path"], "/orders/7");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["content_type"], "text/plain");
        assert_eq!(v["body"], "hi");
        assert_eq!(v["x-order"], "7", "the caller's metadata as headers");
        assert_eq!(v["reply-form"], Value::Null, "sidecar to sidecar only");
        let tp = v["traceparent"].as_str().unwrap();
        assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
    }
}

/// A gRPC app that is not there: UNAVAILABLE, which daprd answers as 503
/// over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_not_listening() {
    let sc = Sidecar::start(Options {
        extra_args: vec![
            "--app-port".into(),
            spar_tests::free_port().to_string(),
            "--app-protocol".into(),
            "grpc".into(),
        ],
        ..Default::default()
    });
    let c = Client::new();
    let r = c
        .post(format!("{}/v1.0/invoke/{}/method/x", sc.http(), sc.app_id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], tonic::Code::Unavailable as i32, "{v}");
    let mut client = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let e = client
        .invoke_service(invoke_request(&sc.app_id, "x", Verb::Post))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
}

/// Under mTLS with access control on the gRPC app's sidecar: OnInvoke
/// calls are checked on the caller's identity and the HTTP verb, over the
/// HTTP API and `InvokeService` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_under_mtls_and_access_control() {
    let sentry = spar_tests::Sentry::start(None);
    let (port, _app) = start_app().await;
    let (callee_id, caller_id) = (unique("mtls-grpcapp"), unique("mtls-caller"));
    let acl = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: acl\nspec:\n  accessControl:\n    defaultAction: deny\n    trustDomain: public\n    policies:\n      - appId: {caller_id}\n        defaultAction: deny\n        trustDomain: public\n        namespace: default\n        operations:\n          - name: /orders/*\n            httpVerb: [PUT, PATCH]\n            action: allow\n"
    );
    let start = |app_id: &str, app: Option<u16>, config: Option<String>| {
        let (mut args, env) = sentry.sidecar_args();
        if let Some(p) = app {
            args.extend(["--app-port", &p.to_string(), "--app-protocol", "grpc"].map(String::from));
        }
        Sidecar::start(Options {
            app_id: app_id.to_string(),
            extra_args: args,
            env,
            config,
            ..Default::default()
        })
    };
    let _callee = start(&callee_id, Some(port), Some(acl));
    let caller = start(&caller_id, None, None);
    let c = Client::new();
    let url = |m: &str| format!("{}/v1.0/invoke/{callee_id}/method/{m}", caller.http());

    let r = crate::invoke::call(&c, c.put(url("orders/7")).body("hi")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["method"].clone(), v["data"].clone()),
        (json!("orders/7"), json!("hi"))
    );
    let r = c.post(url("orders/7")).send().await.unwrap();
    assert_eq!(r.status(), 403, "a verb the policy does not allow");

    let mut client = pb::dapr_client::DaprClient::connect(caller.grpc())
        .await
        .unwrap();
    let r = client
        .invoke_service(invoke_request(&callee_id, "orders/7", Verb::Patch))
        .await
        .unwrap()
        .into_inner();
    let v: Value = serde_json::from_slice(&r.data.unwrap().value).unwrap();
    assert_eq!(v["verb"], Verb::Patch as i32);
    let e = client
        .invoke_service(invoke_request(&callee_id, "orders/7", Verb::Post))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
}
