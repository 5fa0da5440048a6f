//! Transparent gRPC proxying: a real tonic client calls its sidecar's gRPC
//! port with `dapr-app-id` metadata; the call reaches a real tonic server
//! behind the other sidecar (`--app-protocol grpc`), unary and
//! bidirectional streaming, with status codes and deadlines carried through.

use std::time::{Duration, Instant};

use spar_tests::{unique, Options, Sidecar};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

pub mod echo {
    tonic::include_proto!("spar.test");
}
use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::Msg;

struct App;

#[tonic::async_trait]
impl Echo for App {
    async fn unary(&self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        let token = req
            .metadata()
            .get("dapr-api-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let caller = req
            .metadata()
            .get_all("dapr-caller-app-id")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let text = req.into_inner().text;
        match text.as_str() {
            "fail" => Err(Status::not_found("no such order")),
            "caller" => Ok(Response::new(Msg { text: caller })),
            "sleep" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Response::new(Msg { text }))
            }
            _ => Ok(Response::new(Msg {
                text: format!("{text}|token={token}"),
            })),
        }
    }

    type ChatStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Msg, Status>> + Send>>;

    async fn chat(
        &self,
        req: Request<Streaming<Msg>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let mut inbound = req.into_inner();
        let out = async_stream(move |tx| async move {
            while let Some(Ok(m)) = inbound.next().await {
                if tx
                    .send(Ok(Msg {
                        text: format!("echo:{}", m.text),
                    }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// A stream fed by a task (what the app's handler writes).
fn async_stream<F, Fut>(f: F) -> tokio_stream::wrappers::ReceiverStream<Result<Msg, Status>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Msg, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn grpc_app() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(App))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    port
}

/// The sidecar of the gRPC app on `port`.
fn grpc_callee(app_id: &str, port: u16, env: Vec<(String, String)>) -> Sidecar {
    Sidecar::start(Options {
        app_id: app_id.to_string(),
        extra_args: vec![
            "--app-port".into(),
            port.to_string(),
            "--app-protocol".into(),
            "grpc".into(),
        ],
        env,
        ..Default::default()
    })
}

fn with_app_id<T>(msg: T, app: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("dapr-app-id", app.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_proxied_to_the_target_app() {
    let port = grpc_app().await;
    let callee_id = unique("grpc-callee");
    let _callee = grpc_callee(
        &callee_id,
        port,
        vec![("APP_API_TOKEN".into(), "app-secret".into())],
    );
    let caller = Sidecar::start(Options {
        app_id: unique("grpc-caller"),
        ..Default::default()
    });
    let mut client = EchoClient::connect(caller.grpc()).await.unwrap();

    // Unary (retried until mDNS has seen the callee).
    let (mut answer, mut last) = (None, None);
    for _ in 0..200 {
        match client
            .unary(with_app_id(Msg { text: "hi".into() }, &callee_id))
            .await
        {
            Ok(r) => {
                answer = Some(r.into_inner().text);
                break;
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await
            }
        }
    }
    assert_eq!(answer.as_deref(), Some("hi|token=app-secret"), "{last:?}");

    // The app's status code and message come back through both sidecars.
    let e = client
        .unary(with_app_id(
            Msg {
                text: "fail".into(),
            },
            &callee_id,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(e.message(), "no such order");

    // Bidirectional streaming: each reply arrives before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let mut replies = client
        .chat(with_app_id(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &callee_id,
        ))
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        tx.send(Msg {
            text: format!("m{i}"),
        })
        .await
        .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .expect("reply streamed back before the call ends")
            .unwrap()
            .unwrap();
        assert_eq!(r.text, format!("echo:m{i}"));
    }
    drop(tx);
    assert!(replies.next().await.is_none());

    // The caller's deadline (`grpc-timeout`) is enforced by the sidecars:
    // a raw HTTP/2 client (curl) that sets the header but never times out
    // itself gets DEADLINE_EXCEEDED (4) from the sidecar.
    let started = Instant::now();
    let frame: &[u8] = &[0, 0, 0, 0, 7, 0x0a, 5, b's', b'l', b'e', b'e', b'p'];
    let body = caller.dir.path().join("sleep.grpc");
    std::fs::write(&body, frame).unwrap();
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args([
            "-H",
            "grpc-timeout: 300m",
            "-H",
            &format!("dapr-app-id: {callee_id}"),
        ])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("{}/spar.test.Echo/Unary", caller.grpc()))
        .output()
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains("grpc-status: 4"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // An unknown app id: a clear error, not a hang.
    let e = client
        .unary(with_app_id(Msg { text: "x".into() }, "nobody-here"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    assert!(e.message().contains("nobody-here"), "{e:?}");

    // The Dapr API on the same port still answers (no dapr-app-id routing).
    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(caller.grpc()))
            .await
            .unwrap();
    assert!(sdk.get_metadata().await.is_ok());
}

/// A resiliency policy on the target app applies to transparent gRPC
/// proxying as daprd does for streams: the timeout cuts a hung call, app
/// errors trip the breaker, which then fails fast without reaching the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resiliency_timeout_and_breaker_on_proxied_grpc() {
    let port = grpc_app().await;
    let callee_id = unique("grpc-res");
    let _callee = grpc_callee(&callee_id, port, vec![]);
    let policy = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: grpc\nspec:\n  policies:\n    timeouts:\n      short: 300ms\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 1h\n        trip: consecutiveFailures > 2\n  targets:\n    apps:\n      {callee_id}:\n        timeout: short\n        circuitBreaker: cb\n"
    );
    let caller = Sidecar::start(Options {
        app_id: unique("grpc-res-caller"),
        resources: vec![policy],
        ..Default::default()
    });
    let mut client = EchoClient::connect(caller.grpc()).await.unwrap();
    let call = |text: &str| with_app_id(Msg { text: text.into() }, &callee_id);
    let mut ok = false;
    for _ in 0..200 {
        if client.unary(call("hi")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "callee reachable");

    // Hung app: cut by the 300 ms timeout, not the app's 5 s.
    let t = Instant::now();
    let e = client.unary(call("sleep")).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");

    // Two app errors (the timeout was the first failure): the breaker opens.
    for _ in 0..2 {
        let e = client.unary(call("fail")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    }
    let e = client.unary(call("hi")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("circuit breaker is open"), "{e:?}");
}

/// A caller cannot pose as another app: on a self-invocation through the
/// gRPC proxy the app sees this sidecar's id as `dapr-caller-app-id`,
/// whatever the caller sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_app_id_is_set_by_the_sidecar_on_self_invocation() {
    let id = unique("grpc-self");
    let sc = grpc_callee(&id, grpc_app().await, vec![]);
    let mut client = EchoClient::connect(sc.grpc()).await.unwrap();
    let mut req = with_app_id(
        Msg {
            text: "caller".into(),
        },
        &id,
    );
    req.metadata_mut()
        .insert("dapr-caller-app-id", "forged".parse().unwrap());
    let r = client.unary(req).await.unwrap();
    assert_eq!(r.into_inner().text, id);
}
