//! The gRPC API on `--dapr-grpc-port`: tonic services that decode protobuf
//! into the same typed requests as the HTTP face and run the same chain.

mod answer_headers;
mod bindings;
mod configuration;
mod conversation;
mod convert;
mod crypto;
mod dapr;
pub mod invoke_service;
mod jobs;
mod lock;
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

/// Where the gRPC API listens: TCP addresses, or a Unix domain socket
/// (`--unix-domain-socket`).
pub enum Listener {
    Tcp(TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Binds every address first (so a port clash fails start-up with a clear
/// error), then serves until `stop` turns true.
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<Listener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(Listener::Tcp(TcpListener::bind(a).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("gRPC API cannot listen on {a}: {e}"))
        })?));
    }
    Ok(out)
}

/// What the gRPC API serves with.
pub struct Api {
    pub chain: Chain,
    pub rt: Arc<Runtime>,
    pub max_body: usize,
    /// HTTP/2's header list limit: daprd sets its read buffer × 1024.
    pub max_header_list: u32,
    pub peers: Arc<PeerClient>,
    pub stop: watch::Receiver<bool>,
}

/// Serves the gRPC API on a thread of its own, like each HTTP listener: a
/// call's connection task, stream task and store clients stay on one
/// thread, with no cross-thread wake-ups per call (bench/README.md, R7).
/// `threads` > 1 makes it a work-stealing pool. The receiver resolves when
/// the server has stopped.
pub fn spawn(
    listeners: Vec<Listener>,
    api: Api,
    threads: usize,
) -> Result<tokio::sync::oneshot::Receiver<()>, String> {
    // Bound on the start-up runtime: moved to the gRPC thread's reactor.
    let listeners: Vec<StdListener> = listeners
        .into_iter()
        .map(|l| match l {
            Listener::Tcp(t) => t.into_std().map(StdListener::Tcp),
            Listener::Unix(u) => Ok(StdListener::Unix(u)),
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("gRPC API: {e}"))?;
    let runtime = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("spar-grpc")
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the gRPC runtime: {e}"))?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("spar-grpc".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listeners = listeners
                    .into_iter()
                    .filter_map(|l| match l.into_tokio() {
                        Ok(l) => Some(l),
                        Err(e) => {
                            tracing::error!("gRPC API: {e}");
                            None
                        }
                    })
                    .collect();
                serve(listeners, api).await
            });
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the gRPC thread: {e}"))?;
    Ok(done_rx)
}

/// A listener between the start-up runtime and the gRPC thread's.
enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

enum TokioListener {
    Tcp(TcpListener),
    Unix(tokio::net::UnixListener),
}

impl StdListener {
    fn into_tokio(self) -> std::io::Result<TokioListener> {
        Ok(match self {
            StdListener::Tcp(t) => {
                t.set_nonblocking(true)?;
                TokioListener::Tcp(TcpListener::from_std(t)?)
            }
            StdListener::Unix(u) => {
                u.set_nonblocking(true)?;
                TokioListener::Unix(tokio::net::UnixListener::from_std(u)?)
            }
        })
    }
}

async fn serve(listeners: Vec<TokioListener>, api: Api) {
    let Api {
        chain,
        rt,
        max_body,
        max_header_list,
        peers,
        stop,
    } = api;
    let mut tasks = Vec::new();
    let limits = crate::listen_guard::Limits::from_env();
    let clients = Arc::new(invoke_service::Clients::new(peers.clone(), &rt));
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
        let server = tonic::transport::Server::builder()
            .http2_max_header_list_size(max_header_list)
            .layer(proxy)
            .add_service(svc);
        let stopped = async move { crate::signals::stopped(&mut stop).await };
        tasks.push(tokio::spawn(async move {
            let res = match l {
                TokioListener::Tcp(l) => {
                    server
                        .serve_with_incoming_shutdown(
                            guarded(TcpListenerStream::new(l), limits),
                            stopped,
                        )
                        .await
                }
                // A local socket, guarded by its file's permissions.
                TokioListener::Unix(l) => {
                    server
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::UnixListenerStream::new(l),
                            stopped,
                        )
                        .await
                }
            };
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

/// Accepted connections with Nagle off, within the listener's bounds
/// (`listen_guard.rs`: preface deadline, connection limit; one over the
/// limit is closed at once). tonic sets TCP_NODELAY only on listeners it
/// binds itself; without it, a response written in several frames (a
/// proxied stream, headers then data then trailers) waits for the client's
/// delayed ACK: 40 ms per call.
fn guarded(
    l: TcpListenerStream,
    limits: crate::listen_guard::Limits,
) -> impl futures::Stream<Item = std::io::Result<crate::listen_guard::Guarded<tokio::net::TcpStream>>>
{
    use futures::StreamExt;
    let slots = crate::listen_guard::Slots::new(limits);
    l.filter_map(move |s| {
        let admitted = match s {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                slots.admit(s).map(Ok)
            }
            Err(e) => Some(Err(e)),
        };
        std::future::ready(admitted)
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
