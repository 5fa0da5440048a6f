//! The configuration building block: get items, subscribe to their changes
//! and unsubscribe — one implementation for `GET /v1.0/configuration/…`
//! (and `v1.0-alpha1`) and gRPC `GetConfiguration` / `SubscribeConfiguration`
//! / `UnsubscribeConfiguration` (and their `Alpha1` twins).
//!
//! A subscription is a store [`Watch`] feeding a [`Feed`]; the front end
//! that asked delivers from the feed (the binary's HTTP face POSTs to the
//! app, the gRPC face writes to the stream) until the subscription is
//! removed here — by unsubscribe, the stream closing, or shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use spar_components::configuration::{
    ConfigError, ConfigurationStore, Feed, Items, SubscribeRequest, Watch,
};

use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::{ApiError, ApiResult, Response, Runtime};

#[derive(Default)]
pub struct ConfigurationStores {
    map: HashMap<String, Arc<dyn ConfigurationStore>>,
}

impl ConfigurationStores {
    pub fn insert(&mut self, name: String, store: Arc<dyn ConfigurationStore>) {
        self.map.insert(name, store);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn ConfigurationStore>> {
        self.map.get(name)
    }

    /// daprd's checks, in its order: none configured, then unknown name.
    fn lookup(&self, name: &str) -> Result<&Arc<dyn ConfigurationStore>, ApiError> {
        if self.map.is_empty() {
            return Err(ApiError::ConfigurationStoresNotConfigured);
        }
        self.map
            .get(name)
            .ok_or_else(|| ApiError::ConfigurationStoreNotFound(name.to_string()))
    }
}

/// Who receives a subscription's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deliver {
    /// POSTs to the app (`/configuration/{store}/{key}`): HTTP subscribe.
    App,
    /// The gRPC stream that asked.
    Stream,
}

#[derive(Debug)]
pub enum ConfigurationRequest {
    Get {
        store: String,
        keys: Vec<String>,
        metadata: HashMap<String, String>,
    },
    Subscribe {
        store: String,
        keys: Vec<String>,
        metadata: HashMap<String, String>,
        deliver: Deliver,
    },
    /// HTTP names the store in the route: it is checked, and an unknown
    /// id is an error. gRPC names none (daprd ignores it): an unknown id
    /// is an answer, `NotSubscribed`.
    Unsubscribe { store: Option<String>, id: String },
}

/// A subscription in place: its id and the changes to deliver.
pub struct Subscribed {
    pub id: String,
    pub store: String,
    pub feed: Arc<Feed>,
}

impl std::fmt::Debug for Subscribed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribed")
            .field("id", &self.id)
            .field("store", &self.store)
            .finish()
    }
}

#[derive(Debug)]
pub enum ConfigurationResponse {
    Items(Items),
    Subscribed(Subscribed),
    Unsubscribed,
    /// gRPC's answer for an id it does not know (daprd: `ok: false`).
    NotSubscribed(String),
}

struct Running {
    store: String,
    feed: Arc<Feed>,
    /// Dropped (so stopped) with the entry.
    _watch: Watch,
}

/// Every running subscription by id, whichever face opened it.
#[derive(Default)]
pub struct ConfigSubscriptions {
    by_id: Mutex<HashMap<String, Running>>,
}

impl ConfigSubscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, id: String, r: Running) {
        self.lock().insert(id, r);
    }

    /// Stops a subscription: its store watch ends and its feed closes (so
    /// its delivery ends). `false` when there was none by that id (in
    /// `store`, when given).
    pub fn remove(&self, id: &str, store: Option<&str>) -> bool {
        let mut m = self.lock();
        if store.is_some_and(|s| m.get(id).is_some_and(|r| r.store != s)) {
            return false;
        }
        match m.remove(id) {
            Some(r) => {
                r.feed.close();
                true
            }
            None => false,
        }
    }

    /// Stops the subscriptions whose store `keep` refuses (a hot reload
    /// removed it).
    pub fn retain_stores(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|_, r| {
            let k = keep(&r.store);
            if !k {
                r.feed.close();
            }
            k
        });
    }

    /// Stops them all (shutdown).
    pub fn close_all(&self) {
        for (_, r) in self.lock().drain() {
            r.feed.close();
        }
    }
}

