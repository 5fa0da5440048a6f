//! Delivery of configuration changes to the app for subscriptions made
//! over HTTP, as daprd: for each changed key, a `POST
//! /configuration/{store}/{key}` with the whole update (`{"id", "items"}`)
//! as JSON — to a gRPC app (`--app-protocol grpc`) the same request as an
//! `AppCallback/OnInvoke` call; any answer but 200 (gRPC: OK) is logged as
//! a failure (and retried under the store's `inbound` resiliency policy,
//! when there is one).
//!
//! One task per subscription takes the feed's changes one batch at a
//! time: while the app is slow, further changes wait in the feed, the
//! latest per key, so nothing grows without bound. The task ends when the
//! subscription is removed (unsubscribe, shutdown).

use std::sync::Arc;
use std::time::Duration;

use spar_filters::handlers::configuration::Subscribed;
use spar_filters::resiliency::{Refused, Verdict};
use spar_filters::Runtime;
use spar_proto::common::{http_extension, HttpExtension, InvokeRequest};
use spar_proto::runtime::app_callback_client::AppCallbackClient;

/// The longest one call to the app may take.
const APP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the app is reached.
enum App {
    Http {
        client: reqwest::Client,
        base: String,
    },
    Grpc(AppCallbackClient<tonic::transport::Channel>),
}

impl App {
    fn new(rt: &Runtime, addr: std::net::SocketAddr) -> Result<App, String> {
        let grpc = rt
            .app
            .as_ref()
            .is_some_and(|a| a.protocol.eq_ignore_ascii_case("grpc"));
        if grpc {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(5))
                .timeout(APP_TIMEOUT)
                .connect_lazy();
            return Ok(App::Grpc(AppCallbackClient::new(ch)));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(APP_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(App::Http {
            client,
            base: format!("http://{addr}"),
        })
    }

    async fn send(&self, rt: &Runtime, path: &str, body: bytes::Bytes) -> Result<(), String> {
        match self {
            App::Http { client, base } => {
                let mut req = client
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(t) = &rt.app_token {
                    req = req.header("dapr-api-token", t);
                }
                let resp = req.send().await.map_err(|e| e.to_string())?;
                match resp.status().as_u16() {
                    200 => Ok(()),
                    s => Err(format!(
                        "error sending configuration item to application, status {s}"
                    )),
                }
            }
            App::Grpc(client) => {
                let mut req = tonic::Request::new(InvokeRequest {
                    method: path.to_string(),
                    data: Some(prost_types::Any {
                        type_url: String::new(),
                        value: body.to_vec(),
                    }),
                    content_type: "application/json".into(),
                    http_extension: Some(HttpExtension {
                        verb: http_extension::Verb::Post as i32,
                        querystring: String::new(),
                    }),
                });
                if let Some(v) = rt.app_token.as_deref().and_then(|t| t.parse().ok()) {
                    req.metadata_mut().insert("dapr-api-token", v);
                }
                client
                    .clone()
                    .on_invoke(req)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            }
        }
    }
}

pub fn spawn(rt: Arc<Runtime>, s: &Subscribed) {
    let Some(addr) = rt.app_addr() else {
        return;
    };
    let (id, store, feed) = (s.id.clone(), s.store.clone(), s.feed.clone());
    tokio::spawn(async move {
        let app = match App::new(&rt, addr) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("configuration delivery: no client for the app: {e}");
                return;
            }
        };
        while let Some(items) = feed.next().await {
            let event = serde_json::json!({
                "id": id,
                "items": crate::http::encode::configuration_items(&items),
            });
            let body = bytes::Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
            for key in items.keys() {
                let path = format!("/configuration/{store}/{key}");
                let send = || app.send(&rt, &path, body.clone());
                let policy = rt.live().resiliency.component_inbound(&store).cloned();
                let r = match policy {
                    None => send().await,
                    Some(p) => p
                        .run(send, |r| match r {
                            Ok(()) => Verdict::Success,
                            Err(_) => Verdict::Failed(None),
                        })
                        .await
                        .map_err(|e| match e {
                            Refused::Failed(e) => e,
                            Refused::Timeout(d) => {
                                format!("timeout after {d:?} (resiliency policy)")
                            }
                            Refused::BreakerOpen => "circuit breaker is open".into(),
                        }),
                };
                if let Err(e) = r {
                    tracing::error!(store = %store, key = %key, "error sending configuration item to the app: {e}");
                }
            }
        }
    });
}
