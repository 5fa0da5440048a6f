//! API logging (`--enable-api-logging`, Configuration
//! `spec.logging.apiLogging`): one info line per API call once it has been
//! answered, with daprd's scope and fields — `method` (verb and path for
//! HTTP, the full method for gRPC), `code`, `duration` (ms). With
//! `obfuscateURLs` the HTTP path is the route template, so ids and keys stay
//! out of the logs; `omitHealthChecks` leaves the health endpoints out.

use async_trait::async_trait;

use crate::metrics::grpc_status_name;
use crate::{ApiResult, Ctx, Filter, Protocol, Response};

#[derive(Debug, Clone, Copy, Default)]
pub struct ApiLog {
    pub obfuscate_urls: bool,
    pub omit_health_checks: bool,
}

impl ApiLog {
    fn skip(&self, route: &str) -> bool {
        self.omit_health_checks && route.starts_with("/v1.0/healthz")
    }

    /// One HTTP call (also used by the front end for proxied invocations,
    /// whose status is known only once the app answered).
    pub fn http(&self, verb: &str, route: &str, path: &str, code: u16, ms: f64) {
        if self.skip(route) {
            return;
        }
        let p = if self.obfuscate_urls || path.is_empty() {
            route
        } else {
            path
        };
        tracing::info!(
            target: "dapr.runtime.http-info",
            method = %format_args!("{verb} {p}"),
            code,
            duration = ms as u64,
            "HTTP API Called"
        );
    }

    pub fn grpc(&self, method: &str, code: i32, ms: f64) {
        tracing::info!(
            target: "dapr.runtime.grpc-info",
            method,
            code = grpc_status_name(code),
            duration = ms as u64,
            "gRPC API Called"
        );
    }
}

#[async_trait]
impl Filter for ApiLog {
    fn name(&self) -> &'static str {
        "api-log"
    }

    fn observes(&self) -> bool {
        true
    }

    fn observe(&self, ctx: &Ctx, res: &ApiResult) {
        let ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
        match (ctx.protocol, res) {
            // Proxied: the front end logs it once the app has answered.
            (Protocol::Http, Ok(Response::Proxy(_))) => {}
            (Protocol::Http, _) => {
                let code = match res {
                    Ok(r) => r.http_status(),
                    Err(e) => e.http_status(),
                };
                self.http(ctx.method, ctx.route, &ctx.path, code, ms);
            }
            (Protocol::Grpc, _) => {
                let code = res.as_ref().map_or_else(|e| e.grpc_code(), |_| 0);
                self.grpc(ctx.route, code, ms);
            }
        }
    }
}
