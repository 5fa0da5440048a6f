//! Input bindings: events from `bindings.*` components with an input side
//! delivered to the app, as daprd does. Started beside the subscriptions
//! once the app is ready (restarted with them by hot reload).
//!
//! Which bindings the app takes: every one whose `direction` names
//! `input`; otherwise an HTTP app is asked `OPTIONS /{route}` (2xx or 405:
//! it listens) and a gRPC app `ListInputBindings` (once). Each event is an
//! HTTP `POST /{route}` (data as the body, the component's metadata as
//! headers) or a gRPC `OnBindingEvent`; a 2xx / OK acknowledges, anything
//! else goes back to the component as an error (a broker-backed binding
//! redelivers). The app's answer body is handed back but not acted on:
//! daprd's legacy `{"storeName","state","to","data"}` answers are ignored.
//! The component's inbound resiliency policy wraps each delivery; while
//! app health checks say the app is unhealthy nothing is delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use spar_components::bindings::{Event, EventHandler, Reading};
use spar_filters::resiliency::{Policy, Refused, Verdict};
use spar_filters::runtime::AppHealth;
use spar_filters::Runtime;
use spar_proto::runtime::{self as pb, app_callback_client::AppCallbackClient};
use tokio::sync::watch;
use tonic::transport::Channel;

const APP_TIMEOUT: Duration = Duration::from_secs(60);
/// daprd's `--app-binding-options-timeout` default.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

enum App {
    Http {
        client: reqwest::Client,
        base: String,
    },
    Grpc {
        channel: Channel,
    },
}

impl App {
    fn new(rt: &Runtime, addr: std::net::SocketAddr) -> Result<App, String> {
        let grpc = rt
            .app
            .as_ref()
            .is_some_and(|a| crate::http::upstream::app_h2(&a.protocol));
        if grpc {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(5))
                .connect_lazy();
            return Ok(App::Grpc { channel });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(App::Http {
            client,
            base: format!("http://{addr}"),
        })
    }

    fn grpc_request<T>(rt: &Runtime, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        if let Some(t) = rt.app_token.as_deref().and_then(|t| t.parse().ok()) {
            req.metadata_mut().insert("dapr-api-token", t);
        }
        req
    }

    /// The bindings a gRPC app lists (`None` for an HTTP app).
    async fn listed(&self, rt: &Runtime) -> Option<Vec<String>> {
        let App::Grpc { channel } = self else {
            return None;
        };
        let mut c = AppCallbackClient::new(channel.clone());
        match c
            .list_input_bindings(Self::grpc_request(rt, (), PROBE_TIMEOUT))
            .await
        {
            Ok(r) => Some(r.into_inner().bindings),
            // daprd treats a failed list as an empty one.
            Err(e) => {
                tracing::debug!("ListInputBindings: {e}");
                Some(Vec::new())
            }
        }
    }

    /// Whether an HTTP app listens on the route (`OPTIONS`).
    async fn listens(&self, rt: &Runtime, route: &str) -> bool {
        let App::Http { client, base } = self else {
            return false;
        };
        let mut req = client
            .request(reqwest::Method::OPTIONS, url(base, route))
            .timeout(PROBE_TIMEOUT);
        if let Some(t) = &rt.app_token {
            req = req.header("dapr-api-token", t);
        }
        match req.send().await {
            Ok(r) => r.status().is_success() || r.status().as_u16() == 405,
            Err(e) => {
                tracing::warn!(route, "OPTIONS to the app failed: {e}");
                false
            }
        }
    }

