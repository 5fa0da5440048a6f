//! gRPC `InvokeService`: the same chain decision as HTTP invocation, then
//! one HTTP call to the peer sidecar's internal listener (HTTP/2, pooled) or
//! to this sidecar's own app.

use std::time::Duration;

use spar_filters::handlers::invoke::Upstream;
use spar_proto::common::{http_extension::Verb, InvokeRequest, InvokeResponse};
use tonic::Status;

/// Pooled clients: HTTP/2 with prior knowledge to sidecars, HTTP/1.1 to apps.
pub struct Clients {
    sidecar: reqwest::Client,
    app: reqwest::Client,
}

impl Clients {
    pub fn new() -> Self {
        let base = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(90))
        };
        Clients {
            sidecar: base().http2_prior_knowledge().build().unwrap_or_default(),
            app: base().build().unwrap_or_default(),
        }
    }
}

fn verb(v: i32) -> reqwest::Method {
    match Verb::try_from(v).unwrap_or(Verb::None) {
        Verb::Get => reqwest::Method::GET,
        Verb::Head => reqwest::Method::HEAD,
        Verb::Put => reqwest::Method::PUT,
        Verb::Delete => reqwest::Method::DELETE,
        Verb::Connect => reqwest::Method::CONNECT,
        Verb::Options => reqwest::Method::OPTIONS,
        Verb::Trace => reqwest::Method::TRACE,
        Verb::Patch => reqwest::Method::PATCH,
        // NONE means POST, as daprd does for gRPC callers.
        Verb::None | Verb::Post => reqwest::Method::POST,
    }
}

/// An app's HTTP error as a gRPC status.
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

pub async fn call(
    clients: &Clients,
    up: Upstream,
    msg: InvokeRequest,
    app_token: Option<&str>,
) -> Result<InvokeResponse, Status> {
    let (client, url) = match &up {
        Upstream::Sidecar { addr, path } => (&clients.sidecar, format!("http://{addr}{path}")),
        Upstream::App { addr, path } => (&clients.app, format!("http://{addr}{path}")),
    };
    let ext = msg.http_extension.unwrap_or_default();
    let url = if ext.querystring.is_empty() {
        url
    } else {
        format!("{url}?{}", ext.querystring)
    };
    let mut req = client
        .request(verb(ext.verb), url)
        .body(msg.data.map(|a| a.value).unwrap_or_default());
    if !msg.content_type.is_empty() {
        req = req.header("content-type", msg.content_type);
    }
    if let (Upstream::App { .. }, Some(t)) = (&up, app_token) {
        req = req.header("dapr-api-token", t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Status::internal(format!("fail to invoke: {e}")))?;
    let code = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp
        .bytes()
        .await
        .map_err(|e| Status::internal(format!("fail to read the response: {e}")))?;
    if !(200..300).contains(&code) {
        return Err(status_of(code, &body));
    }
    Ok(InvokeResponse {
        data: Some(prost_types::Any {
            type_url: String::new(),
            value: body.to_vec(),
        }),
        content_type,
    })
}
