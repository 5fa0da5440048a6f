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

    /// Runs the filter around the rest of the chain. The default is an
    /// observer's: the rest runs, then [`Filter::observe`] sees the outcome.
    async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult {
        let res = next.run(ctx, req).await;
        self.observe(ctx, &res);
        res
    }

    /// The filter has nothing to do for this call, as it can tell before
    /// the call runs: the chain passes it by (each call through a filter
    /// costs a boxed future, a few hundred instructions on the hot path).
    fn skips(&self, _ctx: &Ctx, _req: &Request) -> bool {
        false
    }

    /// The filter only records the outcome (metrics, logs) and changes
    /// nothing: the chain runs the rest without calling it and then hands
    /// it the outcome in [`Filter::observe`] — no boxed call of its own.
    fn observes(&self) -> bool {
        false
    }

    /// The outcome of the filters after this one, for an observer.
    fn observe(&self, _ctx: &Ctx, _res: &ApiResult) {}

    /// Request headers (lower case) this filter reads: the front ends copy
    /// them into [`Ctx::headers`] when a call carries them, and no others.
    fn reads_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether this filter may add answer headers ([`Ctx::answer_headers`]):
    /// the gRPC front end collects them only when some filter does.
    fn adds_headers(&self) -> bool {
        false
    }
}

/// Observers a chain keeps aside without a heap allocation; past this
/// many, one is called like any filter (its default `call` observes too).
const OBSERVERS: usize = 4;

/// The filters after the current one.
pub struct Next<'a> {
    rest: &'a [Arc<dyn Filter>],
}

impl Next<'_> {
    pub async fn run(self, ctx: &mut Ctx, req: Request) -> ApiResult {
        let mut rest = self.rest;
        let mut observers: [Option<&dyn Filter>; OBSERVERS] = [None; OBSERVERS];
        let mut n = 0;
        let res = loop {
            let Some((f, tail)) = rest.split_first() else {
                break Err(ApiError::Internal(
                    "filter chain ended without a handler".into(),
                ));
            };
            rest = tail;
            if !tail.is_empty() && f.skips(ctx, &req) {
                continue;
            }
            if !tail.is_empty() && n < OBSERVERS && f.observes() {
                observers[n] = Some(&**f);
                n += 1;
                continue;
            }
            break f.call(ctx, req, Next { rest: tail }).await;
        };
        // Innermost first, as if each had wrapped the rest.
        for o in observers[..n].iter().rev().flatten() {
            o.observe(ctx, &res);
        }
        res
    }
}

/// An ordered list of filters, built at start and shared by both front
/// ends. Cloning is cheap (one `Arc`); clones share one list, which hot
/// reload replaces as a whole ([`Chain::replace`]) — a call already running
/// finishes on the list it started with.
#[derive(Clone)]
pub struct Chain {
    filters: Arc<ArcSwap<Filters>>,
}

/// One version of the chain: its filters and the request headers they read.
struct Filters {
    list: Vec<Arc<dyn Filter>>,
    reads: Vec<&'static str>,
    adds: bool,
}

impl Chain {
    pub fn new(list: Vec<Arc<dyn Filter>>) -> Self {
        let mut reads: Vec<&'static str> = list
            .iter()
            .flat_map(|f| f.reads_headers())
            .copied()
            .collect();
        reads.sort_unstable();
        reads.dedup();
        let adds = list.iter().any(|f| f.adds_headers());
        Chain {
            filters: Arc::new(ArcSwap::from_pointee(Filters { list, reads, adds })),
        }
    }

    pub async fn handle(&self, ctx: &mut Ctx, req: Request) -> ApiResult {
        let filters = self.filters.load_full();
        Next {
            rest: &filters.list,
        }
        .run(ctx, req)
        .await
    }

    /// Puts `other`'s filters in service for every clone of this chain.
    pub fn replace(&self, other: &Chain) {
        self.filters.store(other.filters.load_full());
    }

    /// Filter names in order, for logs and metadata.
    pub fn names(&self) -> Vec<&'static str> {
        self.filters.load().list.iter().map(|f| f.name()).collect()
    }

    /// The request headers some filter reads (`get` looks one up): what a
    /// front end puts in [`Ctx::headers`]. Nothing when no filter reads any.
    pub fn read_headers(
        &self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Vec<(&'static str, String)> {
        let f = self.filters.load();
        f.reads.iter().filter_map(|n| Some((*n, get(n)?))).collect()
    }

    /// Whether some filter may add answer headers.
    pub fn adds_headers(&self) -> bool {
        self.filters.load().adds
    }

    /// Whether a call carries a header some filter reads (`has` looks one
    /// up); such calls are served where filters' answer headers are added.
    pub fn reads_any(&self, has: impl Fn(&str) -> bool) -> bool {
        let f = self.filters.load();
        f.reads.iter().any(|n| has(n))
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

    /// Writes its tag into a shared log when it observes an outcome.
    struct Watch(&'static str, Arc<std::sync::Mutex<Vec<String>>>);
    #[async_trait]
    impl Filter for Watch {
        fn name(&self) -> &'static str {
            self.0
        }
        fn observes(&self) -> bool {
            true
        }
        fn observe(&self, ctx: &Ctx, res: &ApiResult) {
            let what = if res.is_ok() { "ok" } else { "err" };
            self.1
                .lock()
                .unwrap()
                .push(format!("{}:{what}:{}", self.0, ctx.route));
        }
    }

    #[tokio::test]
    async fn observers_see_the_outcome_innermost_first() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Six observers: more than are kept aside, so the last ones are
        // called like filters and must observe all the same.
        let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
        let names = ["o1", "o2", "o3", "o4", "o5", "o6"];
        for n in &names[..3] {
            filters.push(Arc::new(Watch(n, log.clone())));
        }
        filters.push(Arc::new(Tag("set-by-tag")));
        for n in &names[3..] {
            filters.push(Arc::new(Watch(n, log.clone())));
        }
        filters.push(Arc::new(End));
        let chain = Chain::new(filters);
        let mut ctx = Ctx::new(Protocol::Http, "GET", "test");
        assert!(chain.handle(&mut ctx, Request::Shutdown).await.is_ok());
        let seen = log.lock().unwrap().clone();
        let order: Vec<&str> = seen.iter().map(|s| s.split(':').next().unwrap()).collect();
        assert_eq!(order, ["o6", "o5", "o4", "o3", "o2", "o1"]);
        // Each saw the context as the inner filters left it.
        assert!(
            seen.iter().all(|s| s.ends_with(":ok:set-by-tag")),
            "{seen:?}"
        );

        // An error outcome, and a chain with no terminal, are observed too.
        log.lock().unwrap().clear();
        let chain = Chain::new(vec![Arc::new(Watch("w", log.clone())), Arc::new(Tag("a"))]);
        let mut ctx = Ctx::new(Protocol::Grpc, "GET", "test");
        assert!(chain.handle(&mut ctx, Request::Shutdown).await.is_err());
        assert_eq!(*log.lock().unwrap(), ["w:err:a"]);
    }

    #[tokio::test]
    async fn chain_without_terminal_is_an_error_not_a_panic() {
        let chain = Chain::new(vec![Arc::new(Tag("a"))]);
        let mut ctx = Ctx::new(Protocol::Grpc, "GET", "test");
        assert!(chain.handle(&mut ctx, Request::Shutdown).await.is_err());
    }
}
