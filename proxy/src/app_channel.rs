//! The channel to the app at `--app-port`: for now its health probes
//! (`GET {path}` over HTTP, `AppCallbackHealthCheck/HealthCheck` over gRPC),
//! reported in metadata. Later issues route invocations and events here.

use std::sync::Arc;
use std::time::Duration;

use spar_filters::runtime::{AppHealth, AppHealthConfig};
use spar_filters::Runtime;
use tokio::sync::watch;

enum Prober {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Grpc {
        endpoint: Box<tonic::transport::Endpoint>,
    },
}

impl Prober {
    fn new(protocol: &str, addr: &str, port: u16, cfg: &AppHealthConfig) -> Option<Self> {
        let host = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        match protocol {
            "grpc" | "grpcs" => {
                let endpoint =
                    tonic::transport::Endpoint::from_shared(format!("http://{host}:{port}"))
                        .ok()?
                        .connect_timeout(cfg.timeout)
                        .timeout(cfg.timeout);
                Some(Prober::Grpc {
                    endpoint: Box::new(endpoint),
                })
            }
            _ => {
                let client = reqwest::Client::builder()
                    .timeout(cfg.timeout)
                    .connect_timeout(cfg.timeout)
                    .build()
                    .ok()?;
                let path = if cfg.path.starts_with('/') {
                    cfg.path.clone()
                } else {
                    format!("/{}", cfg.path)
                };
                Some(Prober::Http {
                    client,
                    url: format!("http://{host}:{port}{path}"),
                })
            }
        }
    }

    async fn probe(&self) -> bool {
        match self {
            Prober::Http { client, url } => client
                .get(url)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false),
            Prober::Grpc { endpoint } => {
                let Ok(ch) = endpoint.connect().await else {
                    return false;
                };
                let mut c = spar_proto::runtime::app_callback_health_check_client::AppCallbackHealthCheckClient::new(ch);
                c.health_check(()).await.is_ok()
            }
        }
    }
}

/// Probes the app every interval; `threshold` consecutive failures mark it
/// unhealthy, one success marks it healthy.
pub async fn health_loop(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let Some(app) = rt.app.clone() else { return };
    let Some(cfg) = app.health.clone() else {
        return;
    };
    let Some(prober) = Prober::new(&app.protocol, &app.channel_address, app.port, &cfg) else {
        tracing::error!("invalid app address for health checks");
        return;
    };
    let mut failures = 0u32;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::signals::stopped(&mut stop) => return,
        }
        let ok = tokio::time::timeout(cfg.timeout + Duration::from_millis(50), prober.probe())
            .await
            .unwrap_or(false);
        let before = rt.app_health();
        if ok {
            failures = 0;
            rt.set_app_health(AppHealth::Healthy);
        } else {
            failures = failures.saturating_add(1);
            if failures >= cfg.threshold {
                rt.set_app_health(AppHealth::Unhealthy);
            }
        }
        let after = rt.app_health();
        if before != after {
            tracing::info!(health = after.as_str(), "app health changed");
        }
    }
}
