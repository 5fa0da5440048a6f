//! Invocation of an app that has a resiliency policy (`targets.apps`): the
//! request body is buffered (bounded by the body limit), as daprd does, so
//! that an attempt can be sent again; each attempt goes to the peer sidecar
//! over the pooled HTTP/2 peer client (h2c, or mTLS with this sidecar's
//! identity) under the policy's breaker, timeout and retries. A response
//! outside 2xx/3xx is a failure (retried when the policy's
//! `matching.httpStatusCodes` includes it); when the retries are used up
//! the app's last answer is returned as it is. Calls to apps without a
//! policy keep streaming through pingora.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession as Session;
use spar_filters::resiliency::{Policy, Refused, Verdict};
use spar_filters::ApiError;

use super::upstream;
use crate::peer_client::{PeerClient, PeerError};

/// Headers that belong to one hop, not to the message.
const HOP: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "content-length",
    "proxy-connection",
    "dapr-api-token",
];

struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

pub struct Call<'a> {
    pub app_id: &'a str,
    pub addr: SocketAddr,
    pub path: &'a str,
    pub body: Bytes,
    pub max_body: usize,
    /// `traceparent`/`tracestate` for the callee (this call's span).
    pub trace: Option<(String, Option<String>)>,
}

async fn attempt(
    peers: &PeerClient,
    head: &pingora::http::RequestHeader,
    c: &Call<'_>,
) -> std::result::Result<Answer, PeerError> {
    let uri = match head.uri.query() {
        Some(q) => format!("{}?{q}", c.path),
        None => c.path.to_string(),
    };
    let mut b = http::Request::builder()
        .method(head.method.clone())
        .uri(uri);
    for (k, v) in head.headers.iter() {
        let traced = c.trace.is_some() && (k == "traceparent" || k == "tracestate");
        if !HOP.contains(&k.as_str()) && !traced {
            b = b.header(k, v);
        }
    }
    if let Some((tp, ts)) = &c.trace {
        b = b.header("traceparent", tp);
        if let Some(ts) = ts {
            b = b.header("tracestate", ts);
        }
    }
    let req = b
        .body(tonic::body::Body::new(Full::new(c.body.clone())))
        .map_err(|e| PeerError::Failed(e.to_string()))?;
    let resp = peers.send(c.addr, req).await?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, c.max_body)
        .collect()
        .await
        .map_err(|e| PeerError::Failed(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Runs the call under the policy and writes the answer downstream.
pub async fn invoke(
    session: &mut Session,
    peers: &Arc<PeerClient>,
    policy: &Policy,
    c: Call<'_>,
) -> Result<()> {
    let head = session.req_header().clone();
    let out = policy
        .run(
            || attempt(peers, &head, &c),
            |r| match r {
                Ok(a) if a.status.as_u16() < 400 => Verdict::Success,
                Ok(a) => Verdict::Failed(Some(a.status.as_u16() as u32)),
                Err(_) => Verdict::Failed(None),
            },
        )
        .await;
    let fail = |reason: String| ApiError::DirectInvoke {
        app_id: c.app_id.to_string(),
        reason,
    };
    let a = match out {
        Ok(a) => a,
        Err(Refused::BreakerOpen) => {
            return upstream::write_error(session, &fail("circuit breaker is open".into())).await
        }
        Err(Refused::Timeout(d)) => {
            let e = ApiError::DirectInvokeTimeout {
                app_id: c.app_id.to_string(),
                reason: format!("timeout after {d:?} (resiliency policy)"),
            };
            return upstream::write_error(session, &e).await;
        }
        Err(Refused::Failed(e)) => {
            return upstream::write_error(session, &fail(e.to_string())).await
        }
    };
    let mut resp = ResponseHeader::build(a.status.as_u16(), Some(a.headers.len() + 1))?;
    for (k, v) in a.headers.iter() {
        if !HOP.contains(&k.as_str()) {
            resp.append_header(k.clone(), v.clone())?;
        }
    }
    resp.insert_header("content-length", a.body.len().to_string())?;
    session.write_response_header(Box::new(resp)).await?;
    let body = if head.method == http::Method::HEAD {
        Bytes::new()
    } else {
        a.body
    };
    session.write_response_body(body, true).await
}
