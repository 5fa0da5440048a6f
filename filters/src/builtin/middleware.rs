//! Middleware from the Configuration's `spec.httpPipeline.handlers`, each
//! backed by a `middleware.http.*` component. Adding a middleware type is one
//! filter plus one arm in [`build`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use crate::{ApiError, ApiResult, Ctx, Filter, Next, Request};

/// One pipeline entry with its component's metadata.
#[derive(Debug, Clone)]
pub struct MiddlewareSpec {
    pub name: String,
    pub type_: String,
    pub metadata: HashMap<String, String>,
}

pub fn build(spec: &MiddlewareSpec) -> Result<Arc<dyn Filter>, String> {
    match spec.type_.as_str() {
        "middleware.http.ratelimit" => Ok(Arc::new(RateLimit::from_spec(spec)?)),
        other => Err(format!(
            "httpPipeline handler {:?}: middleware type {other:?} is not supported (supported: middleware.http.ratelimit)",
            spec.name
        )),
    }
}

/// `middleware.http.ratelimit`: a token bucket of `maxRequestsPerSecond`
/// shared by all callers of this sidecar; excess calls get 429.
pub struct RateLimit {
    rate: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn from_spec(spec: &MiddlewareSpec) -> Result<Self, String> {
        let raw = spec
            .metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("maxRequestsPerSecond"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("100");
        let rate: f64 = raw
            .parse()
            .ok()
            .filter(|r: &f64| *r > 0.0 && r.is_finite())
            .ok_or_else(|| {
                format!(
                    "component {}: metadata maxRequestsPerSecond: expected a positive number, got {raw:?}",
                    spec.name
                )
            })?;
        Ok(RateLimit {
            rate,
            bucket: Mutex::new((rate, Instant::now())),
        })
    }

    fn admit(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * self.rate;
        b.0 = (b.0 + refill).min(self.rate);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[async_trait]
impl Filter for RateLimit {
    fn name(&self) -> &'static str {
        "middleware.http.ratelimit"
    }

    async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult {
        // The lock guard is dropped inside admit(), never held across .await.
        if !self.admit() {
            return Err(ApiError::RateLimited);
        }
        next.run(ctx, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ty: &str, rate: &str) -> MiddlewareSpec {
        MiddlewareSpec {
            name: "rl".into(),
            type_: ty.into(),
            metadata: [("maxRequestsPerSecond".to_string(), rate.to_string())].into(),
        }
    }

    #[test]
    fn unknown_type_and_bad_rate_are_rejected() {
        assert!(build(&spec("middleware.http.nope", "1")).is_err());
        assert!(build(&spec("middleware.http.ratelimit", "abc")).is_err());
        assert!(build(&spec("middleware.http.ratelimit", "-1")).is_err());
    }

    #[test]
    fn bucket_admits_burst_then_limits() {
        let rl = RateLimit::from_spec(&spec("middleware.http.ratelimit", "3")).unwrap();
        let admitted = (0..10).filter(|_| rl.admit()).count();
        assert!((3..=4).contains(&admitted), "admitted {admitted}");
    }
}
