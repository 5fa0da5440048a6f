//! spar-grpcapp: a minimal gRPC server for the benchmarks. Every unary call,
//! whatever its method, is answered with N bytes (`--body`, default 1024).
//!
//!   spar-grpcapp PORT [--body N]

use std::convert::Infallible;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use spar_loadgen::grpc::Raw;

#[derive(Clone)]
struct Answer(Bytes);

impl tonic::server::UnaryService<Bytes> for Answer {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;
    fn call(&mut self, _: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(self.0.clone())))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut a = std::env::args().skip(1);
    let port: u16 = a.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: spar-grpcapp PORT [--body N]");
        std::process::exit(2)
    });
    let mut size = 1024;
    while let Some(x) = a.next() {
        if x == "--body" {
            size = a.next().and_then(|n| n.parse().ok()).unwrap_or(size);
        }
    }
    let answer = Answer(Bytes::from(vec![b'x'; size]));
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        tcp.set_nodelay(true).ok();
        let answer = answer.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let mut g = tonic::server::Grpc::new(Raw);
                        Ok::<_, Infallible>(g.unary(answer, req).await)
                    }
                });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
