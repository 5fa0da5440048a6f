//! Handler filters, one per building block, and the router that ends the
//! chain by handing each request to its block's handler. Adding a building
//! block is one module here, one `Request` variant and one arm below.

pub mod bindings;
pub mod configuration;
pub mod conversation;
pub mod crypto;
pub mod endpoints;
pub mod health;
pub mod invoke;
pub mod jobs;
pub mod lock;
pub mod metadata;
pub mod pubsub;
pub mod secrets;
pub mod state;

use std::sync::Arc;

use async_trait::async_trait;

use crate::{ApiResult, Ctx, Filter, Next, Request, Response, Runtime};

/// The terminal filter.
pub struct Router {
    rt: Arc<Runtime>,
}

impl Router {
    pub fn new(rt: Arc<Runtime>) -> Self {
        Router { rt }
    }
}

#[async_trait]
impl Filter for Router {
    fn name(&self) -> &'static str {
        "router"
    }

    async fn call(&self, ctx: &mut Ctx, req: Request, _next: Next<'_>) -> ApiResult {
        match req {
            Request::Health(r) => health::handle(&self.rt, r),
            Request::Metadata(r) => metadata::handle(&self.rt, r),
            Request::Shutdown => {
                self.rt.request_shutdown();
                Ok(Response::Empty)
            }
            // Each block's state machine boxed on its own: the router's
            // future is sized (moved, allocated) for the largest arm, and
            // invocation — the hot path — needs a small one.
            Request::State(r) => Box::pin(state::handle(&self.rt, r, ctx.protocol)).await,
            Request::Secrets(r) => Box::pin(secrets::handle(&self.rt, r)).await,
            Request::Invoke(r) => invoke::handle(&self.rt, r).await,
            Request::PubSub(r) => Box::pin(pubsub::handle(&self.rt, r)).await,
            Request::Configuration(r) => Box::pin(configuration::handle(&self.rt, r)).await,
            Request::Lock(r) => Box::pin(lock::handle(&self.rt, r)).await,
            Request::Conversation(r) => Box::pin(conversation::handle(&self.rt, *r)).await,
            Request::Crypto(r) => Box::pin(crypto::handle(&self.rt, r)).await,
            Request::Binding(r) => Box::pin(bindings::handle(&self.rt, ctx, *r)).await,
            Request::Jobs(r) => Box::pin(jobs::handle(&self.rt, *r)).await,
            Request::Rejected(e) => Err(e),
        }
    }
}
