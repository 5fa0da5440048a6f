//! `middleware.http.ratelimit`: a token bucket of `maxRequestsPerSecond`
//! (default 100) shared by all callers of this sidecar; excess calls get
//! 429, as daprd's rate limiter answers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use spar_components::meta::Meta;
use spar_components::BuildError;
use spar_config::Component;

use crate::{ApiError, ApiResult, Ctx, Filter, Next, Request};

pub fn build(c: &Component) -> Result<Arc<dyn Filter>, BuildError> {
    let m = Meta::new(c);
    let rate = m.int::<f64>("maxRequestsPerSecond", 100.0)?;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(m.error(
            "maxRequestsPerSecond",
            format!("expected a positive number, got {rate}"),
        ));
    }
    Ok(Arc::new(RateLimit::new(rate)))
}

/// `middleware.http.ratelimit`: a token bucket of `maxRequestsPerSecond`
/// shared by all callers of this sidecar; excess calls get 429.
pub struct RateLimit {
    rate: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn new(rate: f64) -> Self {
        RateLimit {
            rate,
            bucket: Mutex::new((rate, Instant::now())),
        }
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
    use crate::builtin::middleware::component;

    #[test]
    fn bad_rates_are_refused() {
        for r in ["abc", "-1", "0"] {
            let e = build(&component(
                "middleware.http.ratelimit",
                &[("maxRequestsPerSecond", r)],
            ));
            assert!(e.is_err(), "{r}");
        }
    }

    #[test]
    fn bucket_admits_burst_then_limits() {
        let rl = RateLimit::new(3.0);
        let admitted = (0..10).filter(|_| rl.admit()).count();
        assert!((3..=4).contains(&admitted), "admitted {admitted}");
    }
}
