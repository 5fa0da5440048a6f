//! Distributed tracing through two real sidecars and an app: W3C context
//! propagation, one trace with correct parent/child spans, exported to a
//! Zipkin v2 JSON receiver and to OTLP receivers (HTTP protobuf and gRPC)
//! run here, decoding the real wire formats; sampling rate 0 exports none.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use prost::Message;
use reqwest::Client;
use serde_json::{json, Value};
use spar_proto::otlp::collector::trace_service_server::{TraceService, TraceServiceServer};
use spar_proto::otlp::collector::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use spar_tests::{memory_component, unique, Options, Sidecar};

/// A span as any receiver decoded it, in one shape for the assertions.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    trace_id: String,
    id: String,
    parent: Option<String>,
    name: String,
    kind: String,
    tags: Vec<(String, String)>,
}

type Spans = Arc<Mutex<Vec<Got>>>;

/// Zipkin's `POST /api/v2/spans`, JSON v2.
async fn zipkin_receiver() -> (u16, Spans) {
    let spans: Spans = Arc::default();
    let s = spans.clone();
    let app = axum::Router::new().route(
        "/api/v2/spans",
        axum::routing::post(move |body: Bytes| {
            let s = s.clone();
            async move {
                let v: Vec<Value> = serde_json::from_slice(&body).expect("zipkin v2 JSON array");
                let mut g = s.lock().unwrap();
                for z in v {
                    g.push(Got {
                        service: z["localEndpoint"]["serviceName"].as_str().unwrap().into(),
                        trace_id: z["traceId"].as_str().unwrap().into(),
                        id: z["id"].as_str().unwrap().into(),
                        parent: z["parentId"].as_str().map(Into::into),
                        name: z["name"].as_str().unwrap().into(),
                        kind: z["kind"].as_str().unwrap_or("").into(),
                        tags: z["tags"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().into()))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, spans)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_otlp(req: ExportTraceServiceRequest, out: &Spans) {
    let mut g = out.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let kind = match s.kind {
                    2 => "SERVER",
                    3 => "CLIENT",
                    4 => "PRODUCER",
                    5 => "CONSUMER",
                    _ => "",
                };
                g.push(Got {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    id: hex(&s.span_id),
                    parent: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
                    name: s.name,
                    kind: kind.into(),
                    tags: s
                        .attributes
                        .into_iter()
                        .map(|a| (a.key, format!("{:?}", a.value.and_then(|v| v.value))))
                        .collect(),
                });
            }
        }
    }
}

/// OTLP/HTTP: protobuf `POST /v1/traces`.
async fn otlp_http_receiver() -> (u16, Spans) {
    let spans: Spans = Arc::default();
    let s = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                from_otlp(req, &s);
                ExportTraceServiceResponse::default().encode_to_vec()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, spans)
}

struct Collector(Spans);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        from_otlp(req.into_inner(), &self.0);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
async fn otlp_grpc_receiver() -> (u16, Spans) {
    let spans: Spans = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let svc = TraceServiceServer::new(Collector(spans.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
            .await
            .unwrap()
    });
    (port, spans)
}

type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

/// An app that answers with the trace headers it received, and keeps them
/// (path, traceparent, body) for deliveries.
async fn trace_app() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                s.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), h("traceparent"), v));
                axum::Json(json!({"traceparent": h("traceparent"), "tracestate": h("tracestate")}))
            }
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

fn config(rate: &str, exporters: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n  tracing:\n    samplingRate: \"{rate}\"\n{exporters}"
    )
}

fn sidecar(app_id: &str, app_port: Option<u16>, config: &str) -> Sidecar {
    let mut extra = vec![];
    if let Some(p) = app_port {
        extra = vec!["--app-port".to_string(), p.to_string()];
    }
    let pubsub = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bus\nspec:\n  type: pubsub.in-memory\n  version: v1\n";
    let sub = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: bus\n  topic: orders\n  routes:\n    default: /orders\n";
    Sidecar::start(Options {
        app_id: app_id.to_string(),
        resources: vec![memory_component("store"), pubsub.into(), sub.into()],
        config: Some(config.to_string()),
        extra_args: extra,
        ..Default::default()
    })
}

