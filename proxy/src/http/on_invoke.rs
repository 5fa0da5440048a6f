//! An HTTP invocation of a gRPC app, answered on pingora's session: the
//! body read whole, the call made as `AppCallback/OnInvoke`
//! (`app_grpc.rs`), the answer written as daprd writes it — 200 with the
//! app's content type and data, or the app's status as HTTP status and
//! JSON. A calling sidecar's `InvokeService` asks for the app's answer as
//! it is instead (`REPLY_FORM`).

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use prost::Message;
use spar_filters::trace::SpanContext;
use spar_filters::ApiError;
use tonic::Status;

use crate::app_grpc::{self, GrpcAppChannel, REPLY_FORM, REPLY_GRPC};

/// One call's particulars, decided before the body is read.
pub struct Call<'a> {
    /// `InvokeRequest.method`: the path after `/method/`, decoded.
    pub method: &'a str,
    /// What is left of the caller's deadline.
    pub timeout: Option<Duration>,
    /// The context the app's call carries (`traceparent`).
    pub trace: Option<&'a SpanContext>,
    pub max_body: usize,
}

pub async fn serve(
    session: &mut ServerSession,
    app: &GrpcAppChannel,
    call: Call<'_>,
) -> Result<()> {
    let (body, too_large) = super::server::read_body(session, call.max_body).await?;
    if too_large {
        session.set_keepalive(None);
        let e = ApiError::BodyTooLarge {
            limit: call.max_body,
        };
        return super::upstream::write_error(session, &e).await;
    }
    let req = session.req_header();
    let verb = app_grpc::verb_of(req.method.as_str());
    let head = verb == spar_proto::common::http_extension::Verb::Head;
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let grpc_form = header(REPLY_FORM) == Some(REPLY_GRPC);
    let msg = app_grpc::request(
        super::decode::percent_decode_cow(call.method).into_owned(),
        verb,
        req.uri.query().unwrap_or_default(),
        header("content-type").unwrap_or_default(),
        Vec::from(body),
    );
    let md = app_grpc::metadata_of(&req.headers);
    // Not traced here: the caller's context goes on as it came.
    let passed = match call.trace {
        Some(_) => None,
        None => header("traceparent").and_then(|t| SpanContext::parse(t, header("tracestate"))),
    };
    let trace = call.trace.or(passed.as_ref());
    let r = app.invoke(msg, md, trace, call.timeout).await;
    if grpc_form {
        return write_grpc_form(session, r).await;
    }
    let (status, headers, content_type, body) = match r {
        Ok((md, resp)) => {
            let ct = app_grpc::content_type(&resp).to_owned();
            let data = resp.data.map(|d| d.value).unwrap_or_default();
            (200, app_grpc::response_headers(&md), ct, data)
        }
        Err(s) => {
            tracing::debug!(code = ?s.code(), "the app answered {}", s.message());
            let headers = app_grpc::response_headers(s.metadata());
            let body = app_grpc::status_json(&s);
            let status = app_grpc::http_status(s.code());
            (status, headers, "application/json".to_owned(), body)
        }
    };
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (k, v) in headers {
        resp.append_header(k, v)?;
    }
    if !content_type.is_empty() {
        resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(resp)).await?;
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    session.write_response_body(body, true).await
}

/// The app's answer for a calling sidecar's `InvokeService`: its
/// `InvokeResponse` as protobuf, its status in `grpc-status` headers.
async fn write_grpc_form(
    session: &mut ServerSession,
    r: Result<
        (
            tonic::metadata::MetadataMap,
            spar_proto::common::InvokeResponse,
        ),
        Status,
    >,
) -> Result<()> {
    let (status, body, md) = match r {
        Ok((md, resp)) => (Status::ok(""), resp.encode_to_vec(), md),
        Err(s) => (s, Vec::new(), tonic::metadata::MetadataMap::new()),
    };
    // The app's metadata travels as headers (its `-bin` values as base64),
    // but for what would break the answer's framing or status.
    let mut headers = http::HeaderMap::new();
    for (k, v) in &md.into_headers() {
        let n = k.as_str();
        if !(n.starts_with("grpc-")
            || matches!(
                n,
                "content-type"
                    | "content-length"
                    | "connection"
                    | "keep-alive"
                    | "proxy-connection"
                    | "transfer-encoding"
                    | "upgrade"
                    | "te"
                    | "trailer"
                    | REPLY_FORM
            ))
        {
            headers.append(k.clone(), v.clone());
        }
    }
    if status.add_header(&mut headers).is_err() {
        headers.clear();
        let _ = Status::internal("the app's status could not be encoded").add_header(&mut headers);
    }
    let mut resp = ResponseHeader::build(200, Some(headers.len() + 3))?;
    for (k, v) in &headers {
        resp.append_header(k.clone(), v.clone())?;
    }
    resp.insert_header(REPLY_FORM, REPLY_GRPC)?;
    resp.insert_header(http::header::CONTENT_TYPE, app_grpc::PROTOBUF_CONTENT_TYPE)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(resp)).await?;
    session.write_response_body(Bytes::from(body), true).await
}
