//! Span export (`spec.tracing`): a bounded queue the request path offers
//! spans to without waiting, and one worker that batches them to Zipkin
//! and/or OTLP. When a collector is slow or down the queue fills and new
//! spans are dropped (counted, logged) — memory stays bounded and requests
//! never wait on telemetry.

mod otlp;
mod zipkin;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use spar_config::TracingSpec;
use spar_filters::trace::{SpanData, SpanSink, Tracer};
use tokio::sync::{mpsc, watch};

/// Spans waiting for export; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Spans per export call.
const BATCH: usize = 512;
/// How long a partial batch waits for company.
const FLUSH: Duration = Duration::from_millis(1000);
/// Default bound on one export call (`spec.tracing.otel.timeout` overrides).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

struct Queue {
    tx: mpsc::Sender<SpanData>,
    dropped: Arc<AtomicU64>,
}

impl SpanSink for Queue {
    fn offer(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Backend {
    Zipkin(zipkin::Zipkin),
    Otlp(otlp::Otlp),
    Stdout,
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Zipkin(_) => "zipkin",
            Backend::Otlp(_) => "otlp",
            Backend::Stdout => "stdout",
        }
    }

    async fn export(&self, spans: &[SpanData]) -> Result<(), String> {
        match self {
            Backend::Zipkin(z) => z.export(spans).await,
            Backend::Otlp(o) => o.export(spans).await,
            Backend::Stdout => {
                for s in spans {
                    tracing::info!(
                        trace_id = %s.ctx.trace_id_hex(),
                        span_id = %s.ctx.span_id_hex(),
                        name = %s.name,
                        "span"
                    );
                }
                Ok(())
            }
        }
    }
}

/// The HTTP client of an exporter: every call bounded by `timeout`.
fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())
}

/// `samplingRate` as daprd reads it: a number from 0 to 1; empty or
/// unparsable is 0 (off).
pub fn sampling_rate(spec: &TracingSpec) -> f64 {
    spec.sampling_rate
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0)
}

/// Builds the tracer and starts the export worker on the current runtime.
pub fn start(spec: Option<&TracingSpec>, app_id: &str) -> Result<Tracer, String> {
    let Some(spec) = spec else {
        return Ok(Tracer::default());
    };
    let rate = sampling_rate(spec);
    let mut backends = Vec::new();
    if let Some(z) = spec
        .zipkin
        .as_ref()
        .filter(|z| !z.endpoint_address.is_empty())
    {
        backends.push(Backend::Zipkin(zipkin::Zipkin::new(
            &z.endpoint_address,
            app_id,
            EXPORT_TIMEOUT,
        )?));
    }
    if let Some(o) = spec
        .otel
        .as_ref()
        .filter(|o| !o.endpoint_address.is_empty() && !o.protocol.is_empty())
    {
        backends.push(Backend::Otlp(otlp::Otlp::new(o, app_id, EXPORT_TIMEOUT)?));
    }
    if spec.stdout {
        backends.push(Backend::Stdout);
    }
    if rate == 0.0 || backends.is_empty() {
        // Sampled spans with nowhere to go are still made, so contexts
        // propagate as daprd's (which registers a null exporter).
        return Ok(Tracer::new(rate, None));
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    tokio::spawn(worker(rx, backends, dropped.clone()));
    tracing::info!(sampling_rate = rate, "tracing on");
    Ok(Tracer::new(rate, Some(Arc::new(Queue { tx, dropped }))))
}

/// Flips to true at shutdown: every export worker sends what it holds and
/// stops, so the last second of spans is not lost when the sidecar exits.
fn stopping() -> &'static watch::Sender<bool> {
    static STOP: OnceLock<watch::Sender<bool>> = OnceLock::new();
    STOP.get_or_init(|| watch::channel(false).0)
}

/// Workers still exporting.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Asks every export worker to send what it holds, and waits for them (at
/// most `within`).
pub async fn flush(within: Duration) {
    stopping().send_replace(true);
    let deadline = tokio::time::Instant::now() + within;
    while RUNNING.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn worker(mut rx: mpsc::Receiver<SpanData>, backends: Vec<Backend>, dropped: Arc<AtomicU64>) {
    RUNNING.fetch_add(1, Ordering::AcqRel);
    let mut stop = stopping().subscribe();
    let mut batch = Vec::with_capacity(BATCH);
    let mut last = false;
    while !last {
        tokio::select! {
            s = rx.recv() => match s {
                Some(s) => batch.push(s),
                None => last = true,
            },
            _ = stop.wait_for(|s| *s) => last = true,
        }
        if !last {
            let flush_at = tokio::time::Instant::now() + FLUSH;
            while batch.len() < BATCH {
                tokio::select! {
                    s = rx.recv() => match s {
                        Some(s) => batch.push(s),
                        None => { last = true; break }
                    },
                    _ = tokio::time::sleep_until(flush_at) => break,
                    _ = stop.wait_for(|s| *s) => { last = true; break }
                }
            }
        }
        if last {
            // Shutting down: take what is queued too (bounded by the queue).
            while let Ok(s) = rx.try_recv() {
                batch.push(s);
            }
        }
        for chunk in batch.chunks(BATCH) {
            for b in &backends {
                if let Err(e) = b.export(chunk).await {
                    tracing::warn!(
                        exporter = b.name(),
                        spans = chunk.len(),
                        "span export failed: {e}"
                    );
                }
            }
        }
        batch.clear();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(spans = lost, "spans dropped: export queue full");
        }
    }
    RUNNING.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_rate_reads_like_daprd() {
        let r = |s: &str| {
            sampling_rate(&TracingSpec {
                sampling_rate: s.into(),
                ..Default::default()
            })
        };
        assert_eq!(r(""), 0.0);
        assert_eq!(r("1"), 1.0);
        assert_eq!(r("0.1"), 0.1);
        assert_eq!(r("x"), 0.0);
        assert_eq!(r("NaN"), 0.0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_growing() {
        let (tx, _rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let q = Queue {
            tx,
            dropped: dropped.clone(),
        };
        let t = Tracer::new(1.0, Some(Arc::new(q)));
        for _ in 0..5 {
            drop(t.start(None, "x", spar_filters::trace::SpanKind::Client));
        }
        // Two queued, three dropped; nothing blocked.
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }
}
