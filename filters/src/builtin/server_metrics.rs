//! Records Dapr's server metrics for every call, rejected ones included.

use std::sync::Arc;

use async_trait::async_trait;

use crate::metrics::{grpc_status_name, Metrics};
use crate::{ApiResult, Ctx, Filter, Protocol};

/// `spec.metric.http` options of the Configuration.
#[derive(Debug, Clone, Default)]
pub struct MetricsOptions {
    /// Label HTTP metrics with the route template (bounded), as Dapr's
    /// `increasedCardinality: true`; off by default like Dapr ≥ 1.14.
    pub increased_cardinality: bool,
    /// Path patterns (`/v1.0/state/{store}/{key}` style, `{x}` matches one
    /// segment); a matching request is labelled with the pattern.
    pub path_matching: Vec<String>,
    pub exclude_verbs: bool,
}

pub struct MetricsFilter {
    m: Arc<Metrics>,
    app_id: String,
    opts: MetricsOptions,
    patterns: Vec<Vec<String>>,
}

impl MetricsFilter {
    pub fn new(m: Arc<Metrics>, app_id: String, opts: MetricsOptions) -> Self {
        let patterns = opts
            .path_matching
            .iter()
            .map(|p| p.trim_matches('/').split('/').map(str::to_owned).collect())
            .collect();
        MetricsFilter {
            m,
            app_id,
            opts,
            patterns,
        }
    }

    /// The `path` label: a matching pattern, else the route template when
    /// increased cardinality is on, else empty. Never the raw path, so label
    /// cardinality stays bounded whatever clients send.
    fn path_label<'a>(&'a self, ctx: &'a Ctx) -> &'a str {
        if self.patterns.is_empty() {
            return if self.opts.increased_cardinality {
                ctx.route
            } else {
                ""
            };
        }
        let segs: Vec<&str> = ctx.path.trim_matches('/').split('/').collect();
        for (i, p) in self.patterns.iter().enumerate() {
            if p.len() == segs.len()
                && p.iter()
                    .zip(&segs)
                    .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
            {
                return &self.opts.path_matching[i];
            }
        }
        if self.opts.increased_cardinality {
            ctx.route
        } else {
            ""
        }
    }
}

#[async_trait]
impl Filter for MetricsFilter {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn observes(&self) -> bool {
        true
    }

    fn observe(&self, ctx: &Ctx, res: &ApiResult) {
        if let Ok(crate::Response::Proxy(_)) = res {
            // Proxied: the front end records it once the app has answered.
            return;
        }
        let ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
        match ctx.protocol {
            Protocol::Http => {
                let status = match res {
                    Ok(r) => r.http_status(),
                    Err(e) => e.http_status(),
                };
                let method = if self.opts.exclude_verbs {
                    ""
                } else {
                    ctx.method
                };
                self.m
                    .record_http(&self.app_id, method, self.path_label(ctx), status, ms);
                self.m
                    .http_request_bytes
                    .with_label_values(&[self.app_id.as_str()])
                    .observe(ctx.body_len as f64);
            }
            Protocol::Grpc => {
                let code = res.as_ref().map_or_else(|e| e.grpc_code(), |_| 0);
                let labels = [self.app_id.as_str(), ctx.route, grpc_status_name(code)];
                self.m.grpc_completed.with_label_values(&labels).inc();
                self.m.grpc_latency.with_label_values(&labels).observe(ms);
                self.m
                    .grpc_received_bytes
                    .with_label_values(&[self.app_id.as_str(), ctx.route])
                    .observe(ctx.body_len as f64);
            }
        }
    }
}
