//! Service invocation: picks where a call goes. The handler only decides
//! (resolve the app id, authorise); the body is streamed by the front end's
//! proxy, never buffered here.

use std::net::SocketAddr;

use spar_resolvers::Target;

use crate::{ApiError, ApiResult, Response, Runtime};

#[derive(Debug)]
pub struct InvokeRequest {
    /// `app-id` or `app-id.namespace`.
    pub app_id: String,
    /// The method path on the target app, with its query string.
    pub method: String,
}

/// Where the front end sends the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The peer sidecar's internal port (HTTP/2, prior knowledge).
    Sidecar { addr: SocketAddr, path: String },
    /// This sidecar's own app (self-invocation).
    App { addr: SocketAddr, path: String },
    /// A non-Dapr service: an `HTTPEndpoint` or a full URL.
    External(super::endpoints::External),
}

pub async fn handle(rt: &Runtime, req: InvokeRequest) -> ApiResult {
    if let Some(t) = rt.live().endpoints.target(&req.app_id, &req.method).await {
        return t.map(|e| Response::Proxy(Upstream::External(e)));
    }
    let (app, ns) = match req.app_id.split_once('.') {
        Some((a, n)) => (a.to_string(), Some(n.to_string())),
        None => (req.app_id.clone(), None),
    };
    if app.is_empty() {
        return Err(ApiError::DirectInvokeNoAppId);
    }
    let method = req.method.trim_start_matches('/');
    if app == rt.app_id
        && ns
            .as_deref()
            .is_none_or(|n| Some(n) == rt.namespace.as_deref())
    {
        let addr = rt.app_addr().ok_or(ApiError::AppChannelNotInitialized)?;
        return Ok(Response::Proxy(Upstream::App {
            addr,
            path: concat(&["/", method]),
        }));
    }
    let resolver = rt.resolver.as_ref().ok_or_else(|| ApiError::DirectInvoke {
        app_id: req.app_id.clone(),
        reason: "no name resolution configured".into(),
    })?;
    let addr = resolver
        .resolve(&Target {
            app_id: app,
            namespace: ns,
        })
        .await
        .map_err(|e| ApiError::DirectInvoke {
            app_id: req.app_id.clone(),
            reason: e.to_string(),
        })?;
    Ok(Response::Proxy(Upstream::Sidecar {
        addr,
        path: concat(&["/v1.0/invoke/", &req.app_id, "/method/", method]),
    }))
}

/// `format!` without its formatting machinery (a few hundred instructions
/// on every call).
fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}
