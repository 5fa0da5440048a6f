//! A reverse proxy on pingora-core alone: the request read with pingora's
//! HTTP/1 server session, sent on a pooled pingora HTTP/1 client session,
//! the answer streamed back — sequentially in one task, without
//! pingora-proxy's phase engine (its per-request context, module hooks,
//! body-pump tasks and pool watcher). It measures what a purpose-built
//! invocation path on the same data plane could cost per hop; run with
//! spar's thread settings (one current-thread runtime).
//!
//! Usage: spar-corehop LISTEN-ADDR UPSTREAM-ADDR

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

thread_local! {
    /// Idle upstream connections of this thread (its runtime is
    /// current-thread, so a connection never changes thread).
    static POOL: RefCell<Vec<Stream>> = const { RefCell::new(Vec::new()) };
}

struct Hop(SocketAddr);

impl Hop {
    async fn connect(&self) -> Option<Stream> {
        if let Some(s) = POOL.with(|p| p.borrow_mut().pop()) {
            return Some(s);
        }
        let tcp = tokio::net::TcpStream::connect(self.0).await.ok()?;
        tcp.set_nodelay(true).ok()?;
        Some(Box::new(pingora::protocols::l4::stream::Stream::from(tcp)))
    }

    /// One request through; `None` when the downstream can't be reused.
    async fn forward(&self, s: &mut ServerSession) -> Option<()> {
        let mut up = HttpSession::new(self.connect().await?);
        let mut req = s.req_header().clone();
        for h in HOP_BY_HOP {
            req.remove_header(h);
        }
        up.write_request_header(Box::new(req)).await.ok()?;
        while let Some(b) = s.read_request_body().await.ok()? {
            up.write_body(&b).await.ok()?;
        }
        up.finish_body().await.ok()?;
        up.read_response().await.ok()?;
        let mut resp = up.resp_header()?.clone();
        // Each side's connection is its own: the app closing its
        // connection to us does not close the client's.
        for h in HOP_BY_HOP {
            resp.remove_header(h);
        }
        s.write_response_header(Box::new(resp)).await.ok()?;
        while let Some(b) = up.read_body_bytes().await.ok()? {
            s.write_response_body(b, false).await.ok()?;
        }
        up.respect_keepalive();
        if let Some(stream) = up.reuse().await {
            POOL.with(|p| p.borrow_mut().push(stream));
        }
        Some(())
    }
}

const HOP_BY_HOP: [&str; 2] = ["connection", "keep-alive"];

#[async_trait]
impl HttpServerApp for Hop {
    async fn process_new_http(
        self: &Arc<Self>,
        mut s: ServerSession,
        _: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !s.read_request().await.ok()? {
            return None;
        }
        if self.forward(&mut s).await.is_none() {
            let _ = s.respond_error(502).await;
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&s);
        let reusable = s.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }
}

fn main() {
    let (mut server, listen, up) = spar_loadgen::hop::server("spar-corehop");
    let mut svc = Service::new("corehop".into(), Hop(up));
    svc.add_tcp(&listen);
    server.add_service(svc);
    server.run_forever();
}
