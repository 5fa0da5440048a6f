//! Shared by the baseline proxies (`spar-pingorahop`, `spar-corehop`): the
//! command line and a pingora server with spar's thread settings.

use std::net::SocketAddr;

use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// `LISTEN-ADDR UPSTREAM-ADDR` from the command line (exits with usage
/// otherwise), and a bootstrapped server running each service on one
/// current-thread runtime, as spar runs its listeners.
pub fn server(bin: &str) -> (Server, String, SocketAddr) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(Ok(up)), 2) = (
        args.first(),
        args.get(1).map(|a| a.parse::<SocketAddr>()),
        args.len(),
    ) else {
        eprintln!("usage: {bin} LISTEN-ADDR UPSTREAM-ADDR (ip:port)");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    (server, listen.clone(), up)
}
