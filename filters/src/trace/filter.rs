//! The tracing filter: one span per API call, named and tagged as daprd
//! names and tags them, with the caller's context as parent.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Span, SpanContext, SpanKind, Tracer};
use crate::handlers::pubsub::PubSubRequest;
use crate::handlers::secrets::SecretsRequest;
use crate::{ApiResult, Ctx, Filter, Next, Protocol, Request, Response};

tokio::task_local! {
    /// The span context of the API call being handled, for component-call
    /// spans deeper down (state store, broker) without threading it through
    /// every handler.
    static CURRENT: SpanContext;
}

/// A child span of the current API call's span (none outside one).
pub fn child_span(tracer: &Tracer, name: impl FnOnce() -> String, kind: SpanKind) -> Option<Span> {
    if !tracer.enabled() {
        return None;
    }
    CURRENT
        .try_with(|c| c.clone())
        .ok()
        .map(|parent| tracer.start(Some(&parent), name(), kind))
}

/// The current API call's span context, if the call is traced.
pub fn current() -> Option<SpanContext> {
    CURRENT.try_with(|c| c.clone()).ok()
}

pub struct TracingFilter {
    tracer: Arc<Tracer>,
}

impl TracingFilter {
    pub fn new(tracer: Arc<Tracer>) -> Self {
        TracingFilter { tracer }
    }
}

#[async_trait]
impl Filter for TracingFilter {
    fn name(&self) -> &'static str {
        "tracing"
    }

    /// daprd does not trace health probes.
    fn skips(&self, _: &Ctx, req: &Request) -> bool {
        matches!(req, Request::Health(_))
    }

    async fn call(&self, ctx: &mut Ctx, mut req: Request, next: Next<'_>) -> ApiResult {
        let mut span = self
            .tracer
            .start(ctx.trace_parent.as_ref(), "", SpanKind::Client);
        if span.recording() {
            describe(&mut span, ctx, &req);
        }
        let sc = span.context().clone();
        // Publishing carries the API span's context into the CloudEvent.
        match &mut req {
            Request::PubSub(PubSubRequest::Publish(p)) => {
                p.traceparent = Some(sc.traceparent());
                p.tracestate = sc.tracestate.as_deref().map(str::to_owned);
            }
            Request::PubSub(PubSubRequest::BulkPublish { traceparent, .. }) => {
                *traceparent = Some(sc.traceparent());
            }
            _ => {}
        }
        let res = CURRENT.scope(sc, next.run(ctx, req)).await;
        match &res {
            // Proxied: the front end ends the span once the callee answered
            // (and sends its context on as the callee's parent).
            Ok(Response::Proxy(_)) => {
                ctx.span = Some(span);
                return res;
            }
            Ok(r) if ctx.protocol == Protocol::Http => span.http_status(r.http_status()),
            Err(e) if ctx.protocol == Protocol::Http => span.http_status(e.http_status()),
            Ok(_) => {}
            Err(e) => span.grpc_status(e.grpc_code(), &e.to_string()),
        }
        drop(span);
        res
    }
}

/// Span name and attributes as daprd sets them: the path (HTTP) or full
/// method (gRPC) by default, `CallLocal/{app}/{method}` for invocation, and
/// the `db.*` / `messaging.*` conventions for building blocks.
fn describe(span: &mut Span, ctx: &Ctx, req: &Request) {
    let (proto, api) = match ctx.protocol {
        Protocol::Http => ("http", format!("{} {}", ctx.method, ctx.path)),
        Protocol::Grpc => ("grpc", ctx.route.to_owned()),
    };
    span.set_name(match ctx.protocol {
        Protocol::Http => ctx.path.clone(),
        Protocol::Grpc => ctx.route.to_owned(),
    });
    span.attr("dapr.protocol", proto);
    span.attr("dapr.api", api);
    if ctx.protocol == Protocol::Http {
        span.attr("http.request.method", ctx.method);
        span.attr("url.full", ctx.path.clone());
    }
    let db = |span: &mut Span, system: &'static str, name: &str| {
        span.attr("db.system", system);
        span.attr("db.name", name.to_owned());
        span.attr("db.statement", ctx.route);
        span.attr("db.connection_string", system);
        span.attr("rpc.service", "Dapr");
    };
    match req {
        Request::Invoke(i) => {
            let method = i.method.split('?').next().unwrap_or_default();
            let method = method.trim_start_matches('/');
            span.set_name(format!("CallLocal/{}/{}", i.app_id, method));
            span.attr("rpc.service", "ServiceInvocation");
            span.attr("net.peer.name", i.app_id.clone());
        }
        Request::State(s) => db(span, "state", s.store()),
        Request::Secrets(
            SecretsRequest::Get { store, .. } | SecretsRequest::Bulk { store, .. },
        ) => db(span, "secrets", store),
        Request::PubSub(p) => {
            let topic = match p {
                PubSubRequest::Publish(p) => &p.topic,
                PubSubRequest::BulkPublish { topic, .. }
                | PubSubRequest::Subscribe { topic, .. } => topic,
            };
            span.attr("rpc.service", "Dapr");
            span.attr("messaging.system", "pubsub");
            span.attr("messaging.destination.name", topic.clone());
        }
        _ => {}
    }
}
