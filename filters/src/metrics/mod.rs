//! Prometheus metrics with Dapr's names and labels, registered once.

use std::sync::Arc;
use std::time::Instant;

pub mod invocation;
pub mod label_cache;

use label_cache::Children;
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Families on the invocation hot path (see `children.rs`).
pub type Counters = Children<CounterVec>;
pub type Histograms = Children<HistogramVec>;

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

/// Label sets of the component metrics, as daprd's views define them.
const OPERATION: [&str; 5] = ["app_id", "component", "namespace", "operation", "success"];
const INGRESS: [&str; 6] = [
    "app_id",
    "component",
    "namespace",
    "process_status",
    "status",
    "topic",
];
const BULK_INGRESS: [&str; 5] = [
    "app_id",
    "component",
    "namespace",
    "process_status",
    "topic",
];
const RESILIENCY: [&str; 7] = [
    "app_id",
    "name",
    "policy",
    "namespace",
    "flow_direction",
    "target",
    "status",
];
const CONVERSATION: [&str; 4] = ["app_id", "component", "namespace", "success"];
const EGRESS: [&str; 5] = ["app_id", "component", "namespace", "success", "topic"];

pub struct Metrics {
    pub registry: Registry,
    pub http_request_count: Counters,
    pub http_latency: Histograms,
    pub http_request_bytes: HistogramVec,
    pub grpc_completed: CounterVec,
    pub grpc_latency: HistogramVec,
    pub grpc_received_bytes: HistogramVec,
    pub component_state_count: CounterVec,
    pub component_state_latency: HistogramVec,
    pub pubsub_ingress_count: CounterVec,
    pub pubsub_ingress_latency: HistogramVec,
    pub pubsub_ingress_bulk_count: CounterVec,
    pub pubsub_ingress_bulk_event_count: CounterVec,
    pub pubsub_ingress_bulk_latency: HistogramVec,
    pub pubsub_egress_count: CounterVec,
    pub pubsub_egress_latency: HistogramVec,
    pub pubsub_egress_bulk_count: CounterVec,
    pub pubsub_egress_bulk_event_count: CounterVec,
    pub pubsub_egress_bulk_latency: HistogramVec,
    pub secret_count: CounterVec,
    pub secret_latency: HistogramVec,
    pub configuration_count: CounterVec,
    pub configuration_latency: HistogramVec,
    pub conversation_count: CounterVec,
    pub conversation_latency: HistogramVec,
    pub crypto_count: CounterVec,
    pub crypto_latency: HistogramVec,
    pub input_binding_count: CounterVec,
    pub input_binding_latency: HistogramVec,
    pub output_binding_count: CounterVec,
    pub output_binding_latency: HistogramVec,
    pub resiliency_loaded: CounterVec,
    pub resiliency_count: CounterVec,
    pub resiliency_activations: CounterVec,
    pub resiliency_cb_state: IntGaugeVec,
    pub invoke_req_sent: Counters,
    pub invoke_res_recv: Counters,
    pub invoke_res_recv_latency: Histograms,
    pub invoke_req_recv: Counters,
    pub invoke_res_sent: Counters,
    pub http_client_completed: Counters,
    pub http_client_sent_bytes: Histograms,
    pub http_client_received_bytes: Histograms,
    pub grpc_client_completed: CounterVec,
    pub grpc_client_latency: HistogramVec,
    pub http_client_latency: Histograms,
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
        self.http_request_count.with(&labels, |c| c.inc());
        self.http_latency.with(&labels, |h| h.observe(ms));
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
            )
            .into(),
            http_latency: histogram(
                &r,
                "dapr_http_server_latency",
                "HTTP request end-to-end latency in server (ms).",
                &server,
                LATENCY_MS,
            )
            .into(),
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
                &OPERATION,
            ),
            component_state_latency: histogram(
                &r,
                "dapr_component_state_latencies",
                "The latency of the operations performed on the state component (ms).",
                &OPERATION,
                LATENCY_MS,
            ),
            pubsub_ingress_count: counter(
                &r,
                "dapr_component_pubsub_ingress_count",
                "The number of incoming messages arriving from the pub/sub component.",
                &INGRESS,
            ),
            pubsub_ingress_latency: histogram(
                &r,
                "dapr_component_pubsub_ingress_latencies",
                "The consuming app event processing latency (ms).",
                &INGRESS,
                LATENCY_MS,
            ),
            pubsub_ingress_bulk_count: counter(
                &r,
                "dapr_component_pubsub_ingress_bulk_count",
                "The number of incoming bulk subscribe calls arriving from the bulk pub/sub component.",
                &BULK_INGRESS,
            ),
            pubsub_ingress_bulk_event_count: counter(
                &r,
                "dapr_component_pubsub_ingress_bulk_event_count",
                "Total number of incoming messages arriving from the bulk pub/sub component via Bulk Subscribe.",
                &BULK_INGRESS,
            ),
            pubsub_ingress_bulk_latency: histogram(
                &r,
                "dapr_component_pubsub_ingress_bulk_latencies",
                "The consuming app event processing latency for the bulk pub/sub component (ms).",
                &BULK_INGRESS,
                LATENCY_MS,
            ),
            pubsub_egress_count: counter(
                &r,
                "dapr_component_pubsub_egress_count",
                "The number of outgoing messages published to the pub/sub component.",
                &EGRESS,
            ),
            pubsub_egress_latency: histogram(
                &r,
                "dapr_component_pubsub_egress_latencies",
                "The latency of the response from the pub/sub component (ms).",
                &EGRESS,
                LATENCY_MS,
            ),
            pubsub_egress_bulk_count: counter(
                &r,
                "dapr_component_pubsub_egress_bulk_count",
                "The number of bulk publish calls to the pub/sub component.",
                &EGRESS,
            ),
            pubsub_egress_bulk_event_count: counter(
                &r,
                "dapr_component_pubsub_egress_bulk_event_count",
                "The number of outgoing messages to the pub/sub component published through bulk publish API.",
                &EGRESS,
            ),
            pubsub_egress_bulk_latency: histogram(
                &r,
                "dapr_component_pubsub_egress_bulk_latencies",
                "The latency of the response for the bulk publish call from the pub/sub component (ms).",
                &EGRESS,
                LATENCY_MS,
            ),
            secret_count: counter(
                &r,
                "dapr_component_secret_count",
                "The number of operations performed on the secret component.",
                &OPERATION,
            ),
            secret_latency: histogram(
                &r,
                "dapr_component_secret_latencies",
                "The latency of the response from the secret component (ms).",
                &OPERATION,
                LATENCY_MS,
            ),
            configuration_count: counter(
                &r,
                "dapr_component_configuration_count",
                "The number of operations performed on the configuration component.",
                &OPERATION,
            ),
            configuration_latency: histogram(
                &r,
                "dapr_component_configuration_latencies",
                "The latency of the response from the configuration component (ms).",
                &OPERATION,
                LATENCY_MS,
            ),
            conversation_count: counter(
                &r,
                "dapr_component_conversation_count",
                "The number of operations performed on the conversation component.",
                &CONVERSATION,
            ),
            conversation_latency: histogram(
                &r,
                "dapr_component_conversation_latencies",
                "The latency of the response from the conversation component (ms).",
                &CONVERSATION,
                LATENCY_MS,
            ),
            crypto_count: counter(
                &r,
                "dapr_component_crypto_count",
                "The number of operations performed on the crypto component.",
                &OPERATION,
            ),
            crypto_latency: histogram(
                &r,
                "dapr_component_crypto_latencies",
                "The latency of the response from the crypto component (ms).",
                &OPERATION,
                LATENCY_MS,
            ),
            input_binding_count: counter(
                &r,
                "dapr_component_input_binding_count",
                "The number of incoming events arriving from the input binding component.",
                &CONVERSATION,
            ),
            input_binding_latency: histogram(
                &r,
                "dapr_component_input_binding_latencies",
                "The triggered app event processing latency (ms).",
                &CONVERSATION,
                LATENCY_MS,
            ),
            output_binding_count: counter(
                &r,
                "dapr_component_output_binding_count",
                "The number of operations invoked on the output binding component.",
                &OPERATION,
            ),
            output_binding_latency: histogram(
                &r,
                "dapr_component_output_binding_latencies",
                "The latency of the response from the output binding component (ms).",
                &OPERATION,
                LATENCY_MS,
            ),
            resiliency_loaded: counter(
                &r,
                "dapr_resiliency_loaded",
                "Number of resiliency policies loaded.",
                &["app_id", "name", "namespace"],
            ),
            resiliency_count: counter(
                &r,
                "dapr_resiliency_count",
                "Number of times a resiliency policy has been executed.",
                &RESILIENCY,
            ),
            resiliency_activations: counter(
                &r,
                "dapr_resiliency_activations_total",
                "Number of times a resiliency policy has been activated in a building block after a failure or after a state change.",
                &RESILIENCY,
            ),
            resiliency_cb_state: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "dapr_resiliency_cb_state",
                        "A resiliency policy's current circuit breaker state: one series per state, 1 for the current one.",
                    ),
                    &RESILIENCY,
                )
                .expect("static metric definition");
                r.register(Box::new(g.clone()))
                    .expect("metric registered once");
                g
            },
            invoke_req_sent: counter(
                &r,
                "dapr_runtime_service_invocation_req_sent_total",
                "The number of requests sent via service invocation.",
                &["app_id", "dst_app_id", "type"],
            )
            .into(),
            invoke_res_recv: counter(
                &r,
                "dapr_runtime_service_invocation_res_recv_total",
                "The number of responses received via service invocation.",
                &["app_id", "src_app_id", "status", "type"],
            )
            .into(),
            invoke_res_recv_latency: histogram(
                &r,
                "dapr_runtime_service_invocation_res_recv_latency_ms",
                "The latency of service invocation response.",
                &["app_id", "src_app_id", "status"],
                LATENCY_MS,
            )
            .into(),
            invoke_req_recv: counter(
                &r,
                "dapr_runtime_service_invocation_req_recv_total",
                "The number of requests received via service invocation.",
                &["app_id", "src_app_id"],
            )
            .into(),
            invoke_res_sent: counter(
                &r,
                "dapr_runtime_service_invocation_res_sent_total",
                "The number of responses sent via service invocation.",
                &["app_id", "dst_app_id", "status"],
            )
            .into(),
            grpc_client_completed: counter(
                &r,
                "dapr_grpc_io_client_completed_rpcs",
                "Count of RPCs by method and status (calls the sidecar makes).",
                &["app_id", "grpc_client_method", "grpc_client_status"],
            ),
            grpc_client_latency: histogram(
                &r,
                "dapr_grpc_io_client_roundtrip_latency",
                "Time from the first byte of a call sent to its last byte received (ms).",
                &["app_id", "grpc_client_method", "grpc_client_status"],
                LATENCY_MS,
            ),
            http_client_sent_bytes: histogram(
                &r,
                "dapr_http_client_sent_bytes",
                "Request body bytes sent to the app.",
                &["app_id", "method", "path"],
                SIZE_BYTES,
            )
            .into(),
            http_client_received_bytes: histogram(
                &r,
                "dapr_http_client_received_bytes",
                "Response body bytes received from the app.",
                &["app_id"],
                SIZE_BYTES,
            )
            .into(),
            http_client_completed: counter(
                &r,
                "dapr_http_client_completed_count",
                "Count of completed requests to the app.",
                &["app_id", "method", "path", "status"],
            )
            .into(),
            http_client_latency: histogram(
                &r,
                "dapr_http_client_roundtrip_latency",
                "Time from sending the request to the app to its response (ms).",
                &["app_id", "method", "path", "status"],
                LATENCY_MS,
            )
            .into(),
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

