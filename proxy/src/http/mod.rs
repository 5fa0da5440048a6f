//! The HTTP API on `--dapr-http-port`, served by pingora.
//!
//! `request_filter` decodes the call, runs the filter chain and writes the
//! answer itself; nothing is proxied upstream yet (service invocation will
//! add upstream peers here).

pub mod decode;
pub mod encode;
pub mod internal;
pub mod invoke;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::http::RequestHeader;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use spar_filters::handlers::invoke::Upstream;
use spar_filters::metrics::Metrics;
use spar_filters::{Chain, Ctx, Protocol};
use spar_filters::{Request, Response};

pub struct HttpApi {
    chain: Chain,
    max_body: usize,
    app_token: Option<String>,
    /// For proxied calls, recorded once the app's status is known.
    metrics: Option<(Arc<Metrics>, String)>,
}

/// Per-request state of a proxied (invocation) call.
pub struct Call {
    up: Option<Upstream>,
    method: &'static str,
    started: Instant,
}

impl HttpApi {
    pub fn new(
        chain: Chain,
        max_body: usize,
        app_token: Option<String>,
        metrics: Option<(Arc<Metrics>, String)>,
    ) -> Self {
        HttpApi {
            chain,
            max_body,
            app_token,
            metrics,
        }
    }

    /// Reads the body up to the limit. Past it, stops reading (never buffers
    /// more than limit + one chunk) and reports the overflow.
    async fn read_body(&self, session: &mut Session) -> Result<(BytesMut, bool)> {
        let req = session.req_header();
        let declared = req
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            // Refuse before the client sends the body.
            return Ok((BytesMut::new(), true));
        }
        let expects_continue = req
            .headers
            .get("expect")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects_continue {
            // Clients like curl and .NET wait for this before sending a body.
            session
                .as_downstream_mut()
                .write_continue_response()
                .await?;
        }
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = session.read_request_body().await? {
            if buf.len() + chunk.len() > self.max_body {
                return Ok((buf, true));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((buf, false))
    }
}

fn static_method(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "UNKNOWN",
    }
}

#[async_trait]
impl ProxyHttp for HttpApi {
    type CTX = Call;

    fn new_ctx(&self) -> Self::CTX {
        Call {
            up: None,
            method: "",
            started: Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, call: &mut Self::CTX) -> Result<bool> {
        if let Some(target) = invoke::target(session.req_header()) {
            // Invocation: the chain decides where; the body is never read
            // here, pingora streams it to the upstream.
            let req = session.req_header();
            let mut ctx = Ctx::new(
                Protocol::Http,
                static_method(req.method.as_str()),
                "/v1.0/invoke/{id}/method/{method}",
            );
            ctx.api_token = req
                .headers
                .get("dapr-api-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return match self.chain.handle(&mut ctx, Request::Invoke(target)).await {
                Ok(Response::Proxy(u)) => {
                    call.up = Some(u);
                    call.method = ctx.method;
                    Ok(false)
                }
                Ok(_) => {
                    let e = spar_filters::ApiError::Internal(
                        "invocation answered without a target".into(),
                    );
                    invoke::write_error(session, &e).await?;
                    Ok(true)
                }
                Err(e) => {
                    invoke::write_error(session, &e).await?;
                    Ok(true)
                }
            };
        }
        let (body, too_large) = self.read_body(session).await?;
        let req = session.req_header();
        let method = static_method(req.method.as_str());
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let head = decode::Head {
            method,
            path: req.uri.path(),
            query: req.uri.query(),
            if_match: header("if-match"),
        };
        let decoded = decode::decode(&head, &body);
        let mut ctx = Ctx::new(Protocol::Http, method, decoded.route);
        ctx.path = req.uri.path().to_owned();
        ctx.api_token = header("dapr-api-token");
        ctx.body_len = body.len();
        ctx.body_too_large = too_large;
        let out = match self.chain.handle(&mut ctx, decoded.req).await {
            Ok(r) => encode::response(r),
            Err(e) => encode::error(&e),
        };
        if too_large {
            // The rest of the body was never read: the connection can't be reused.
            session.set_keepalive(None);
        }
        let mut resp = ResponseHeader::build(out.status, Some(out.headers.len() + 1))?;
        for (k, v) in out.headers {
            resp.insert_header(k, v)?;
        }
        if out.status != 204 {
            resp.insert_header("content-length", out.body.len().to_string())?;
        }
        let head_only = method == "HEAD" || out.body.is_empty();
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(out.body), true).await?;
        }
        Ok(true)
    }

    async fn upstream_peer(&self, _: &mut Session, call: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        call.up
            .as_ref()
            .map(invoke::peer)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no invocation target"))
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        call: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(u) = call.up.as_ref() {
            invoke::rewrite(req, u, self.app_token.as_deref())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _: &mut Self::CTX,
    ) -> FailToProxy {
        let app = invoke::target(session.req_header())
            .map(|t| t.app_id)
            .unwrap_or_default();
        invoke::fail(session, e, &app).await
    }

    async fn logging(&self, session: &mut Session, _: Option<&Error>, call: &mut Self::CTX) {
        if let (Some(_), Some((m, app_id))) = (&call.up, &self.metrics) {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            let ms = call.started.elapsed().as_secs_f64() * 1000.0;
            m.record_http(app_id, call.method, "", status, ms);
        }
    }
}
