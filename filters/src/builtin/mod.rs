//! Built-in filters that run before the handler router, and the factory that
//! builds the chain from configuration. Adding a filter is one file here plus
//! one line in [`build_chain`] (or a file in `middleware/` and a line in its
//! table for an httpPipeline middleware type).

pub mod api_log;
pub mod auth;
pub mod cors;
pub mod middleware;
pub mod pii;
pub mod server_metrics;
pub mod size_limit;

use std::sync::Arc;

use crate::chain::{Chain, Filter};
use crate::handlers::Router;
use crate::metrics::Metrics;
use crate::Runtime;

/// Everything the chain is built from. Built at start and again on each hot
/// reload, never per request.
pub struct ChainConfig {
    pub api_token: Option<String>,
    pub max_body_bytes: usize,
    pub metrics: Option<Arc<Metrics>>,
    pub metrics_options: server_metrics::MetricsOptions,
    /// The components `spec.httpPipeline.handlers` of the Configuration
    /// name, in order.
    pub pipeline: Vec<spar_config::Component>,
    /// API logging, when on.
    pub api_log: Option<api_log::ApiLog>,
    /// `--allowed-origins`, when set.
    pub cors: Option<Arc<cors::Cors>>,
    /// `spec.tracing`, compiled (the tracing filter runs when it samples).
    pub tracer: Arc<crate::trace::Tracer>,
    /// Conversation components are loaded: the PII filter joins the chain.
    pub pii: bool,
}

/// Builds the chain: metrics (outermost, so it times and counts everything,
/// rejections included) → tracing (when `spec.tracing` samples) → API log →
/// CORS (`--allowed-origins`, before auth as daprd's) → auth → size limit →
/// httpPipeline middleware → PII scrubbing (with conversation components) →
/// handler router.
pub fn build_chain(cfg: ChainConfig, rt: Arc<Runtime>) -> Result<Chain, String> {
    let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
    if let Some(m) = cfg.metrics {
        filters.push(Arc::new(server_metrics::MetricsFilter::new(
            m,
            rt.app_id.clone(),
            cfg.metrics_options,
        )));
    }
    if cfg.tracer.enabled() {
        filters.push(Arc::new(crate::trace::filter::TracingFilter::new(
            cfg.tracer.clone(),
        )));
    }
    if let Some(l) = cfg.api_log {
        filters.push(Arc::new(l));
    }
    if let Some(c) = cfg.cors {
        filters.push(c);
    }
    if let Some(token) = cfg.api_token.filter(|t| !t.is_empty()) {
        filters.push(Arc::new(auth::ApiTokenAuth::new(token)));
    }
    filters.push(Arc::new(size_limit::SizeLimit::new(cfg.max_body_bytes)));
    for c in &cfg.pipeline {
        filters.push(middleware::build(c)?);
    }
    if cfg.pii {
        filters.push(Arc::new(pii::PiiScrub));
    }
    filters.push(Arc::new(Router::new(rt)));
    Ok(Chain::new(filters))
}
