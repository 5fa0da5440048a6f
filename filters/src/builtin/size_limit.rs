//! Request-size limit (`--max-body-size` / `--dapr-http-max-request-size`).
//! Front ends stop reading a body at the limit and flag it; this filter turns
//! the flag into Dapr's error so both protocols answer the same way.

use async_trait::async_trait;

use crate::{ApiError, ApiResult, Ctx, Filter, Next, Request};

pub struct SizeLimit {
    limit: usize,
}

impl SizeLimit {
    pub fn new(limit: usize) -> Self {
        SizeLimit { limit }
    }

    fn over(&self, ctx: &Ctx) -> bool {
        ctx.body_too_large || ctx.body_len > self.limit
    }
}

#[async_trait]
impl Filter for SizeLimit {
    fn name(&self) -> &'static str {
        "sizelimit"
    }

    async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult {
        if self.over(ctx) {
            return Err(ApiError::BodyTooLarge { limit: self.limit });
        }
        next.run(ctx, req).await
    }

    /// Most calls: nothing to refuse.
    fn skips(&self, ctx: &Ctx, _: &Request) -> bool {
        !self.over(ctx)
    }
}
