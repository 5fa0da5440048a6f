//! API-token authentication (`DAPR_API_TOKEN`), as daprd does it: every call
//! must carry `dapr-api-token`, except the health endpoints.

use async_trait::async_trait;

use crate::handlers::health::HealthRequest;
use crate::{ApiError, ApiResult, Ctx, Filter, Next, Request};

pub struct ApiTokenAuth {
    token: String,
}

impl ApiTokenAuth {
    pub fn new(token: String) -> Self {
        ApiTokenAuth { token }
    }
}

/// Constant-time comparison so the token can't be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl Filter for ApiTokenAuth {
    fn name(&self) -> &'static str {
        "auth.apitoken"
    }

    async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult {
        let exempt = matches!(
            req,
            Request::Health(HealthRequest::Healthz { .. } | HealthRequest::Outbound)
        ) || (ctx.public && matches!(req, Request::Health(_) | Request::Metadata(_)));
        if !exempt {
            match ctx.api_token.as_deref() {
                None => return Err(ApiError::ApiTokenMissing),
                Some(t) if !same(t.as_bytes(), self.token.as_bytes()) => {
                    return Err(ApiError::ApiTokenInvalid)
                }
                Some(_) => {}
            }
        }
        next.run(ctx, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::{Protocol, Response};
    use std::sync::Arc;

    struct Ok204;
    #[async_trait]
    impl Filter for Ok204 {
        fn name(&self) -> &'static str {
            "ok"
        }
        async fn call(&self, _: &mut Ctx, _: Request, _: Next<'_>) -> ApiResult {
            Ok(Response::Empty)
        }
    }

    fn chain() -> Chain {
        Chain::new(vec![
            Arc::new(ApiTokenAuth::new("s3cret".into())),
            Arc::new(Ok204),
        ])
    }

    #[tokio::test]
    async fn rejects_missing_and_wrong_tokens() {
        let c = chain();
        let mut ctx = Ctx::new(Protocol::Http, "POST", "/v1.0/shutdown");
        assert!(matches!(
            c.handle(&mut ctx, Request::Shutdown).await,
            Err(ApiError::ApiTokenMissing)
        ));
        ctx.api_token = Some("nope".into());
        assert!(matches!(
            c.handle(&mut ctx, Request::Shutdown).await,
            Err(ApiError::ApiTokenInvalid)
        ));
        ctx.api_token = Some("s3cret".into());
        assert!(c.handle(&mut ctx, Request::Shutdown).await.is_ok());
    }

    #[tokio::test]
    async fn health_is_exempt() {
        let c = chain();
        let mut ctx = Ctx::new(Protocol::Http, "GET", "/v1.0/healthz");
        let r = c
            .handle(
                &mut ctx,
                Request::Health(HealthRequest::Healthz { app_id: None }),
            )
            .await;
        assert!(r.is_ok());
    }
}
