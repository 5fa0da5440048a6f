//! App health probes over HTTP and gRPC, reported in metadata.

use std::time::{Duration, Instant};

use dapr::dapr::proto::runtime::v1::app_callback_health_check_server::{
    AppCallbackHealthCheck, AppCallbackHealthCheckServer,
};
use dapr::dapr::proto::runtime::v1::HealthCheckResponse;
use reqwest::Client;
use serde_json::Value;
use spar_tests::{Options, Sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A minimal HTTP app answering 200 on every request.
async fn http_app() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, task)
}

async fn app_health(c: &Client, sc: &Sidecar) -> String {
    let md: Value = c
        .get(format!("{}/v1.0/metadata", sc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    md["extended"]["appHealth"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_health(c: &Client, sc: &Sidecar, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = app_health(c, sc).await;
        if h == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "app health stayed {h:?}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn probing(port: u16, protocol: &str) -> Options {
    Options {
        extra_args: [
            "--app-port",
            &port.to_string(),
            "--app-protocol",
            protocol,
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "1",
            "--app-health-threshold",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn http_app_health_goes_healthy_then_unhealthy() {
    let (port, app) = http_app().await;
    let sc = Sidecar::start(probing(port, "http"));
    let c = Client::new();
    wait_health(&c, &sc, "healthy").await;
    let md: Value = c
        .get(format!("{}/v1.0/metadata", sc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(md["appConnectionProperties"]["port"], port);
    assert_eq!(
        md["appConnectionProperties"]["health"]["healthCheckPath"],
        "/healthz"
    );
    app.abort();
    wait_health(&c, &sc, "unhealthy").await;
}

struct Healthy;

#[tonic::async_trait]
impl AppCallbackHealthCheck for Healthy {
    async fn health_check(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthCheckResponse {}))
    }
}

#[tokio::test]
async fn grpc_app_health_uses_app_callback_health_check() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AppCallbackHealthCheckServer::new(Healthy))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    let sc = Sidecar::start(probing(port, "grpc"));
    wait_health(&Client::new(), &sc, "healthy").await;
}
