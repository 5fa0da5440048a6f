//! spar-loadgen: a small HTTP/1.1 load client for the benchmarks.
//!
//!   spar-loadgen URL --rate R --seconds S [--connections C] [--body N]
//!       open loop at R requests/s; a request that could not leave on time
//!       because its connection was still busy is measured from the moment
//!       it was *scheduled*, so a slow response also charges the requests
//!       queued behind it (no coordinated omission).
//!   spar-loadgen URL --max --seconds S [--connections C] [--body N]
//!       closed loop, as fast as C connections allow: maximum throughput.
//!
//! Prints one line: `p50_ms p90_ms p99_ms p999_ms max_ms rps errors`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use spar_loadgen::{parse_load, run, Conn};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Http {
    tx: Sender,
    url: http::Uri,
    body: Bytes,
}

async fn connect(url: http::Uri, body: Bytes) -> Result<Http, String> {
    let host = url.host().ok_or("no host")?;
    let port = url.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(Http { tx, url, body })
}

impl Conn for Http {
    async fn call(&mut self) -> Result<(), String> {
        self.tx.ready().await.map_err(|e| e.to_string())?;
        let method = if self.body.is_empty() { "GET" } else { "POST" };
        let req = http::Request::builder()
            .method(method)
            .uri(self.url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(
                "host",
                self.url
                    .authority()
                    .map(|a| a.as_str())
                    .unwrap_or("localhost"),
            )
            .body(Full::new(self.body.clone()))
            .map_err(|e| e.to_string())?;
        let resp = self.tx.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }
}

fn args() -> Result<(spar_loadgen::Load, http::Uri, usize), String> {
    let (load, rest) = parse_load(std::env::args().skip(1).collect())?;
    let mut url = None;
    let mut body = 0;
    let mut a = rest.into_iter();
    while let Some(x) = a.next() {
        match x.as_str() {
            "--body" => {
                body = a
                    .next()
                    .ok_or("--body needs a value")?
                    .parse()
                    .map_err(|e| format!("--body: {e}"))?
            }
            u if url.is_none() => url = Some(u.parse().map_err(|e| format!("url: {e}"))?),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    Ok((load, url.ok_or("missing URL")?, body))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (load, url, body) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("spar-loadgen: {e}");
            std::process::exit(2);
        }
    };
    let body = Bytes::from(vec![b'x'; body]);
    let report = run(&load, move || connect(url.clone(), body.clone())).await;
    println!("{report}");
}
