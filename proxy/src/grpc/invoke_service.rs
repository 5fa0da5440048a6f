//! gRPC `InvokeService`: the same chain decision as HTTP invocation, then
//! one HTTP call to the peer sidecar's internal listener (the shared
//! HTTP/2 `PeerClient`, h2c or mTLS) or to this sidecar's own app. The
//! caller's gRPC deadline bounds the call and travels on as `grpc-timeout`.

use spar_filters::trace::SpanContext;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use spar_filters::handlers::invoke::Upstream;
use spar_proto::common::{http_extension::Verb, InvokeRequest, InvokeResponse};
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::app_grpc::{GrpcAppChannel, REPLY_FORM, REPLY_GRPC};
use crate::peer_client::PeerClient;

/// Sidecars through the shared peer client; the app over pooled HTTP/1.1,
/// or its `AppCallback/OnInvoke` when it is a gRPC app.
pub struct Clients {
    pub peers: Arc<PeerClient>,
    app: reqwest::Client,
    grpc_app: Option<Arc<GrpcAppChannel>>,
}

impl Clients {
    pub fn new(peers: Arc<PeerClient>, rt: &spar_filters::Runtime) -> Self {
        Clients {
            peers,
            grpc_app: GrpcAppChannel::for_runtime(rt),
            app: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(90))
                .build()
                .unwrap_or_default(),
        }
    }
}

fn verb(v: i32) -> http::Method {
    match Verb::try_from(v).unwrap_or(Verb::None) {
        Verb::Get => http::Method::GET,
        Verb::Head => http::Method::HEAD,
        Verb::Put => http::Method::PUT,
        Verb::Delete => http::Method::DELETE,
        Verb::Connect => http::Method::CONNECT,
        Verb::Options => http::Method::OPTIONS,
        Verb::Trace => http::Method::TRACE,
        Verb::Patch => http::Method::PATCH,
        // NONE means POST, as daprd does for gRPC callers.
        Verb::None | Verb::Post => http::Method::POST,
    }
}

/// An HTTP error (from the app, or a peer sidecar's Dapr error) as a gRPC status.
fn status_of(code: u16, body: &[u8]) -> Status {
    let msg = String::from_utf8_lossy(body).into_owned();
    match code {
        400 => Status::invalid_argument(msg),
        401 => Status::unauthenticated(msg),
        403 => Status::permission_denied(msg),
        404 => Status::not_found(msg),
        409 => Status::aborted(msg),
        429 => Status::resource_exhausted(msg),
        501 => Status::unimplemented(msg),
        503 => Status::unavailable(msg),
        504 => Status::deadline_exceeded(msg),
        _ => Status::unknown(format!("app answered {code}: {msg}")),
    }
}

/// How long spar waits for a call whose caller set `grpc-timeout` = `d`:
/// slightly less, so spar answers DEADLINE_EXCEEDED itself before tonic's
/// server-side timer (which starts earlier, at the same `d`) cancels the
/// call with CANCELLED.
pub fn own_deadline(d: Duration) -> Duration {
    d.saturating_sub((d / 10).min(Duration::from_millis(20)))
}

/// gRPC's `grpc-timeout` header: an integer and a unit (H M S m u n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The caller's metadata that travels with the call (as headers to the
/// peer sidecar, then to the app as headers or metadata): what is not
/// gRPC's or HTTP/2's own, nor meant for this sidecar.
fn forwarded(md: &tonic::metadata::MetadataMap) -> http::HeaderMap {
    let all = md.clone().into_headers();
    let mut h = http::HeaderMap::with_capacity(all.len());
    let keep = |k: &http::HeaderName| {
        let k = k.as_str();
        !(k.starts_with("grpc-")
            || k.starts_with(':')
            || matches!(
                k,
                "content-type"
                    | "content-length"
                    | "te"
                    | "host"
                    | "dapr-api-token"
                    | "dapr-app-id"
                    | "dapr-caller-app-id"
                    | "traceparent"
                    | "tracestate"
                    | REPLY_FORM
            ))
    };
    for (k, v) in &all {
        if keep(k) {
            h.append(k.clone(), v.clone());
        }
    }
    h
}