/// Component metrics for one sidecar: the registry plus the labels every
/// series carries (app id, namespace).
#[derive(Clone)]
pub struct ComponentMetrics {
    pub metrics: Arc<Metrics>,
    pub app_id: String,
    pub namespace: String,
}

pub(crate) fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

fn success(ok: bool) -> &'static str {
    if ok {
        "true"
    } else {
        "false"
    }
}

/// One component call: its count and its latency, under the same labels.
fn record(count: &CounterVec, latency: &HistogramVec, labels: &[&str], started: Instant) {
    count.with_label_values(labels).inc();
    latency.with_label_values(labels).observe(ms(started));
}

impl ComponentMetrics {
    /// daprd's labels for a component call with an operation.
    fn op_labels<'a>(&'a self, component: &'a str, operation: &'a str, ok: bool) -> [&'a str; 5] {
        [
            &self.app_id,
            component,
            &self.namespace,
            operation,
            success(ok),
        ]
    }

    pub fn state(&self, component: &str, operation: &str, ok: bool, started: Instant) {
        let m = &self.metrics;
        let l = self.op_labels(component, operation, ok);
        record(
            &m.component_state_count,
            &m.component_state_latency,
            &l,
            started,
        );
    }

    pub fn secret(&self, component: &str, operation: &str, ok: bool, started: Instant) {
        let m = &self.metrics;
        let l = self.op_labels(component, operation, ok);
        record(&m.secret_count, &m.secret_latency, &l, started);
    }

    pub fn configuration(&self, component: &str, operation: &str, ok: bool, started: Instant) {
        let m = &self.metrics;
        let l = self.op_labels(component, operation, ok);
        record(
            &m.configuration_count,
            &m.configuration_latency,
            &l,
            started,
        );
    }

    /// One call to a conversation component (daprd's labels: no operation).
    pub fn conversation(&self, component: &str, ok: bool, started: Instant) {
        let m = &self.metrics;
        let l = [&self.app_id, component, &self.namespace, success(ok)];
        record(&m.conversation_count, &m.conversation_latency, &l, started);
    }

    /// One event an input binding handed to the app (daprd's labels: no
    /// operation).
    pub fn input_binding(&self, component: &str, ok: bool, started: Instant) {
        let m = &self.metrics;
        let l = [&self.app_id, component, &self.namespace, success(ok)];
        record(
            &m.input_binding_count,
            &m.input_binding_latency,
            &l,
            started,
        );
    }

    /// One `InvokeBinding` call.
    pub fn output_binding(&self, component: &str, operation: &str, ok: bool, started: Instant) {
        let m = &self.metrics;
        let l = self.op_labels(component, operation, ok);
        record(
            &m.output_binding_count,
            &m.output_binding_latency,
            &l,
            started,
        );
    }

    /// One call to a crypto component (`crypto_op`, or `get` for a key).
    pub fn crypto(&self, component: &str, operation: &str, ok: bool, started: Instant) {
        let m = &self.metrics;
        let l = self.op_labels(component, operation, ok);
        record(&m.crypto_count, &m.crypto_latency, &l, started);
    }

    /// One publish (`events` = 1) or one bulk publish call.
    pub fn egress(
        &self,
        component: &str,
        topic: &str,
        ok: bool,
        events: usize,
        bulk: bool,
        started: Instant,
    ) {
        let l = [&self.app_id, component, &self.namespace, success(ok), topic];
        let m = &self.metrics;
        if bulk {
            m.pubsub_egress_bulk_count.with_label_values(&l).inc();
            m.pubsub_egress_bulk_event_count
                .with_label_values(&l)
                .inc_by(events as f64);
            m.pubsub_egress_bulk_latency
                .with_label_values(&l)
                .observe(ms(started));
        } else {
            m.pubsub_egress_count.with_label_values(&l).inc();
            m.pubsub_egress_latency
                .with_label_values(&l)
                .observe(ms(started));
        }
    }

    /// One message handed to the app: `process_status` is what became of it
    /// (`success`, `retry`, `drop`); `status` is daprd's second label
    /// (`success` for a deliberate drop, else empty).
    pub fn ingress(
        &self,
        component: &str,
        topic: &str,
        process_status: &str,
        status: &str,
        elapsed_ms: f64,
    ) {
        let l = [
            &self.app_id,
            component,
            &self.namespace,
            process_status,
            status,
            topic,
        ];
        self.metrics
            .pubsub_ingress_count
            .with_label_values(&l)
            .inc();
        self.metrics
            .pubsub_ingress_latency
            .with_label_values(&l)
            .observe(elapsed_ms);
    }

    /// One bulk delivery call and the status of each of its events.
    pub fn ingress_bulk(&self, component: &str, topic: &str, statuses: &[&str], elapsed_ms: f64) {
        let m = &self.metrics;
        for s in statuses {
            let l = [&self.app_id, component, &self.namespace, s, topic];
            m.pubsub_ingress_bulk_event_count
                .with_label_values(&l)
                .inc();
        }
        let l = [&self.app_id, component, &self.namespace, "", topic];
        m.pubsub_ingress_bulk_count.with_label_values(&l).inc();
        m.pubsub_ingress_bulk_latency
            .with_label_values(&l)
            .observe(elapsed_ms);
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
