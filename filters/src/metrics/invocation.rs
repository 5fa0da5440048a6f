//! daprd's service-invocation metrics (`dapr_runtime_service_invocation_*`)
//! and the app-channel client metrics (`dapr_http_client_*`), recorded by
//! the front ends where a call leaves or reaches this sidecar.

use std::time::Instant;

use super::{ms, ComponentMetrics};

/// `unary` or `streaming`, as daprd labels calls.
#[derive(Clone, Copy)]
pub enum CallType {
    Unary,
    Streaming,
}

impl CallType {
    fn as_str(self) -> &'static str {
        match self {
            CallType::Unary => "unary",
            CallType::Streaming => "streaming",
        }
    }
}

impl ComponentMetrics {
    /// Caller side: a request went to `dst`.
    pub fn invoke_sent(&self, dst: &str, t: CallType) {
        self.metrics
            .invoke_req_sent
            .with(&[&self.app_id, dst, t.as_str()], |m| m.inc());
    }

    /// Caller side: `dst` answered with `status` (HTTP status or gRPC code).
    /// daprd labels the answering app `src_app_id`.
    pub fn invoke_answered(&self, dst: &str, status: &str, t: CallType, started: Instant) {
        self.metrics
            .invoke_res_recv
            .with(&[&self.app_id, dst, status, t.as_str()], |m| m.inc());
        self.metrics
            .invoke_res_recv_latency
            .with(&[&self.app_id, dst, status], |m| m.observe(ms(started)));
    }

    /// A gRPC call this sidecar made (to its app, or to a peer sidecar):
    /// daprd's `grpc.io/client` views.
    pub fn grpc_client(&self, method: &str, code: i32, started: Instant) {
        let l = [
            self.app_id.as_str(),
            method,
            crate::metrics::grpc_status_name(code),
        ];
        self.metrics
            .grpc_client_completed
            .with_label_values(&l)
            .inc();
        self.metrics
            .grpc_client_latency
            .with_label_values(&l)
            .observe(ms(started));
    }

    /// Callee side: a request arrived from `src` ("" when unknown).
    pub fn invoke_received(&self, src: &str) {
        self.metrics
            .invoke_req_recv
            .with(&[&self.app_id, src], |m| m.inc());
    }

    /// Callee side: the answer went back to `src`, and the app call it
    /// took (the app channel's client metrics; body sizes as streamed).
    pub fn invoke_replied(
        &self,
        src: &str,
        method: &str,
        status: &str,
        app_started: Instant,
        (sent, received): (usize, usize),
    ) {
        self.metrics
            .http_client_sent_bytes
            .with(&[self.app_id.as_str(), method, ""], |m| {
                m.observe(sent as f64)
            });
        self.metrics
            .http_client_received_bytes
            .with(&[self.app_id.as_str()], |m| m.observe(received as f64));
        self.metrics
            .invoke_res_sent
            .with(&[&self.app_id, src, status], |m| m.inc());
        let l = [self.app_id.as_str(), method, "", status];
        self.metrics.http_client_completed.with(&l, |m| m.inc());
        self.metrics
            .http_client_latency
            .with(&l, |m| m.observe(ms(app_started)));
    }
}
