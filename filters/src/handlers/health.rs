//! `/v1.0/healthz` and `/v1.0/healthz/outbound`.

use crate::{ApiError, ApiResult, Response, Runtime};

#[derive(Debug)]
pub enum HealthRequest {
    /// Ready to serve; `appid` (query parameter) must match when given.
    Healthz { app_id: Option<String> },
    /// Ready to make outbound calls (components initialised).
    Outbound,
}

pub fn handle(rt: &Runtime, req: HealthRequest) -> ApiResult {
    if !rt.is_ready() {
        return Err(match req {
            HealthRequest::Healthz { .. } => ApiError::HealthNotReady("initializing".into()),
            HealthRequest::Outbound => ApiError::OutboundNotReady,
        });
    }
    if let HealthRequest::Healthz { app_id: Some(id) } = &req {
        if !id.is_empty() && id != &rt.app_id {
            return Err(ApiError::HealthAppIdNotMatch);
        }
    }
    Ok(Response::Empty)
}
