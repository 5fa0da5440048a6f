//! HTTP/2 client to peer sidecars' internal listeners for the gRPC face
//! (`InvokeService` and transparent gRPC proxying): one lazily connected
//! tonic `Channel` per peer address, shared by every call (connections
//! pooled and multiplexed), h2c or mTLS with this sidecar's identity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

use crate::security::tls::TlsConnector;
use crate::security::Identity;

pub struct PeerClient {
    tls: Option<TlsConnector>,
    channels: Mutex<HashMap<SocketAddr, Channel>>,
}

impl PeerClient {
    pub fn new(identity: Option<&Arc<Identity>>) -> Result<Self, String> {
        let tls = identity
            .map(|id| id.client_config(None).map(TlsConnector::new))
            .transpose()?;
        Ok(PeerClient {
            tls,
            channels: Mutex::default(),
        })
    }

    fn channel(&self, addr: SocketAddr) -> Result<Channel, String> {
        let mut m = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(&addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(false);
        let ch = match &self.tls {
            Some(tls) => ep.connect_with_connector_lazy(tls.clone()),
            None => ep.connect_lazy(),
        };
        m.insert(addr, ch.clone());
        Ok(ch)
    }

    /// Sends one request (streamed both ways) to the peer at `addr`. The
    /// request's path is kept; scheme and authority become the peer's. A
    /// `grpc-timeout` header bounds the call (tonic's channel honours it).
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, PeerError> {
        let ch = self.channel(addr).map_err(PeerError::Failed)?;
        ch.oneshot(req).await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                if s.is::<tonic::TimeoutExpired>() {
                    return PeerError::Timeout;
                }
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            PeerError::Failed(msg)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("deadline exceeded before the target answered")]
    Timeout,
    #[error("{0}")]
    Failed(String),
}
