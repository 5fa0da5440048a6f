//! Prometheus scrape endpoint on `--metrics-port` (`GET /metrics`).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use spar_filters::metrics::Metrics;

pub struct MetricsApp(pub Arc<Metrics>);

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, ct, body) = if path == "/metrics" || path == "/" {
            (200, "text/plain; version=0.0.4", self.0.render())
        } else {
            (404, "text/plain", b"not found\n".to_vec())
        };
        Response::builder()
            .status(status)
            .header("content-type", ct)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
