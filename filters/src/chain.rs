//! The filter abstraction and the chain that runs filters in order.
//!
//! Filters are middleware: each gets the request and a [`Next`] for the rest
//! of the chain, so it can answer early (auth), act before and after (metrics)
//! or call the rest more than once (retries). The last filter is terminal and
//! never calls `next` (the handler router).

use std::sync::Arc;

use arc_swap::ArcSwap;

use async_trait::async_trait;

use crate::{ApiError, ApiResult, Ctx, Request};

#[async_trait]
pub trait Filter: Send + Sync + 'static {
    /// A short name for logs and the metadata API.
    fn name(&self) -> &'static str;

    async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult;

    /// The filter has nothing to do for this call, as it can tell before
    /// the call runs: the chain passes it by (each call through a filter
    /// costs a boxed future, a few hundred instructions on the hot path).
    fn skips(&self, _ctx: &Ctx, _req: &Request) -> bool {
        false
    }
}

/// The filters after the current one.
pub struct Next<'a> {
    rest: &'a [Arc<dyn Filter>],
}

impl Next<'_> {
    pub async fn run(self, ctx: &mut Ctx, req: Request) -> ApiResult {
        let mut rest = self.rest;
        while let Some((f, tail)) = rest.split_first() {
            if tail.is_empty() || !f.skips(ctx, &req) {
                return f.call(ctx, req, Next { rest: tail }).await;
            }
            rest = tail;
        }
        Err(ApiError::Internal(
            "filter chain ended without a handler".into(),
        ))
    }
}

/// An ordered list of filters, built at start and shared by both front
/// ends. Cloning is cheap (one `Arc`); clones share one list, which hot
/// reload replaces as a whole ([`Chain::replace`]) — a call already running
/// finishes on the list it started with.
#[derive(Clone)]
pub struct Chain {
    filters: Arc<ArcSwap<Vec<Arc<dyn Filter>>>>,
}

impl Chain {
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> Self {
        Chain {
            filters: Arc::new(ArcSwap::from_pointee(filters)),
        }
    }

    pub async fn handle(&self, ctx: &mut Ctx, req: Request) -> ApiResult {
        let filters = self.filters.load_full();
        Next { rest: &filters }.run(ctx, req).await
    }

    /// Puts `other`'s filters in service for every clone of this chain.
    pub fn replace(&self, other: &Chain) {
        self.filters.store(other.filters.load_full());
    }

    /// Filter names in order, for logs and metadata.
    pub fn names(&self) -> Vec<&'static str> {
        self.filters.load().iter().map(|f| f.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Protocol, Response};

    struct Tag(&'static str);
    #[async_trait]
    impl Filter for Tag {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult {
            ctx.route = self.0;
            next.run(ctx, req).await
        }
    }
    struct End;
    #[async_trait]
    impl Filter for End {
        fn name(&self) -> &'static str {
            "end"
        }
        async fn call(&self, _: &mut Ctx, _: Request, _: Next<'_>) -> ApiResult {
            Ok(Response::Empty)
        }
    }

    #[tokio::test]
    async fn runs_in_order_and_ends_in_terminal() {
        let chain = Chain::new(vec![Arc::new(Tag("a")), Arc::new(Tag("b")), Arc::new(End)]);
        let mut ctx = Ctx::new(Protocol::Http, "GET", "test");
        let r = chain.handle(&mut ctx, Request::Shutdown).await;
        assert!(matches!(r, Ok(Response::Empty)));
        assert_eq!(ctx.route, "b");
        assert_eq!(chain.names(), vec!["a", "b", "end"]);
    }

    struct Skipped;
    #[async_trait]
    impl Filter for Skipped {
        fn name(&self) -> &'static str {
            "skipped"
        }
        async fn call(&self, _: &mut Ctx, _: Request, _: Next<'_>) -> ApiResult {
            panic!("a filter that skips is not called")
        }
        fn skips(&self, _: &Ctx, _: &Request) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn skipping_filters_are_passed_by_but_the_terminal_runs() {
        let chain = Chain::new(vec![Arc::new(Skipped), Arc::new(Tag("a")), Arc::new(End)]);
        let mut ctx = Ctx::new(Protocol::Http, "GET", "test");
        let r = chain.handle(&mut ctx, Request::Shutdown).await;
        assert!(matches!(r, Ok(Response::Empty)));
        assert_eq!(ctx.route, "a");
    }

    #[tokio::test]
    async fn chain_without_terminal_is_an_error_not_a_panic() {
        let chain = Chain::new(vec![Arc::new(Tag("a"))]);
        let mut ctx = Ctx::new(Protocol::Grpc, "GET", "test");
        assert!(chain.handle(&mut ctx, Request::Shutdown).await.is_err());
    }
}
