//! The gRPC API on `--dapr-grpc-port`: tonic services that decode protobuf
//! into the same typed requests as the HTTP face and run the same chain.

mod convert;
mod dapr;
pub mod invoke;
mod proxy;
mod pubsub;

use std::net::SocketAddr;
use std::sync::Arc;

use spar_filters::{Chain, Runtime};
use spar_proto::runtime::dapr_server::DaprServer;
use tokio::net::TcpListener;

use crate::peer_client::PeerClient;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

pub use dapr::DaprApi;

/// Binds every address first (so a port clash fails start-up with a clear
/// error), then serves until `stop` turns true.
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(TcpListener::bind(a).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("gRPC API cannot listen on {a}: {e}"))
        })?);
    }
    Ok(out)
}

pub async fn serve(
    listeners: Vec<TcpListener>,
    chain: Chain,
    rt: Arc<Runtime>,
    max_body: usize,
    peers: Arc<PeerClient>,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    let clients = Arc::new(invoke::Clients::new(peers.clone()));
    let app = match PeerClient::new(None) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!("gRPC API: {e}");
            return;
        }
    };
    for l in listeners {
        let svc = DaprServer::new(DaprApi::new(chain.clone(), rt.clone(), clients.clone()))
            .max_decoding_message_size(max_body)
            .max_encoding_message_size(usize::MAX);
        let proxy = proxy::Proxy {
            chain: chain.clone(),
            peers: peers.clone(),
            app: app.clone(),
            rt: rt.clone(),
        };
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let res = tonic::transport::Server::builder()
                .layer(proxy)
                .add_service(svc)
                .serve_with_incoming_shutdown(nodelay(TcpListenerStream::new(l)), async move {
                    crate::signals::stopped(&mut stop).await
                })
                .await;
            if let Err(e) = res {
                tracing::error!("gRPC server stopped: {e}");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The caller's trace context from gRPC metadata: `grpc-trace-bin` (the
/// binary form daprd and OpenCensus clients send) or `traceparent`.
pub(crate) fn trace_context(
    md: &tonic::metadata::MetadataMap,
) -> Option<spar_filters::trace::SpanContext> {
    use spar_filters::trace::SpanContext;
    if let Some(b) = md.get_bin("grpc-trace-bin").and_then(|v| v.to_bytes().ok()) {
        if let Some(c) = SpanContext::from_binary(&b) {
            return Some(c);
        }
    }
    let text = |k: &str| md.get(k).and_then(|v| v.to_str().ok());
    SpanContext::parse(text("traceparent")?, text("tracestate"))
}

/// Accepted connections with Nagle off. tonic sets TCP_NODELAY only on
/// listeners it binds itself; without it, a response written in several
/// frames (a proxied stream, headers then data then trailers) waits for the
/// client's delayed ACK: 40 ms per call.
fn nodelay(
    l: TcpListenerStream,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    l.map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    })
}

/// A gRPC invocation refused by the target app's resiliency policy, as the
/// caller sees it (one wording for `InvokeService` and the proxy).
pub(crate) fn refused(
    e: spar_filters::resiliency::Refused<tonic::Status>,
    app_id: &str,
) -> tonic::Status {
    use spar_filters::resiliency::Refused;
    match e {
        Refused::Failed(s) => s,
        Refused::Timeout(d) => tonic::Status::deadline_exceeded(format!(
            "fail to invoke, id: {app_id}: timeout after {d:?} (resiliency policy)"
        )),
        Refused::BreakerOpen => tonic::Status::unavailable(format!(
            "fail to invoke, id: {app_id}: circuit breaker is open"
        )),
    }
}
