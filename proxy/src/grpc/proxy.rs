//! Transparent gRPC proxying, as daprd: any call on the gRPC port that
//! carries `dapr-app-id` metadata and is not for the Dapr API itself is
//! forwarded, streaming both ways with trailers, to that app's sidecar
//! (which hands it to its app's gRPC server, `--app-protocol grpc`).
//!
//! It is a tower layer in front of tonic's routes: the chain decides (auth,
//! name resolution), the body is never buffered.

use spar_filters::metrics::invocation::CallType;
use spar_filters::resiliency::Verdict;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use spar_filters::handlers::invoke::{InvokeRequest, Upstream};
use spar_filters::{Chain, Ctx, Protocol, Request, Response};
use tonic::body::Body;
use tonic::Status;

use super::invoke_service::parse_grpc_timeout;
use crate::peer_client::{PeerClient, PeerError};

const DAPR_SERVICE: &str = "/dapr.proto.runtime.v1.Dapr/";

#[derive(Clone)]
pub struct Proxy {
    pub chain: Chain,
    /// To peer sidecars (h2c or mTLS).
    pub peers: Arc<PeerClient>,
    /// To this sidecar's own app (self-invocation), h2c.
    pub app: Arc<PeerClient>,
    pub rt: Arc<spar_filters::Runtime>,
}

#[derive(Clone)]
pub struct ProxyService<S> {
    inner: S,
    proxy: Proxy,
}

impl<S> tower::Layer<S> for Proxy {
    type Service = ProxyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ProxyService {
            inner,
            proxy: self.clone(),
        }
    }
}

type BoxFut =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, std::convert::Infallible>> + Send>>;

impl<S> tower::Service<http::Request<Body>> for ProxyService<S>
where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFut;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let target = req
            .headers()
            .get("dapr-app-id")
            .and_then(|v| v.to_str().ok())
            .filter(|_| !req.uri().path().starts_with(DAPR_SERVICE))
            .map(str::to_owned);
        match target {
            None if self.proxy.chain.adds_headers() => {
                Box::pin(super::answer_headers::collect(self.inner.call(req)))
            }
            None => {
                let fut = self.inner.call(req);
                Box::pin(fut)
            }
            Some(app_id) => {
                let proxy = self.proxy.clone();
                let adds = proxy.chain.adds_headers();
                let fut = async move {
                    Ok(proxy
                        .forward(app_id, req)
                        .await
                        .unwrap_or_else(|s| s.into_http()))
                };
                if adds {
                    Box::pin(super::answer_headers::collect(fut))
                } else {
                    Box::pin(fut)
                }
            }
        }
    }
}

impl Proxy {
    async fn forward(
        &self,
        app_id: String,
        mut req: http::Request<Body>,
    ) -> Result<http::Response<Body>, Status> {
        let method = req.uri().path().to_string();
        let mut ctx = Ctx::new(Protocol::Grpc, "POST", "/{service}/{method}");
        ctx.api_token = req
            .headers()
            .get("dapr-api-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        ctx.trace_parent = super::trace_context(&tonic::metadata::MetadataMap::from_headers(
            req.headers().clone(),
        ));
        ctx.headers = self.chain.read_headers(|n| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        let routed = self
            .chain
            .handle(
                &mut ctx,
                Request::Invoke(InvokeRequest {
                    app_id: app_id.clone(),
                    method: method.clone(),
                }),
            )
            .await;
        super::answer_headers::keep(&mut ctx);
        let up = match routed {
            Ok(Response::Proxy(up)) => up,
            Ok(_) => return Err(Status::internal("invocation answered without a target")),
            Err(e) => return Err(super::convert::status(&e)),
        };
        // The caller's token is for this sidecar only.
        req.headers_mut().remove("dapr-api-token");
        let mut span = ctx.span.take();
        if let Some(s) = &span {
            let h = req.headers_mut();
            h.remove("grpc-trace-bin");
            if let Ok(v) = s.context().traceparent().parse() {
                h.insert("traceparent", v);
            }
        }
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(super::invoke_service::own_deadline);
        let dst = app_id.split('.').next().unwrap_or_default().to_owned();
        // Set over the caller's own, on a self-invocation too.
        if let Upstream::Sidecar { .. } | Upstream::App { .. } = up {
            let h = req.headers_mut();
            if let Ok(v) = self.rt.app_id.parse() {
                h.insert("dapr-caller-app-id", v);
            }
            if let Ok(v) = dst.parse() {
                h.insert("dapr-callee-app-id", v);
            }
        }
        let started = std::time::Instant::now();
        let (client, addr) = match up {
            Upstream::Sidecar { addr, .. } => (&self.peers, addr),
            Upstream::App { addr, .. } => (&self.app, addr),
            Upstream::External(_) => {
                return Err(Status::unimplemented(
                    "gRPC calls to HTTP endpoints are not supported",
                ))
            }
        };
        if let Some(m) = &self.rt.metrics {
            m.invoke_sent(&dst, CallType::Streaming);
        }
        let send = async {
            let resp = match deadline {
                Some(d) => tokio::time::timeout(d, client.send(addr, req))
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded("deadline exceeded before the target answered")
                    })?,
                None => client.send(addr, req).await,
            };
            resp.map_err(|e| match e {
                PeerError::Timeout => Status::deadline_exceeded(e.to_string()),
                PeerError::Failed(e) => {
                    Status::unavailable(format!("fail to invoke, id: {app_id}, err: {e}"))
                }
            })
        };
        // The target app's resiliency policy: breaker and timeout (up to the
        // answer's headers); no retries, the request stream is already sent.
        let resp = match self.rt.live().resiliency.app(&dst).cloned() {
            None => send.await,
            Some(p) => p
                .run_once(
                    || send,
                    |r: &Result<http::Response<Body>, Status>| match r {
                        Err(s) => Verdict::Failed(Some(s.code() as u32)),
                        Ok(resp) => match trailers_only_status(resp) {
                            0 => Verdict::Success,
                            c => Verdict::Failed(Some(c as u32)),
                        },
                    },
                )
                .await
                .map_err(|e| super::refused(e, &app_id)),
        };
        if let (Some(s), Err(e)) = (span.as_mut(), &resp) {
            s.grpc_status(e.code() as i32, e.message());
        }
        if let Some(m) = &self.rt.metrics {
            // The call's own status travels in trailers, after this point,
            // unless the answer is trailers-only (`grpc-status` in the
            // headers: an error before any message); otherwise the label is
            // the transport outcome (0 = the callee answered).
            let code = match &resp {
                Err(e) => e.code() as i32,
                Ok(r) => trailers_only_status(r),
            };
            m.invoke_answered(&dst, &code.to_string(), CallType::Streaming, started);
            m.grpc_client(&method, code, started);
        }
        // The span covers the call up to the callee's answer headers.
        drop(span);
        let resp = resp?;
        let grpc = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if grpc {
            return Ok(resp);
        }
        // Not a gRPC answer (a peer sidecar's Dapr error): as a gRPC status.
        let code = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(match code {
            403 => Status::permission_denied(msg),
            404 => Status::not_found(msg),
            504 => Status::deadline_exceeded(msg),
            _ => Status::internal(msg),
        })
    }
}

/// The gRPC status of an answer that carries it in its headers (a
/// trailers-only answer: an error before any message); 0 otherwise — the
/// status of a streamed answer only comes with its trailers.
fn trailers_only_status(r: &http::Response<Body>) -> i32 {
    r.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
