//! The smallest pingora reverse proxy: every request to one upstream over
//! pooled HTTP/1.1 keep-alive, no filters — what pingora itself costs per
//! hop, run with spar's thread settings (one current-thread runtime), so
//! `bench/invoke.sh` can show spar's overhead apart from its data plane's.
//!
//! Usage: spar-pingorahop LISTEN-ADDR UPSTREAM-ADDR

use async_trait::async_trait;
use pingora::prelude::*;

struct Hop(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Hop {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let (mut server, listen, up) = spar_loadgen::hop::server("spar-pingorahop");
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, Hop(up));
    svc.add_tcp(&listen);
    server.add_service(svc);
    server.run_forever();
}
