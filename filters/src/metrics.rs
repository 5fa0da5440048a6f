//! Prometheus metrics with Dapr's names and labels, registered once.

use prometheus::{CounterVec, Encoder, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

/// Dapr's default latency buckets, in milliseconds.
const LATENCY_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0,
    100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0,
    10000.0, 20000.0, 50000.0, 100000.0,
];
const SIZE_BYTES: &[f64] = &[
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub http_request_count: CounterVec,
    pub http_latency: HistogramVec,
    pub http_request_bytes: HistogramVec,
    pub grpc_completed: CounterVec,
    pub grpc_latency: HistogramVec,
    pub grpc_received_bytes: HistogramVec,
    pub component_state_count: CounterVec,
    pub component_state_latency: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], b: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(b.to_vec()), labels)
        .expect("static metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

impl Metrics {
    /// Records one HTTP server call (used by the metrics filter, and by the
    /// front end for proxied calls once their status is known).
    pub fn record_http(&self, app_id: &str, method: &str, path: &str, status: u16, ms: f64) {
        let labels = [app_id, method, path, http_status_label(status)];
        self.http_request_count.with_label_values(&labels).inc();
        self.http_latency.with_label_values(&labels).observe(ms);
    }

    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }
        let server = ["app_id", "method", "path", "status"];
        Metrics {
            http_request_count: counter(
                &r,
                "dapr_http_server_request_count",
                "Number of HTTP requests started in server.",
                &server,
            ),
            http_latency: histogram(
                &r,
                "dapr_http_server_latency",
                "HTTP request end-to-end latency in server (ms).",
                &server,
                LATENCY_MS,
            ),
            http_request_bytes: histogram(
                &r,
                "dapr_http_server_request_bytes",
                "HTTP request size in bytes if set by headers.",
                &["app_id"],
                SIZE_BYTES,
            ),
            grpc_completed: counter(
                &r,
                "dapr_grpc_io_server_completed_rpcs",
                "Count of RPCs by method and status.",
                &["app_id", "grpc_server_method", "grpc_server_status"],
            ),
            grpc_latency: histogram(
                &r,
                "dapr_grpc_io_server_server_latency",
                "Time between first byte of request received to last byte of response sent (ms).",
                &["app_id", "grpc_server_method", "grpc_server_status"],
                LATENCY_MS,
            ),
            grpc_received_bytes: histogram(
                &r,
                "dapr_grpc_io_server_received_bytes_per_rpc",
                "Total bytes received across all messages per RPC.",
                &["app_id", "grpc_server_method"],
                SIZE_BYTES,
            ),
            component_state_count: counter(
                &r,
                "dapr_component_state_count",
                "The number of operations performed on the state component.",
                &["app_id", "component", "operation", "success"],
            ),
            component_state_latency: histogram(
                &r,
                "dapr_component_state_latencies",
                "The latency of the operations performed on the state component (ms).",
                &["app_id", "component", "operation", "success"],
                LATENCY_MS,
            ),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// gRPC status names as grpc-go's OpenCensus plugin labels them.
pub fn grpc_status_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Status codes as static strings: no allocation per request for a label.
pub fn http_status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}