#[allow(clippy::too_many_arguments)]
pub async fn call(
    clients: &Clients,
    up: Upstream,
    msg: InvokeRequest,
    md: &tonic::metadata::MetadataMap,
    app_token: Option<&str>,
    deadline: Option<Duration>,
    trace: Option<&SpanContext>,
    caller: &str,
) -> Result<(InvokeResponse, MetadataMap), Status> {
    if let (Upstream::App { .. }, Some(app)) = (&up, &clients.grpc_app) {
        // The own gRPC app: its answer and status as it gave them, its
        // metadata with daprd's renames.
        let md = crate::app_grpc::metadata_of(&forwarded(md));
        let (md, r) = app.invoke(msg, md, trace, deadline).await?;
        return Ok((r, crate::app_grpc::metadata_of(&md.into_headers())));
    }
    let fut = send(clients, up, msg, md, app_token, deadline, trace, caller);
    match deadline {
        Some(d) => tokio::time::timeout(d, fut).await.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(
                "fail to invoke: deadline exceeded",
            ))
        }),
        None => fut.await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    clients: &Clients,
    up: Upstream,
    msg: InvokeRequest,
    md: &tonic::metadata::MetadataMap,
    app_token: Option<&str>,
    deadline: Option<Duration>,
    trace: Option<&SpanContext>,
    caller: &str,
) -> Result<(InvokeResponse, MetadataMap), Status> {
    let ext = msg.http_extension.unwrap_or_default();
    let traceparent = trace.map(SpanContext::traceparent);
    let tracestate = trace.and_then(|t| t.tracestate.as_deref());
    let trace_headers = traceparent
        .as_deref()
        .map(|t| ("traceparent", t))
        .into_iter()
        .chain(tracestate.map(|t| ("tracestate", t)));
    let body = Bytes::from(msg.data.map(|a| a.value).unwrap_or_default());
    let with_query = |path: &str| {
        if ext.querystring.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", ext.querystring)
        }
    };
    let (code, content_type, body) = match &up {
        Upstream::Sidecar { addr, path } => {
            let mut b = http::Request::builder()
                .method(verb(ext.verb))
                .uri(with_query(path));
            if !msg.content_type.is_empty() {
                b = b.header("content-type", &msg.content_type);
            }
            if let Some(d) = deadline {
                b = b.header("grpc-timeout", format!("{}m", d.as_millis().max(1)));
            }
            for (k, v) in trace_headers.clone() {
                b = b.header(k, v);
            }
            b = b.header("dapr-caller-app-id", caller);
            // A gRPC app behind the peer answers as it is (`on_invoke.rs`).
            b = b.header(REPLY_FORM, REPLY_GRPC);
            if let Some(h) = b.headers_mut() {
                h.extend(forwarded(md));
            }
            let req = b
                .body(tonic::body::Body::new(http_body_util::Full::new(body)))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let resp = clients.peers.send(*addr, req).await.map_err(|e| match e {
                crate::peer_client::PeerError::Timeout => {
                    Status::deadline_exceeded(format!("fail to invoke: {e}"))
                }
                e => Status::internal(format!("fail to invoke: {e}")),
            })?;
            let code = resp.status().as_u16();
            let ct = header(resp.headers());
            let app_md = app_metadata(resp.headers());
            let grpc_form = resp
                .headers()
                .get(REPLY_FORM)
                .is_some_and(|v| v.as_bytes() == REPLY_GRPC.as_bytes());
            let status = grpc_form
                .then(|| Status::from_header_map(resp.headers()))
                .flatten();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Status::internal(format!("fail to read the response: {e}")))?
                .to_bytes();
            if grpc_form {
                return match status {
                    Some(s) if s.code() != tonic::Code::Ok => Err(s),
                    _ => prost::Message::decode(body)
                        .map(|r| (r, app_md))
                        .map_err(|e| {
                            Status::internal(format!("malformed answer from the peer: {e}"))
                        }),
                };
            }
            (code, ct, body)
        }
        Upstream::External(e) => {
            let scheme = if e.tls { "https" } else { "http" };
            let url = format!("{scheme}://{}{}", e.authority, with_query(&e.path));
            let headers = e
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(trace_headers);
            over_http1(
                &clients.app,
                verb(ext.verb),
                url,
                body,
                &msg.content_type,
                headers,
            )
            .await?
        }
        Upstream::App { addr, path } => {
            let url = format!("http://{addr}{}", with_query(path));
            // The caller's metadata as headers, as a peer's app gets them.
            let md = forwarded(md);
            let token = app_token
                .map(|t| ("dapr-api-token", t))
                .into_iter()
                .chain(trace_headers)
                .chain(
                    md.iter()
                        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
                );
            over_http1(
                &clients.app,
                verb(ext.verb),
                url,
                body,
                &msg.content_type,
                token,
            )
            .await?
        }
    };
    if !(200..300).contains(&code) {
        return Err(status_of(code, &body));
    }
    let r = InvokeResponse {
        data: Some(prost_types::Any {
            type_url: String::new(),
            value: body.to_vec(),
        }),
        content_type,
    };
    Ok((r, MetadataMap::new()))
}

/// A peer's gRPC-form answer's headers that are the app's metadata (not
/// the answer's framing or status), with daprd's renames.
fn app_metadata(h: &http::HeaderMap) -> MetadataMap {
    let mut md = http::HeaderMap::new();
    for (k, v) in h {
        if !matches!(
            k.as_str(),
            "content-type" | "content-length" | "date" | REPLY_FORM
        ) {
            md.append(k.clone(), v.clone());
        }
    }
    crate::app_grpc::metadata_of(&md)
}

/// One pooled HTTP/1.1 call (the app, an external endpoint): status,
/// content type and the whole body.
async fn over_http1<'a>(
    client: &reqwest::Client,
    method: http::Method,
    url: String,
    body: Bytes,
    content_type: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(u16, String, Bytes), Status> {
    let mut req = client.request(method, url).body(body);
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Status::internal(format!("fail to invoke: {e}")))?;
    let code = resp.status().as_u16();
    let ct = header(resp.headers());
    let body = resp
        .bytes()
        .await
        .map_err(|e| Status::internal(format!("fail to read the response: {e}")))?;
    Ok((code, ct, body))
}

fn header(h: &http::HeaderMap) -> String {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("m"), None);
    }
}
