//! Invocation of a gRPC app (`--app-protocol grpc`) as daprd's gRPC app
//! channel does it: every invocation that is not transparent gRPC
//! proxying becomes one `AppCallback/OnInvoke` call. The request's headers
//! (HTTP callers) or metadata (gRPC callers) travel as gRPC metadata,
//! with daprd's renames; the answer is the app's `InvokeResponse`, or its
//! status, which `http_status` and `status_json` turn into daprd's HTTP
//! answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use spar_components::per_thread::PerThread;
use spar_filters::trace::SpanContext;
use spar_filters::Runtime;
use spar_proto::common::{http_extension::Verb, InvokeRequest, InvokeResponse};
use spar_proto::runtime::app_callback_client::AppCallbackClient;
use tonic::metadata::{
    Ascii, AsciiMetadataValue, Binary, BinaryMetadataValue, MetadataKey, MetadataMap,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// How long an invocation may wait for the app when its caller set no
/// deadline (daprd sets none; every outbound call here has one).
const APP_TIMEOUT: Duration = Duration::from_secs(300);

/// The content type daprd answers for data that carries a `type_url`.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// Set by a calling sidecar's `InvokeService` on its request to the callee
/// sidecar: answer the app's `InvokeResponse` (body, protobuf) and status
/// (`grpc-status` headers) as they are, not mapped to HTTP. The callee
/// marks such an answer with the same header.
pub const REPLY_FORM: &str = "spar-invoke-reply";
pub const REPLY_GRPC: &str = "grpc";

/// The app's gRPC server: one lazily connected channel per thread that
/// calls it, so a call and the channel's connection task share a runtime.
pub struct GrpcAppChannel {
    channels: PerThread<Option<Channel>>,
    token: Option<AsciiMetadataValue>,
}

impl GrpcAppChannel {
    /// The channel when the app speaks gRPC.
    pub fn for_runtime(rt: &Runtime) -> Option<Arc<Self>> {
        let app = rt.app.as_ref()?;
        if app.protocol != "grpc" {
            return None;
        }
        let addr = rt.app_addr()?;
        let token = rt.app_token.as_deref().and_then(|t| t.parse().ok());
        Some(Arc::new(GrpcAppChannel {
            channels: PerThread::new(None, move || Some(connect(addr))),
            token,
        }))
    }

    /// One `OnInvoke` call: the app's answer and the metadata it sent with
    /// it, or its status. `timeout` is what is left of the caller's
    /// deadline.
    pub async fn invoke(
        &self,
        msg: InvokeRequest,
        mut md: MetadataMap,
        trace: Option<&SpanContext>,
        timeout: Option<Duration>,
    ) -> Result<(MetadataMap, InvokeResponse), Status> {
        let Some(channel) = self.channels.get() else {
            return Err(Status::unavailable("no connection to the app"));
        };
        if let Some(t) = &self.token {
            md.insert("dapr-api-token", t.clone());
        }
        if let Some(sc) = trace {
            if let Ok(v) = sc.traceparent().parse() {
                md.insert("traceparent", v);
            }
            if let Some(v) = sc.tracestate.as_deref().and_then(|t| t.parse().ok()) {
                md.insert("tracestate", v);
            }
            md.insert_bin(
                "grpc-trace-bin",
                BinaryMetadataValue::from_bytes(&trace_bin(sc)),
            );
        }
        let timeout = timeout.unwrap_or(APP_TIMEOUT);
        let started = std::time::Instant::now();
        let mut req = tonic::Request::from_parts(md, Default::default(), msg);
        req.set_timeout(timeout);
        let mut client = AppCallbackClient::new(channel).max_decoding_message_size(usize::MAX);
        let call = client.on_invoke(req);
        let late = || Status::deadline_exceeded("the app did not answer before the deadline");
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(resp)) => {
                let (md, msg, _) = resp.into_parts();
                Ok((md, msg))
            }
            // tonic's own timer (from the request's `grpc-timeout`) ends
            // the call as CANCELLED; the caller sees a deadline.
            Ok(Err(s)) if s.code() == Code::Cancelled && started.elapsed() >= timeout => {
                Err(late())
            }
            Ok(Err(s)) => Err(s),
            Err(_) => Err(late()),
        }
    }
}

