//! Distributed tracing: W3C context propagation, sampling and spans.
//!
//! A [`Tracer`] is built once from `spec.tracing`. Spans are plain values;
//! a sampled span is handed to the [`SpanSink`] when it is dropped, and the
//! sink (the batching exporter in the binary) never blocks: it queues or
//! drops. Unsampled spans cost two random numbers and carry the context on.

pub mod context;
pub mod filter;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub use context::SpanContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// A finished span, as exporters see it.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub ctx: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attrs: Vec<(&'static str, String)>,
    /// Error status with its description; `None` is "unset" (OK).
    pub error: Option<String>,
}

/// Where finished sampled spans go. Must not block: queue or drop.
pub trait SpanSink: Send + Sync + 'static {
    fn offer(&self, span: SpanData);
}

/// `spec.tracing`, compiled.
#[derive(Clone, Default)]
pub struct Tracer {
    /// 0 = tracing off (no spans, the caller's context passed on as is).
    rate: f64,
    sink: Option<Arc<dyn SpanSink>>,
}

impl Tracer {
    pub fn new(rate: f64, sink: Option<Arc<dyn SpanSink>>) -> Self {
        Tracer {
            rate: rate.clamp(0.0, 1.0),
            sink,
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Starts a span under `parent` (a remote or local context), or a new
    /// trace. Sampling follows the parent when there is one, else the
    /// trace-id ratio — daprd's parent-based ratio sampler.
    pub fn start(
        &self,
        parent: Option<&SpanContext>,
        name: impl Into<String>,
        kind: SpanKind,
    ) -> Span {
        let (ctx, parent_id) = match parent {
            Some(p) => (p.child(p.sampled), Some(p.span_id)),
            None => {
                let mut c = SpanContext::root(false);
                c.sampled = self.ratio_sampled(&c.trace_id);
                (c, None)
            }
        };
        let sink = if ctx.sampled && self.enabled() {
            self.sink.clone()
        } else {
            None
        };
        Span {
            data: SpanData {
                ctx,
                parent: parent_id,
                name: if sink.is_some() {
                    name.into()
                } else {
                    String::new()
                },
                kind,
                start: SystemTime::now(),
                end: SystemTime::UNIX_EPOCH,
                attrs: Vec::new(),
                error: None,
            },
            began: Instant::now(),
            sink,
        }
    }

    /// The ratio sampler: the trace id's low 63 bits against the rate, so
    /// every process decides the same for one trace.
    fn ratio_sampled(&self, trace_id: &[u8; 16]) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        let x = u64::from_be_bytes(low) >> 1;
        (x as f64) < self.rate * (1u64 << 63) as f64
    }
}

/// A span in progress. Dropping it ends it (and exports it when sampled),
/// so every exit path of a call ends its span.
pub struct Span {
    data: SpanData,
    began: Instant,
    sink: Option<Arc<dyn SpanSink>>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("name", &self.data.name)
            .field("recording", &self.recording())
            .finish()
    }
}

impl Span {
    pub fn context(&self) -> &SpanContext {
        &self.data.ctx
    }

    /// Whether this span will be exported; attributes are only worth
    /// computing then.
    pub fn recording(&self) -> bool {
        self.sink.is_some()
    }

    pub fn set_name(&mut self, name: impl Into<String>) {
        if self.recording() {
            self.data.name = name.into();
        }
    }

    pub fn attr(&mut self, key: &'static str, value: impl Into<String>) {
        if self.recording() {
            self.data.attrs.push((key, value.into()));
        }
    }

    /// Status from an HTTP answer: 4xx/5xx are errors, as daprd.
    pub fn http_status(&mut self, status: u16) {
        if self.recording() {
            self.data
                .attrs
                .push(("dapr.status_code", status.to_string()));
            if status >= 400 {
                self.data.error = Some(format!("Code({status})"));
            }
        }
    }

    /// Status from a gRPC code (0 = OK).
    pub fn grpc_status(&mut self, code: i32, message: &str) {
        if self.recording() && code != 0 {
            self.data.error = Some(format!(
                "{}: {message}",
                crate::metrics::grpc_status_name(code)
            ));
        }
    }

    pub fn error(&mut self, message: impl Into<String>) {
        if self.recording() {
            self.data.error = Some(message.into());
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            let d = &mut self.data;
            sink.offer(SpanData {
                ctx: d.ctx.clone(),
                parent: d.parent,
                name: std::mem::take(&mut d.name),
                kind: d.kind,
                start: d.start,
                end: d.start + self.began.elapsed(),
                attrs: std::mem::take(&mut d.attrs),
                error: d.error.take(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<SpanData>>);
    impl SpanSink for Collect {
        fn offer(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }
    }

    #[test]
    fn rate_one_exports_every_span_with_its_parent() {
        let sink = Arc::new(Collect::default());
        let t = Tracer::new(1.0, Some(sink.clone()));
        let outer = t.start(None, "outer", SpanKind::Client);
        let inner = t.start(Some(outer.context()), "inner", SpanKind::Client);
        let (oc, ic) = (outer.context().clone(), inner.context().clone());
        drop(inner);
        drop(outer);
        let got = sink.0.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "inner");
        assert_eq!(got[0].parent, Some(oc.span_id));
        assert_eq!(got[0].ctx.trace_id, oc.trace_id);
        assert_eq!(got[0].ctx.span_id, ic.span_id);
        assert!(got[1].parent.is_none());
        assert!(got[0].end >= got[0].start);
    }

    #[test]
    fn rate_zero_exports_nothing_even_under_a_sampled_parent() {
        let sink = Arc::new(Collect::default());
        let t = Tracer::new(0.0, Some(sink.clone()));
        let p = SpanContext::root(true);
        drop(t.start(Some(&p), "x", SpanKind::Client));
        drop(t.start(None, "y", SpanKind::Client));
        assert!(sink.0.lock().unwrap().is_empty());
    }

    #[test]
    fn parent_decides_and_the_ratio_is_roughly_kept() {
        let sink = Arc::new(Collect::default());
        let t = Tracer::new(0.25, Some(sink.clone()));
        let unsampled = SpanContext::root(false);
        let s = t.start(Some(&unsampled), "x", SpanKind::Client);
        assert!(!s.recording() && !s.context().sampled);
        let n = (0..4000)
            .filter(|_| t.start(None, "r", SpanKind::Client).context().sampled)
            .count();
        assert!((700..1300).contains(&n), "{n}");
    }
}
