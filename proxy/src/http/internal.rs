//! The internal listener (`--dapr-internal-grpc-port`): peer sidecars send
//! invocations here over HTTP/2 (h2c); this sidecar checks the target is its
//! app and streams the call to it.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use spar_filters::handlers::invoke::Upstream;
use spar_filters::{ApiError, Runtime};

use super::invoke;

pub struct InternalApi {
    rt: Arc<Runtime>,
}

impl InternalApi {
    pub fn new(rt: Arc<Runtime>) -> Self {
        InternalApi { rt }
    }
}

#[async_trait]
impl ProxyHttp for InternalApi {
    type CTX = Option<Upstream>;

    fn new_ctx(&self) -> Self::CTX {
        None
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let Some(target) = invoke::target(session.req_header()) else {
            let e = ApiError::RouteNotFound(session.req_header().uri.path().to_string());
            invoke::write_error(session, &e).await?;
            return Ok(true);
        };
        let app = target.app_id.split('.').next().unwrap_or_default();
        if app != self.rt.app_id {
            let e = ApiError::DirectInvoke {
                app_id: target.app_id.clone(),
                reason: format!("this sidecar serves {:?}", self.rt.app_id),
            };
            invoke::write_error(session, &e).await?;
            return Ok(true);
        }
        let Some(addr) = self.rt.app_addr() else {
            invoke::write_error(session, &ApiError::AppChannelNotInitialized).await?;
            return Ok(true);
        };
        *ctx = Some(Upstream::App {
            addr,
            path: format!("/{}", target.method.trim_start_matches('/')),
        });
        Ok(false)
    }

    async fn upstream_peer(&self, _: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        ctx.as_ref()
            .map(invoke::peer)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no invocation target"))
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(up) = ctx.as_ref() {
            invoke::rewrite(req, up, self.rt.app_token.as_deref())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _: &mut Self::CTX,
    ) -> FailToProxy {
        invoke::fail(session, e, &self.rt.app_id).await
    }
}