/// The context in gRPC's binary form (`grpc-trace-bin`), which daprd sends
/// beside `traceparent`: version 0, then trace id, span id and options,
/// each after its field number.
fn trace_bin(sc: &SpanContext) -> [u8; 29] {
    let mut b = [0u8; 29];
    b[2..18].copy_from_slice(&sc.trace_id);
    b[18] = 1;
    b[19..27].copy_from_slice(&sc.span_id);
    b[27] = 2;
    b[28] = u8::from(sc.sampled);
    b
}

fn connect(addr: SocketAddr) -> Option<Channel> {
    let ep = Endpoint::from_shared(format!("http://{addr}")).ok()?;
    Some(
        ep.connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy(),
    )
}

/// `http_extension.verb` for an HTTP method; daprd sends POST for a verb
/// the enum lacks.
pub fn verb_of(method: &str) -> Verb {
    match method {
        "GET" => Verb::Get,
        "HEAD" => Verb::Head,
        "PUT" => Verb::Put,
        "DELETE" => Verb::Delete,
        "CONNECT" => Verb::Connect,
        "OPTIONS" => Verb::Options,
        "TRACE" => Verb::Trace,
        "PATCH" => Verb::Patch,
        _ => Verb::Post,
    }
}

/// HTTP headers daprd renames to `dapr-{name}` when they become gRPC
/// metadata (they mean something else to a gRPC server).
const RENAMED: [&str; 27] = [
    "accept",
    "accept-charset",
    "accept-language",
    "accept-ranges",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "cache-control",
    "content-type",
    "content-length",
    "cookie",
    "date",
    "expect",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-schedule-tag-match",
    "if-unmodified-since",
    "max-forwards",
    "origin",
    "pragma",
    "referer",
    "via",
];

/// Headers that never reach the app as metadata: set here afresh (trace,
/// token), meant for the sidecars (`dapr-app-id`, the caller's API token,
/// the deadline, the reply form), or not allowed on an HTTP/2 request.
fn dropped(name: &str) -> bool {
    matches!(
        name,
        "traceparent"
            | "tracestate"
            | "grpc-trace-bin"
            | "destination-app-id"
            | "dapr-app-id"
            | "dapr-api-token"
            | "te"
            | "trailer"
            | "http2-settings"
            | "proxy-authorization"
            | "proxy-authenticate"
            | REPLY_FORM
    ) || name.starts_with("grpc-")
        || name.starts_with(':')
}

/// The metadata the app gets for a call's headers (an HTTP caller's, or a
/// gRPC caller's metadata as headers): daprd's renames, `-bin` values
/// decoded from base64, the sidecars' own headers left out.
pub fn metadata_of(headers: &http::HeaderMap) -> MetadataMap {
    let mut md = MetadataMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.as_str();
        if dropped(name) {
            continue;
        }
        if name.ends_with("-bin") {
            let Ok(key) = MetadataKey::<Binary>::from_bytes(name.as_bytes()) else {
                continue;
            };
            let raw = value.as_bytes();
            // gRPC peers may leave off the padding.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(raw));
            if let Ok(bytes) = decoded {
                md.append_bin(key, BinaryMetadataValue::from_bytes(&bytes));
            }
            continue;
        }
        let Ok(v) = AsciiMetadataValue::try_from(value.as_bytes()) else {
            continue;
        };
        let key = if RENAMED.contains(&name) {
            MetadataKey::<Ascii>::from_bytes(format!("dapr-{name}").as_bytes())
        } else {
            MetadataKey::<Ascii>::from_bytes(name.as_bytes())
        };
        if let Ok(key) = key {
            md.append(key, v);
        }
    }
    md
}

