//! Subscriptions: declarative (`kind: Subscription`, v1alpha1/v2alpha1, with
//! scopes) and programmatic (`GET /dapr/subscribe` on the app), started
//! once the app is reachable; each becomes a broker subscription whose
//! messages `delivery.rs` hands to the app.

mod delivery;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use spar_components::pubsub::{SubscribeRequest, Subscription};
use spar_filters::cel::Expr;
use spar_filters::Runtime;
use tokio::sync::watch;

/// One subscription, normalised, with its routing rules compiled.
#[derive(Debug)]
pub struct Sub {
    pub pubsub: String,
    pub topic: String,
    pub rules: Vec<(Expr, String)>,
    pub default_path: String,
    pub dead_letter: Option<String>,
    pub raw_payload: bool,
    pub metadata: HashMap<String, String>,
    pub kind: &'static str,
}

fn path(p: &str) -> String {
    format!("/{}", p.trim_start_matches('/'))
}

fn compile(rules: &[(String, String)]) -> Result<Vec<(Expr, String)>, String> {
    rules
        .iter()
        .map(|(m, p)| {
            Expr::parse(m)
                .map(|e| (e, path(p)))
                .map_err(|e| format!("routes.rules match {m:?}: {e}"))
        })
        .collect()
}

impl Sub {
    pub fn from_declarative(s: &spar_config::Subscription) -> Result<Sub, String> {
        let spec = &s.spec;
        let rules: Vec<(String, String)> = spec
            .routes
            .rules
            .iter()
            .map(|r| (r.match_.clone(), r.path.clone()))
            .collect();
        Ok(Sub {
            pubsub: spec.pubsubname.clone(),
            topic: spec.topic.clone(),
            rules: compile(&rules)?,
            default_path: path(&spec.routes.default),
            dead_letter: spec.dead_letter_topic.clone().filter(|d| !d.is_empty()),
            raw_payload: spec.metadata.get("rawPayload").is_some_and(|v| v == "true"),
            metadata: spec.metadata.clone(),
            kind: "DECLARATIVE",
        })
    }

    /// One entry of the app's `GET /dapr/subscribe` answer.
    pub fn from_programmatic(v: &Value) -> Result<Sub, String> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (pubsub, topic) = (s("pubsubname"), s("topic"));
        if pubsub.is_empty() || topic.is_empty() {
            return Err(format!("subscription {v} needs pubsubname and topic"));
        }
        let routes = v.get("routes");
        let rules: Vec<(String, String)> = routes
            .and_then(|r| r.get("rules"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let f = |k: &str| {
                            r.get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        (f("match"), f("path"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let default = routes
            .and_then(|r| r.get("default"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let r = s("route");
                if r.is_empty() {
                    topic.clone()
                } else {
                    r
                }
            });
        let metadata: HashMap<String, String> = v
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Sub {
            raw_payload: metadata.get("rawPayload").is_some_and(|v| v == "true"),
            rules: compile(&rules)?,
            default_path: path(&default),
            dead_letter: Some(s("deadLetterTopic")).filter(|d| !d.is_empty()),
            metadata,
            pubsub,
            topic,
            kind: "PROGRAMMATIC",
        })
    }

    /// The app path for an event: the first rule that matches, else the
    /// default; `None` when nothing applies.
    pub fn route(&self, event: Option<&Value>) -> Option<&str> {
        if let Some(ev) = event {
            if let Some((_, p)) = self.rules.iter().find(|(e, _)| e.matches(ev)) {
                return Some(p);
            }
        }
        (self.default_path != "/").then_some(self.default_path.as_str())
    }
}

/// Asks an HTTP app for its subscriptions (`GET /dapr/subscribe`).
async fn programmatic(client: &reqwest::Client, base: &str) -> Vec<Sub> {
    let resp = match client
        .get(format!("{base}/dapr/subscribe"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r,
        Ok(_) => return Vec::new(),
        Err(e) => {
            tracing::warn!("GET /dapr/subscribe failed: {e}");
            return Vec::new();
        }
    };
    let list: Vec<Value> = resp.json().await.unwrap_or_default();
    list.iter()
        .filter_map(|v| match Sub::from_programmatic(v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("ignoring subscription from the app: {e}");
                None
            }
        })
        .collect()
}

/// Waits until the app accepts connections (and, with health checks on, is
/// healthy): nothing is delivered before.
async fn app_ready(rt: &Runtime, stop: &mut watch::Receiver<bool>) -> Option<std::net::SocketAddr> {
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
    if rt.pubsubs.is_empty() {
        return;
    }
    let Some(addr) = app_ready(&rt, &mut stop).await else {
        return;
    };
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let base = format!("http://{addr}");
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
        .is_some_and(|a| crate::http::invoke::app_h2(&a.protocol));
    if !grpc_app {
        for s in programmatic(&client, &base).await {
            if subs
                .iter()
                .any(|d| d.pubsub == s.pubsub && d.topic == s.topic)
            {
                tracing::warn!(pubsub = %s.pubsub, topic = %s.topic, "subscription declared twice; keeping the declarative one");
                continue;
            }
            subs.push(s);
        }
    }
    let max_in_flight = rt
        .app
        .as_ref()
        .map(|a| a.max_concurrency)
        .filter(|n| *n > 0)
        .map_or(32, |n| n as usize);
    let mut running: Vec<Subscription> = Vec::new();
    let mut listed = Vec::new();
    for s in subs {
        let Some(c) = rt.pubsubs.get(&s.pubsub).cloned() else {
            tracing::error!(pubsub = %s.pubsub, topic = %s.topic, "subscription to an unknown pubsub component");
            continue;
        };
        if !c.scopes.may_subscribe(&s.topic) {
            tracing::error!(pubsub = %s.pubsub, topic = %s.topic, app_id = %rt.app_id, "topic is not allowed for this app id (subscriptionScopes / allowedTopics / protectedTopics)");
            continue;
        }
        listed.push(spar_filters::runtime::SubscriptionInfo {
            pubsub: s.pubsub.clone(),
            topic: s.topic.clone(),
            dead_letter: s.dead_letter.clone(),
            rules: s
                .rules
                .iter()
                .map(|(_, p)| p.clone())
                .chain(std::iter::once(s.default_path.clone()))
                .collect(),
            kind: s.kind,
        });
        let s = Arc::new(s);
        let handler = Arc::new(delivery::Deliverer::new(
            rt.clone(),
            s.clone(),
            c.broker.clone(),
            client.clone(),
            base.clone(),
        ));
        let req = SubscribeRequest {
            topic: s.topic.clone(),
            consumer_group: c.consumer_group.clone(),
            max_in_flight,
            metadata: s.metadata.clone(),
        };
        match c.broker.subscribe(req, handler).await {
            Ok(sub) => {
                tracing::info!(pubsub = %s.pubsub, topic = %s.topic, kind = s.kind, "subscribed");
                running.push(sub);
            }
            Err(e) => {
                tracing::error!(pubsub = %s.pubsub, topic = %s.topic, "subscribe failed: {e}")
            }
        }
    }
    rt.set_subscriptions(listed);
    crate::signals::stopped(&mut stop).await;
    for s in running {
        s.close().await;
    }
}