    /// One delivery: `Ok(answer body)` on a 2xx / OK.
    async fn deliver(
        &self,
        rt: &Runtime,
        name: &str,
        route: &str,
        ev: &Event,
    ) -> Result<Vec<u8>, String> {
        match self {
            App::Http { client, base } => {
                let mut req = client
                    .post(url(base, route))
                    .timeout(APP_TIMEOUT)
                    .header("content-type", "application/json");
                for (k, v) in &ev.metadata {
                    if let (Ok(k), Ok(v)) = (
                        reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                        reqwest::header::HeaderValue::from_str(v),
                    ) {
                        req = req.header(k, v);
                    }
                }
                if let Some(t) = &rt.app_token {
                    req = req.header("dapr-api-token", t);
                }
                let resp = req
                    .body(ev.data.clone())
                    .send()
                    .await
                    .map_err(|e| format!("error invoking app: {e}"))?;
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap_or_default();
                if !(200..=299).contains(&status) {
                    return Err(format!(
                        "fails to send binding event to http app channel, status code: {status} body: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                Ok(body.to_vec())
            }
            App::Grpc { channel } => {
                let mut c = AppCallbackClient::new(channel.clone());
                let msg = pb::BindingEventRequest {
                    name: name.to_string(),
                    data: ev.data.clone(),
                    metadata: ev.metadata.clone().into_iter().collect(),
                };
                c.on_binding_event(Self::grpc_request(rt, msg, APP_TIMEOUT))
                    .await
                    .map(|r| r.into_inner().data)
                    .map_err(|e| format!("error invoking app: {e}"))
            }
        }
    }
}

fn url(base: &str, route: &str) -> String {
    format!("{base}/{}", route.trim_start_matches('/'))
}

/// Hands one binding's events to the app.
struct Deliver {
    rt: Arc<Runtime>,
    app: Arc<App>,
    name: String,
    route: String,
    policy: Option<Arc<Policy>>,
}

#[async_trait]
impl EventHandler for Deliver {
    async fn handle(&self, ev: Event) -> Result<Vec<u8>, String> {
        let health_checked = self.rt.app.as_ref().is_some_and(|a| a.health.is_some());
        if health_checked && self.rt.app_health() == AppHealth::Unhealthy {
            return Err("the app is unhealthy".into());
        }
        let started = Instant::now();
        let once = || self.app.deliver(&self.rt, &self.name, &self.route, &ev);
        let r = match &self.policy {
            None => once().await,
            Some(p) => p
                .run(once, |r| match r {
                    Ok(_) => Verdict::Success,
                    Err(_) => Verdict::Failed(None),
                })
                .await
                .map_err(|r| match r {
                    Refused::Failed(e) => e,
                    Refused::Timeout(d) => format!("timeout after {d:?} (resiliency policy)"),
                    Refused::BreakerOpen => "circuit breaker is open".into(),
                }),
        };
        if let Some(m) = &self.rt.metrics {
            m.input_binding(&self.name, r.is_ok(), started);
        }
        if let Err(e) = &r {
            tracing::debug!(binding = %self.name, "error from app consumer for binding: {e}");
        }
        r
    }
}

/// Starts reading every input binding the app takes; stops them (handler
/// calls in flight finish) when `stop` turns true.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let live = rt.live();
    let inputs = live.bindings.inputs();
    if inputs.is_empty() {
        return;
    }
    if rt.app_addr().is_none() {
        tracing::warn!("input bindings are loaded but there is no app to deliver to (--app-port)");
        return;
    }
    let Some(addr) = crate::subscriber::app_ready(&rt, &mut stop).await else {
        return;
    };
    let app = match App::new(&rt, addr) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            tracing::error!("input bindings: app channel: {e}");
            return;
        }
    };
    let mut listed: Option<Option<Vec<String>>> = None;
    let mut running: Vec<Reading> = Vec::new();
    for (name, e) in inputs {
        let takes = if e.direction.explicit_input {
            true
        } else if matches!(*app, App::Grpc { .. }) {
            if listed.is_none() {
                listed = Some(app.listed(&rt).await);
            }
            listed
                .as_ref()
                .and_then(|l| l.as_ref())
                .is_some_and(|l| l.contains(&name))
        } else {
            app.listens(&rt, &e.route).await
        };
        if !takes {
            tracing::info!(binding = %name, "app has not subscribed to binding");
            continue;
        }
        let handler = Arc::new(Deliver {
            rt: rt.clone(),
            app: app.clone(),
            name: name.clone(),
            route: e.route.clone(),
            policy: live.resiliency.component_inbound(&name).cloned(),
        });
        match e.binding.read(handler).await {
            Ok(r) => {
                tracing::info!(binding = %name, route = %e.route, "reading from input binding");
                running.push(r);
            }
            Err(err) => tracing::error!(binding = %name, "error reading from input binding: {err}"),
        }
    }
    crate::signals::stopped(&mut stop).await;
    for r in running {
        r.close().await;
    }
}