/// The app's answer metadata as HTTP response headers, as daprd writes
/// them: gRPC's own (`grpc-*`) renamed `dapr-grpc-*`; binary, framing and
/// hop-by-hop ones, and the trace context, left out.
pub fn response_headers(md: &MetadataMap) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let headers = md.clone().into_headers();
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in &headers {
        let n = name.as_str();
        if n.ends_with("-bin")
            || matches!(
                n,
                "content-type"
                    | "content-length"
                    | "traceparent"
                    | "tracestate"
                    | "destination-app-id"
                    | "connection"
                    | "keep-alive"
                    | "proxy-connection"
                    | "transfer-encoding"
                    | "upgrade"
                    | "http2-settings"
                    | "te"
                    | "trailer"
                    | "proxy-authorization"
                    | "proxy-authenticate"
            )
        {
            continue;
        }
        let name = if n.starts_with("grpc-") {
            match http::HeaderName::from_bytes(format!("dapr-{n}").as_bytes()) {
                Ok(h) => h,
                Err(_) => continue,
            }
        } else {
            name.clone()
        };
        out.push((name, value.clone()));
    }
    out
}

/// The content type of an answer: protobuf when its data is a typed
/// `Any`, else the one the app named.
pub fn content_type(resp: &InvokeResponse) -> &str {
    match &resp.data {
        Some(d) if !d.type_url.is_empty() => PROTOBUF_CONTENT_TYPE,
        _ => &resp.content_type,
    }
}

/// daprd's HTTP status for an app's gRPC status code.
pub fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 408,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

/// `google.rpc.Status`, to read the details an app attached.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// The body daprd answers an HTTP caller when the app failed: the status
/// as protobuf JSON (`code` is the gRPC code). Details are given as their
/// type and base64 value (daprd expands the types it knows).
pub fn status_json(s: &Status) -> Vec<u8> {
    let mut o = serde_json::Map::new();
    o.insert("code".into(), (s.code() as i32).into());
    if !s.message().is_empty() {
        o.insert("message".into(), s.message().into());
    }
    let details = <RpcStatus as prost::Message>::decode(s.details())
        .map(|d| d.details)
        .unwrap_or_default();
    if !details.is_empty() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let list = details
            .iter()
            .map(|a| serde_json::json!({"@type": a.type_url, "value": b64.encode(&a.value)}))
            .collect();
        o.insert("details".into(), serde_json::Value::Array(list));
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

/// The request as the app gets it.
pub fn request(
    method: String,
    verb: Verb,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> InvokeRequest {
    InvokeRequest {
        method,
        data: Some(prost_types::Any {
            type_url: String::new(),
            value: body,
        }),
        content_type: content_type.to_owned(),
        http_extension: Some(spar_proto::common::HttpExtension {
            verb: verb as i32,
            querystring: query.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_metadata_as_daprd_renames_them() {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("x-order", "7".parse().unwrap());
        h.insert("dapr-api-token", "caller-secret".parse().unwrap());
        h.insert("traceparent", "00-x".parse().unwrap());
        h.insert("grpc-timeout", "5S".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-raw-bin", "AAEC".parse().unwrap());
        let md = metadata_of(&h);
        assert_eq!(md.get("dapr-content-type").unwrap(), "text/plain");
        assert_eq!(md.get("x-order").unwrap(), "7");
        assert!(md.get("content-type").is_none());
        assert!(md.get("dapr-api-token").is_none());
        assert!(md.get("traceparent").is_none());
        assert!(md.get("grpc-timeout").is_none());
        assert!(md.get("te").is_none());
        assert_eq!(
            md.get_bin("x-raw-bin")
                .unwrap()
                .to_bytes()
                .unwrap()
                .as_ref(),
            &[0, 1, 2]
        );
    }

    #[test]
    fn statuses_map_as_daprd_maps_them() {
        assert_eq!(http_status(Code::Ok), 200);
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::FailedPrecondition), 400);
        assert_eq!(http_status(Code::Unimplemented), 501);
        assert_eq!(http_status(Code::DataLoss), 500);
        let body = status_json(&Status::not_found("no such order"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": 5, "message": "no such order"})
        );
    }

    #[test]
    fn binary_trace_context_reads_back() {
        let sc = SpanContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        )
        .unwrap();
        assert_eq!(SpanContext::from_binary(&trace_bin(&sc)), Some(sc));
    }

    #[test]
    fn typed_data_answers_as_protobuf() {
        let mut r = InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: b"x".to_vec(),
            }),
            content_type: "text/plain".into(),
        };
        assert_eq!(content_type(&r), "text/plain");
        r.data.as_mut().unwrap().type_url = "type.googleapis.com/x.Y".into();
        assert_eq!(content_type(&r), PROTOBUF_CONTENT_TYPE);
    }
}