/// Waits until `spans` holds at least `n` spans of `trace_id`.
async fn wait_for(spans: &Spans, trace_id: &str, n: usize) -> Vec<Got> {
    for _ in 0..100 {
        let got: Vec<Got> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "fewer than {n} spans of trace {trace_id}: {:?}",
        spans.lock().unwrap()
    );
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Client → sidecar A → sidecar B → app, with the client's own context:
/// asserts the chain of parents and what the app received. Returns the
/// sidecars: killed, they would take spans still on their way to a second
/// exporter with them.
async fn invoke_and_check(spans: &Spans, trace: &str, cfg: &str) -> (Sidecar, Sidecar) {
    let (app_port, app_seen) = trace_app().await;
    let (a_id, b_id) = (unique("tr-a"), unique("tr-b"));
    let a = sidecar(&a_id, None, cfg);
    let b = sidecar(&b_id, Some(app_port), cfg);
    let c = Client::new();
    let parent = format!("00-{trace}-{CLIENT_SPAN}-01");
    let url = format!("{}/v1.0/invoke/{b_id}/method/hello?x=1", a.http());
    let req = c
        .post(url)
        .header("traceparent", &parent)
        .header("tracestate", "vendor=abc")
        .body("hi");
    let r = crate::invoke::call(&c, req).await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    let got = wait_for(spans, trace, 2).await;
    let caller = got
        .iter()
        .find(|s| s.kind == "CLIENT" && s.name == format!("CallLocal/{b_id}/hello"))
        .unwrap_or_else(|| panic!("caller span in {got:?}"));
    let callee = got
        .iter()
        .find(|s| s.kind == "SERVER")
        .unwrap_or_else(|| panic!("callee span in {got:?}"));
    assert_eq!(caller.parent.as_deref(), Some(CLIENT_SPAN));
    assert!(caller.service.contains(&a_id), "{caller:?}");
    assert_eq!(callee.name, format!("CallLocal/{b_id}/hello"));
    assert_eq!(callee.parent.as_deref(), Some(caller.id.as_str()));
    assert!(callee.service.contains(&b_id), "{callee:?}");
    assert!(caller
        .tags
        .iter()
        .any(|(k, v)| k == "net.peer.name" && v.contains(&b_id)));
    // The app's parent is the callee sidecar's span; tracestate travels.
    assert_eq!(
        seen["traceparent"],
        json!(format!("00-{trace}-{}-01", callee.id))
    );
    assert_eq!(seen["tracestate"], "vendor=abc");
    let n = got.len();

    // A state call through A: the API span and the store's child span.
    let parent2 = format!("00-{trace}-{}-01", "1111111111111111");
    let r = c
        .post(format!("{}/v1.0/state/store", a.http()))
        .header("traceparent", parent2)
        .json(&json!([{"key": "k", "value": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let got = wait_for(spans, trace, n + 2).await;
    let api = got
        .iter()
        .find(|s| s.name == "/v1.0/state/store")
        .unwrap_or_else(|| panic!("state API span in {got:?}"));
    assert_eq!(api.parent.as_deref(), Some("1111111111111111"));
    assert!(api
        .tags
        .iter()
        .any(|(k, v)| k == "db.system" && v.contains("state")));
    let store = got
        .iter()
        .find(|s| s.name == "state/store/set")
        .unwrap_or_else(|| panic!("store span in {got:?}"));
    assert_eq!(store.parent.as_deref(), Some(api.id.as_str()));
    let n = got.len();

    // Publish through B to its own app: API span → CloudEvent → delivery
    // span (`pubsub/orders`) → the app's traceparent.
    let parent3 = format!("00-{trace}-{}-01", "2222222222222222");
    let r = c
        .post(format!("{}/v1.0/publish/bus/orders", b.http()))
        .header("traceparent", parent3)
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let got = wait_for(spans, trace, n + 3).await;
    let api = got
        .iter()
        .find(|s| s.name == "/v1.0/publish/bus/orders")
        .unwrap_or_else(|| panic!("publish API span in {got:?}"));
    assert_eq!(api.parent.as_deref(), Some("2222222222222222"));
    let delivery = got
        .iter()
        .find(|s| s.name == "pubsub/orders")
        .unwrap_or_else(|| panic!("delivery span in {got:?}"));
    assert_eq!(delivery.parent.as_deref(), Some(api.id.as_str()));
    let (_, tp, ce) = app_seen
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _, _)| p == "/orders")
        .cloned()
        .expect("delivery reached the app");
    assert_eq!(
        ce["traceparent"],
        json!(format!("00-{trace}-{}-01", api.id))
    );
    assert_eq!(tp, Some(format!("00-{trace}-{}-01", delivery.id)));
    (a, b)
}

#[tokio::test]
async fn one_trace_through_two_sidecars_to_zipkin_and_otlp_grpc() {
    let (zport, zspans) = zipkin_receiver().await;
    let (gport, gspans) = otlp_grpc_receiver().await;
    let cfg = config(
        "1",
        &format!(
            "    zipkin:\n      endpointAddress: http://127.0.0.1:{zport}/api/v2/spans\n    otel:\n      endpointAddress: 127.0.0.1:{gport}\n      protocol: grpc\n      isSecure: false\n"
        ),
    );
    let _sidecars = invoke_and_check(&zspans, TRACE, &cfg).await;
    // The same spans reached the OTLP/gRPC collector.
    let z: Vec<String> = zspans
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let g = wait_for(&gspans, TRACE, z.len()).await;
    for id in &z {
        assert!(
            g.iter().any(|s| &s.id == id),
            "span {id} missing from OTLP/gRPC"
        );
    }
}

#[tokio::test]
async fn one_trace_to_otlp_http() {
    let (port, spans) = otlp_http_receiver().await;
    let cfg = config(
        "1",
        &format!("    otel:\n      endpointAddress: 127.0.0.1:{port}\n      protocol: http\n      isSecure: false\n"),
    );
    invoke_and_check(&spans, "5bf92f3577b34da6a3ce929d0e0e4737", &cfg).await;
}

/// Sampling rate 0: nothing is exported, and the caller's context still
/// reaches the app unchanged.
#[tokio::test]
async fn sampling_rate_zero_exports_nothing() {
    let (zport, zspans) = zipkin_receiver().await;
    let cfg = config(
        "0",
        &format!("    zipkin:\n      endpointAddress: http://127.0.0.1:{zport}/api/v2/spans\n"),
    );
    let (app_port, _) = trace_app().await;
    let (a_id, b_id) = (unique("tr0-a"), unique("tr0-b"));
    let a = sidecar(&a_id, None, &cfg);
    let _b = sidecar(&b_id, Some(app_port), &cfg);
    let c = Client::new();
    let parent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    for _ in 0..5 {
        let req = c
            .get(format!("{}/v1.0/invoke/{b_id}/method/x", a.http()))
            .header("traceparent", &parent);
        let r = crate::invoke::call(&c, req).await;
        assert_eq!(r.status(), 200);
        let seen: Value = r.json().await.unwrap();
        assert_eq!(seen["traceparent"], json!(parent));
        let r = c
            .get(format!("{}/v1.0/state/store/k", a.http()))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    // Past the exporter's flush interval (1 s), twice over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(zspans.lock().unwrap().is_empty());
}

/// A collector that is down costs the request path nothing: every call
/// succeeds, the export failure is logged, and the sidecar stays healthy.
#[tokio::test]
async fn collector_down_never_blocks_requests() {
    let dead = spar_tests::free_port();
    let cfg = config(
        "1",
        &format!("    zipkin:\n      endpointAddress: http://127.0.0.1:{dead}/api/v2/spans\n"),
    );
    let sc = sidecar(&unique("tr-down"), None, &cfg);
    let c = Client::new();
    let t = std::time::Instant::now();
    for i in 0..300 {
        let r = c
            .post(format!("{}/v1.0/state/store", sc.http()))
            .json(&json!([{"key": format!("k{i}"), "value": i}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    for _ in 0..50 {
        if sc.stderr().contains("span export failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sc.stderr().contains("span export failed"),
        "{}",
        sc.stderr()
    );
    let r = c
        .get(format!("{}/v1.0/healthz", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Spans still queued when the sidecar is told to stop are exported before
/// it exits (the batch interval is 1 s; the stop comes at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_spans_are_flushed_at_shutdown() {
    let (zport, zspans) = zipkin_receiver().await;
    let cfg = config(
        "1",
        &format!("    zipkin:\n      endpointAddress: http://127.0.0.1:{zport}/api/v2/spans\n"),
    );
    let mut sc = sidecar(&unique("tr-stop"), None, &cfg);
    let c = Client::new();
    let parent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let r = c
        .get(format!("{}/v1.0/state/store/k", sc.http()))
        .header("traceparent", &parent)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let code = tokio::task::spawn_blocking(move || sc.terminate())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    let got: Vec<Got> = zspans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id == TRACE)
        .cloned()
        .collect();
    assert!(
        got.iter().any(|s| s.name == "/v1.0/state/store/k"),
        "{got:?}"
    );
}
