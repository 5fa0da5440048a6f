//! Subscriptions: declarative (`kind: Subscription`, v1alpha1/v2alpha1, with
//! scopes), programmatic (an HTTP app's `GET /dapr/subscribe`, a gRPC app's
//! `ListTopicSubscriptions`) and streaming (`stream.rs`), started once the
//! app is reachable. Each becomes a broker subscription whose messages
//! `delivery.rs` hands to the app through a sink: `http_app.rs`,
//! `grpc_app.rs` or the stream; `bulk.rs` batches them when bulk subscribe
//! is on.

mod bulk;
mod delivery;
mod grpc_app;
mod http_app;
pub mod outbox;
pub mod stream;
mod sub;

use std::sync::Arc;
use std::time::Duration;

use spar_components::pubsub::{Handler, SubscribeRequest, Subscription};
use spar_filters::runtime::SubscriptionInfo;
use spar_filters::Runtime;
use tokio::sync::watch;

use delivery::{Deliverer, Sink};
pub use sub::Sub;

/// How a subscription is listed in the metadata API.
fn info(s: &Sub) -> SubscriptionInfo {
    SubscriptionInfo {
        pubsub: s.pubsub.clone(),
        topic: s.topic.clone(),
        dead_letter: s.dead_letter.clone(),
        rules: s
            .rules
            .iter()
            .map(|(_, p)| p.clone())
            .chain(s.default_path.clone())
            .collect(),
        kind: s.kind,
    }
}

/// Handler calls in flight per subscription: `--app-max-concurrency`, else 32.
pub fn max_in_flight(rt: &Runtime) -> usize {
    rt.app
        .as_ref()
        .map(|a| a.max_concurrency)
        .filter(|n| *n > 0)
        .map_or(32, |n| n as usize)
}

/// Waits until the app accepts connections (and, with health checks on, is
/// healthy): nothing is delivered before.
pub(crate) async fn app_ready(
    rt: &Runtime,
    stop: &mut watch::Receiver<bool>,
) -> Option<std::net::SocketAddr> {
    let addr = rt.app_addr()?;
    let health = rt.app.as_ref().is_some_and(|a| a.health.is_some());
    loop {
        let up = if health {
            rt.app_health() == spar_filters::runtime::AppHealth::Healthy
        } else {
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await
                .is_ok_and(|r| r.is_ok())
        };
        if up {
            return Some(addr);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return None,
        }
    }
}

/// Starts every subscription once the app is ready; closes them (in-flight
/// deliveries finish) when `stop` turns true.
pub async fn run(
    rt: Arc<Runtime>,
    declarative: Vec<spar_config::Subscription>,
    mut stop: watch::Receiver<bool>,
) {
    let live = rt.live();
    if live.pubsubs.is_empty() {
        return;
    }
    let Some(addr) = app_ready(&rt, &mut stop).await else {
        return;
    };
    let mut subs: Vec<Sub> = Vec::new();
    for d in &declarative {
        match Sub::from_declarative(d) {
            Ok(s) => subs.push(s),
            Err(e) => tracing::error!(subscription = %d.metadata.name, "{e}"),
        }
    }
    let grpc_app = rt
        .app
        .as_ref()
        .is_some_and(|a| crate::http::upstream::app_h2(&a.protocol));
    // `--disable-init-endpoints subscribe`: the app is not asked.
    let ask = rt
        .app
        .as_ref()
        .is_some_and(|a| a.programmatic_subscriptions);
    let (sink, programmatic): (Arc<dyn Sink>, Vec<Sub>) = if grpc_app {
        match grpc_app::GrpcApp::new(rt.clone(), addr) {
            Ok(app) => {
                let listed = if ask {
                    app.subscriptions().await
                } else {
                    Vec::new()
                };
                (Arc::new(app), listed)
            }
            Err(e) => {
                tracing::error!("gRPC app channel: {e}");
                return;
            }
        }
    } else {
        let app = http_app::HttpApp::new(rt.clone(), addr);
        let listed = if ask {
            app.subscriptions().await
        } else {
            Vec::new()
        };
        (Arc::new(app), listed)
    };
    for s in programmatic {
        if subs
            .iter()
            .any(|d| d.pubsub == s.pubsub && d.topic == s.topic)
        {
            tracing::warn!(pubsub = %s.pubsub, topic = %s.topic, "subscription declared twice; keeping the declarative one");
            continue;
        }
        subs.push(s);
    }
    let max_in_flight = max_in_flight(&rt);
    let mut running: Vec<Subscription> = Vec::new();
    let mut listed = Vec::new();
    for s in subs {
        let Some(c) = live.pubsubs.get(&s.pubsub).cloned() else {
            tracing::error!(pubsub = %s.pubsub, topic = %s.topic, "subscription to an unknown pubsub component");
            continue;
        };
        if !c.scopes.may_subscribe(&s.topic) {
            tracing::error!(pubsub = %s.pubsub, topic = %s.topic, app_id = %rt.app_id, "topic is not allowed for this app id (subscriptionScopes / allowedTopics / protectedTopics)");
            continue;
        }
        listed.push(info(&s));
        let s = Arc::new(s);
        let deliverer = Arc::new(Deliverer {
            sub: s.clone(),
            broker: c.broker.clone(),
            sink: sink.clone(),
            metrics: rt.metrics.clone(),
            policy: live.resiliency.component_inbound(&s.pubsub).cloned(),
            tracer: live.tracer.clone(),
        });
        // A bulk subscription needs a whole batch in flight at once.
        let (handler, in_flight): (Arc<dyn Handler>, usize) = match s.bulk {
            Some(b) => (
                Arc::new(bulk::Batcher::new(deliverer, b)),
                max_in_flight.max(b.max_count),
            ),
            None => (deliverer, max_in_flight),
        };
        let req = SubscribeRequest {
            topic: s.topic.clone(),
            consumer_group: c.consumer_group.clone(),
            max_in_flight: in_flight,
            metadata: s.metadata.clone(),
        };
        match c.broker.subscribe(req, handler).await {
            Ok(sub) => {
                tracing::info!(pubsub = %s.pubsub, topic = %s.topic, kind = s.kind, bulk = s.bulk.is_some(), "subscribed");
                running.push(sub);
            }
            Err(e) => {
                tracing::error!(pubsub = %s.pubsub, topic = %s.topic, "subscribe failed: {e}")
            }
        }
    }
    rt.add_subscriptions(listed);
    crate::signals::stopped(&mut stop).await;
    for s in running {
        s.close().await;
    }
}
