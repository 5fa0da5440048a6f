//! The bindings building block, output side: `POST|PUT /v1.0/bindings/{name}`
//! and gRPC `InvokeBinding`. daprd's rules: an operation is required, the
//! binding must be loaded with an output side (its `direction` allows it)
//! and list the operation; the call runs under the component's outbound
//! resiliency policy; every failure is `ERR_INVOKE_OUTPUT_BINDING` (500).
//! The component's answer metadata goes back as `metadata.{key}` headers
//! (HTTP) / response metadata (gRPC) — on failures too, as daprd does.
//!
//! The input side (events to the app) is the binary's `input_bindings.rs`;
//! the collection here tells it which components have one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use spar_components::bindings::{Binding, BindingError, Direction, InvokeRequest, InvokeResponse};

use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::{ApiError, ApiResult, Ctx, Response, Runtime};

#[derive(Debug, Default)]
pub struct BindingRequest {
    pub name: String,
    pub operation: String,
    pub data: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

/// A loaded binding and the sides the runtime uses.
#[derive(Clone)]
pub struct BindingEntry {
    pub binding: Arc<dyn Binding>,
    pub direction: Direction,
    /// Where input events go on the app: `route` metadata, else the name.
    pub route: String,
}

impl BindingEntry {
    pub fn output(&self) -> bool {
        self.direction.output && !self.binding.operations().is_empty()
    }

    pub fn input(&self) -> bool {
        self.direction.input && self.binding.is_input()
    }
}

/// The bindings by component name.
#[derive(Default)]
pub struct Bindings {
    map: HashMap<String, BindingEntry>,
}

impl Bindings {
    pub fn insert(&mut self, name: String, e: BindingEntry) {
        self.map.insert(name, e);
    }

    pub fn get(&self, name: &str) -> Option<&BindingEntry> {
        self.map.get(name)
    }

    /// The components with an input side in use, by name.
    pub fn inputs(&self) -> Vec<(String, BindingEntry)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .filter(|(_, e)| e.input())
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn refused(name: &str, reason: impl Into<String>) -> ApiError {
    ApiError::InvokeOutputBinding {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The component call under its outbound policy, traced as a child span
/// (`bindings/{name}/{op}`).
async fn guarded(
    live: &Live,
    name: &str,
    b: &dyn Binding,
    req: InvokeRequest,
) -> Result<Option<InvokeResponse>, BindingError> {
    let mut span = crate::trace::filter::child_span(
        &live.tracer,
        || format!("bindings/{name}/{}", req.operation),
        crate::trace::SpanKind::Client,
    );
    let r = match live.resiliency.component_outbound(name) {
        None => b.invoke(req).await,
        Some(p) => p
            .run(
                || b.invoke(req.clone()),
                |r| match r {
                    Err(_) => Verdict::Failed(None),
                    Ok(_) => Verdict::Success,
                },
            )
            .await
            .map_err(|r| match r {
                Refused::Failed(e) => e,
                Refused::Timeout(d) => {
                    BindingError::Backend(format!("timeout after {d:?} (resiliency policy)"))
                }
                Refused::BreakerOpen => BindingError::Backend("circuit breaker is open".into()),
            }),
    };
    if let (Some(s), Err(e)) = (span.as_mut(), &r) {
        s.error(e.to_string());
    }
    r
}

/// The answer's metadata as daprd sends it: `metadata.{key}`.
fn answer_metadata(ctx: &mut Ctx, md: &HashMap<String, String>) {
    for (k, v) in md {
        ctx.answer_headers
            .push((format!("metadata.{k}").into(), v.clone()));
    }
}

pub async fn handle(rt: &Runtime, ctx: &mut Ctx, req: BindingRequest) -> ApiResult {
    let live = rt.live();
    let name = req.name.clone();
    if req.operation.is_empty() {
        return Err(refused(&name, "operation field is missing from request"));
    }
    let Some(e) = live.bindings.get(&name).filter(|e| e.output()) else {
        return Err(refused(
            &name,
            format!("couldn't find output binding {name}"),
        ));
    };
    let ops = e.binding.operations();
    if !ops.contains(&req.operation.as_str()) {
        return Err(refused(
            &name,
            format!(
                "binding {name} does not support operation {}. supported operations:{}",
                req.operation,
                ops.join(" ")
            ),
        ));
    }
    let operation = req.operation.clone();
    let mut metadata = req.metadata;
    // The API call's trace context goes on to the component (the HTTP
    // binding forwards it), as daprd passes it.
    if let Some(span) = &ctx.span {
        metadata
            .entry("traceparent".to_string())
            .or_insert_with(|| span.context().traceparent());
    }
    let started = Instant::now();
    let r = guarded(
        &live,
        &name,
        &*e.binding,
        InvokeRequest {
            operation: req.operation,
            data: req.data,
            metadata,
        },
    )
    .await;
    if let Some(m) = &rt.metrics {
        m.output_binding(&name, &operation, r.is_ok(), started);
    }
    match r {
        Ok(Some(resp)) => {
            answer_metadata(ctx, &resp.metadata);
            Ok(Response::Binding(Some(Box::new(resp))))
        }
        Ok(None) => Ok(Response::Binding(None)),
        Err(err) => {
            if let Some(md) = err.metadata() {
                answer_metadata(ctx, md);
            }
            Err(refused(&name, err.to_string()))
        }
    }
}
