//! Name resolution: finds the sidecar that serves an app id.
//!
//! Implementations: mDNS, Kubernetes DNS, Consul; one `Resolver` is chosen
//! at start by the Configuration's `spec.nameResolution`.

pub mod consul;
pub mod kubernetes;
pub mod mdns;

use std::net::SocketAddr;

use async_trait::async_trait;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("no instance of app {0:?} found")]
    NotFound(String),
    #[error("name resolution failed for {app_id:?}: {message}")]
    Failed { app_id: String, message: String },
}

/// What to resolve: an app id, optionally in a namespace (`app.namespace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub app_id: String,
    pub namespace: Option<String>,
}

#[async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// The address of one healthy instance's internal (sidecar-to-sidecar) port.
    async fn resolve(&self, target: &Target) -> Result<SocketAddr, ResolveError>;

    /// A connection to `addr` failed: resolvers with several instances pass
    /// it over for a while (refresh on failure).
    fn report_failure(&self, _target: &Target, _addr: SocketAddr) {}
}
