//! The smallest pingora reverse proxy: every request to one upstream over
//! pooled HTTP/1.1 keep-alive, no filters — what pingora itself costs per
//! hop, run with spar's thread settings (one current-thread runtime), so
//! `bench/invoke.sh` can show spar's overhead apart from its data plane's.
//!
//! Usage: spar-pingorahop LISTEN-ADDR UPSTREAM-ADDR

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!("usage: spar-pingorahop LISTEN-ADDR UPSTREAM-ADDR");
        std::process::exit(2);
    };
    let up = upstream.parse().expect("UPSTREAM-ADDR: ip:port");
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, Hop(up));
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