/// A store call under the store's outbound resiliency policy; only
/// backend failures count against it.
async fn guarded<T, F, Fut>(
    live: &Live,
    store: &str,
    name: &'static str,
    op: F,
) -> Result<T, ConfigError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConfigError>>,
{
    // A child span per store call, as for state (`state/{store}/{op}`).
    let mut span = crate::trace::filter::child_span(
        &live.tracer,
        || format!("configuration/{store}/{name}"),
        crate::trace::SpanKind::Client,
    );
    if let Some(s) = span.as_mut() {
        s.attr("db.system", "configuration");
        s.attr("db.name", store.to_owned());
        s.attr("db.operation", name);
    }
    let r = guarded_inner(live, store, op).await;
    if let (Some(s), Err(e)) = (span.as_mut(), &r) {
        s.error(e.to_string());
    }
    r
}

async fn guarded_inner<T, F, Fut>(live: &Live, store: &str, op: F) -> Result<T, ConfigError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConfigError>>,
{
    let Some(p) = live.resiliency.component_outbound(store) else {
        let mut op = op;
        return op().await;
    };
    p.run(op, |r| match r {
        Err(ConfigError::Backend(_)) => Verdict::Failed(None),
        _ => Verdict::Success,
    })
    .await
    .map_err(|r| match r {
        Refused::Failed(e) => e,
        Refused::Timeout(d) => {
            ConfigError::Backend(format!("timeout after {d:?} (resiliency policy)"))
        }
        Refused::BreakerOpen => ConfigError::Backend("circuit breaker is open".into()),
    })
}

pub async fn handle(rt: &Runtime, req: ConfigurationRequest) -> ApiResult {
    let live = rt.live();
    let record = |store: &str, op: &str, ok: bool, started: Instant| {
        if let Some(m) = &rt.metrics {
            m.configuration(store, op, ok, started);
        }
    };
    let out = match req {
        ConfigurationRequest::Get {
            store,
            keys,
            metadata,
        } => {
            let s = live.configuration.lookup(&store)?;
            let started = Instant::now();
            let r = guarded(&live, &store, "get", || s.get(&keys, &metadata)).await;
            record(&store, "get", r.is_ok(), started);
            let items = r.map_err(|e| ApiError::ConfigurationGet {
                keys,
                store,
                reason: e.to_string(),
            })?;
            ConfigurationResponse::Items(items)
        }
        ConfigurationRequest::Subscribe {
            store,
            mut keys,
            metadata,
            deliver,
        } => {
            let s = live.configuration.lookup(&store)?;
            if deliver == Deliver::App && rt.app_addr().is_none() {
                return Err(ApiError::ConfigurationNoApp);
            }
            keys.sort();
            keys.dedup();
            let req = SubscribeRequest { keys, metadata };
            let feed = Feed::new();
            let started = Instant::now();
            let r = guarded(&live, &store, "subscribe", || {
                s.subscribe(&req, feed.clone())
            })
            .await;
            record(&store, "subscribe", r.is_ok(), started);
            let watch = r.map_err(|e| ApiError::ConfigurationSubscribe {
                keys: req.keys.clone(),
                store: store.clone(),
                reason: e.to_string(),
            })?;
            let id = uuid::Uuid::new_v4().to_string();
            rt.configuration_subscriptions.add(
                id.clone(),
                Running {
                    store: store.clone(),
                    feed: feed.clone(),
                    _watch: watch,
                },
            );
            ConfigurationResponse::Subscribed(Subscribed { id, store, feed })
        }
        ConfigurationRequest::Unsubscribe { store, id } => {
            let started = Instant::now();
            // A subscription is found even when a reload has removed its
            // store meanwhile, so it can always be ended.
            if rt.configuration_subscriptions.remove(&id, store.as_deref()) {
                if let Some(s) = &store {
                    record(s, "unsubscribe", true, started);
                }
                return Ok(Response::Configuration(ConfigurationResponse::Unsubscribed));
            }
            if let Some(s) = &store {
                live.configuration.lookup(s)?;
                record(s, "unsubscribe", false, started);
            }
            let e = ApiError::ConfigurationUnsubscribe {
                reason: format!("subscription with id {id} does not exist"),
                id,
            };
            if store.is_none() {
                return Ok(Response::Configuration(
                    ConfigurationResponse::NotSubscribed(e.to_string()),
                ));
            }
            return Err(e);
        }
    };
    Ok(Response::Configuration(out))
}
