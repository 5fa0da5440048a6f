//! Sidecar-wide state the handler filters read: identity, components, app
//! connection, readiness and the shutdown trigger. Built once at start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;

use tokio::sync::watch;

use crate::handlers::secrets::SecretStores;
use crate::handlers::state::StateStores;

/// A component as reported by the metadata API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub name: String,
    pub type_: String,
    pub version: String,
    pub capabilities: Vec<String>,
}

/// The version spar reports (`--version`, the metadata API): the Dapr
/// runtime release whose API it serves, then spar's own, as a semantic
/// version the Dapr CLI and SDKs compare as that Dapr release.
pub const RUNTIME_VERSION: &str = concat!("1.18.0-spar.", env!("CARGO_PKG_VERSION"));

/// How the sidecar reaches its app, as reported by the metadata API.
#[derive(Debug, Clone, Default)]
pub struct AppConnection {
    pub port: u16,
    pub protocol: String,
    pub channel_address: String,
    pub max_concurrency: i32,
    /// Present when app health checks are enabled.
    pub health: Option<AppHealthConfig>,
    /// Whether the app is asked for its subscriptions (`GET /dapr/subscribe`,
    /// `ListTopicSubscriptions`); `--disable-init-endpoints subscribe` says no.
    pub programmatic_subscriptions: bool,
}

#[derive(Debug, Clone)]
pub struct AppHealthConfig {
    pub path: String,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub threshold: u32,
}

/// The app's health as last probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppHealth {
    Unknown = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl AppHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            AppHealth::Unknown => "unknown",
            AppHealth::Healthy => "healthy",
            AppHealth::Unhealthy => "unhealthy",
        }
    }
}

/// A running subscription, for the metadata API.
#[derive(Debug, Clone)]
pub struct SubscriptionInfo {
    pub pubsub: String,
    pub topic: String,
    pub dead_letter: Option<String>,
    /// Rule paths, then the default path.
    pub rules: Vec<String>,
    /// `DECLARATIVE`, `PROGRAMMATIC` or `STREAMING`.
    pub kind: &'static str,
}

/// Everything built from `--resources-path` and the Configuration that hot
/// reload swaps as one: components, endpoints, resiliency, tracing, API
/// logging. A request takes one snapshot and finishes on it, so a reload
/// never changes a call half-way or drops it.
#[derive(Default)]
pub struct Live {
    pub state: StateStores,
    pub secrets: SecretStores,
    pub pubsubs: crate::handlers::pubsub::PubSubs,
    pub configuration: crate::handlers::configuration::ConfigurationStores,
    pub locks: crate::handlers::lock::LockStores,
    pub conversations: crate::handlers::conversation::Conversations,
    /// Crypto components (`crypto.*`).
    pub crypto: crate::handlers::crypto::CryptoProviders,
    /// Binding components (`bindings.*`), both sides.
    pub bindings: crate::handlers::bindings::Bindings,
    /// State stores with a transactional outbox (`outbox.rs`).
    pub outbox: crate::outbox::Outboxes,
    /// `HTTPEndpoint` resources (and full-URL targets).
    pub endpoints: crate::handlers::endpoints::Endpoints,
    pub components: Vec<ComponentInfo>,
    /// Components that failed to start: (name, reason). The sidecar still
    /// serves everything else, as daprd does.
    pub failed_components: Vec<(String, String)>,
    /// Resiliency policies by target (`kind: Resiliency`).
    pub resiliency: crate::resiliency::Resiliency,
    /// `spec.tracing`, compiled; off by default.
    pub tracer: Arc<crate::trace::Tracer>,
    /// API logging, for calls the front end finishes (proxied invocations).
    pub api_log: Option<crate::builtin::api_log::ApiLog>,
}

pub struct Runtime {
    pub app_id: String,
    pub namespace: Option<String>,
    pub runtime_version: &'static str,
    /// Finds peer sidecars for service invocation.
    pub resolver: Option<std::sync::Arc<dyn spar_resolvers::Resolver>>,
    /// `APP_API_TOKEN`: sent to the app as `dapr-api-token` on every call.
    pub app_token: Option<String>,
    pub app: Option<AppConnection>,
    pub enabled_features: Vec<String>,
    /// Component metrics (`dapr_component_*`), when metrics are on.
    pub metrics: Option<crate::metrics::ComponentMetrics>,
    /// Running configuration subscriptions (they outlive a reload).
    pub configuration_subscriptions: crate::handlers::configuration::ConfigSubscriptions,
    /// The scheduler behind the Jobs API (`--scheduler-host-address`).
    pub jobs: Option<std::sync::Arc<dyn crate::handlers::jobs::JobsBackend>>,
    /// What hot reload replaces: read once per request with [`Runtime::live`].
    live: ArcSwap<Live>,
    /// Attributes set through `PUT /v1.0/metadata/{key}`, reported as `extended`.
    attributes: RwLock<BTreeMap<String, String>>,
    subscriptions: RwLock<Vec<SubscriptionInfo>>,
    app_health: AtomicU8,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl Runtime {
    pub fn new(app_id: String, live: Live) -> Self {
        Runtime {
            app_id,
            namespace: std::env::var("NAMESPACE").ok().filter(|s| !s.is_empty()),
            runtime_version: RUNTIME_VERSION,
            resolver: None,
            app_token: std::env::var("APP_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            app: None,
            enabled_features: Vec::new(),
            metrics: None,
            configuration_subscriptions: Default::default(),
            jobs: None,
            live: ArcSwap::from_pointee(live),
            attributes: RwLock::new(BTreeMap::new()),
            subscriptions: RwLock::default(),
            app_health: AtomicU8::new(AppHealth::Unknown as u8),
            ready: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
        }
    }

    /// The current components, policies and tracing: one atomic load.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The live set for a quick look (no reference count taken); not to be
    /// held across an `.await`.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// Puts a reloaded set in service; calls already running keep theirs.
    pub fn replace_live(&self, live: Live) -> Arc<Live> {
        self.live.swap(Arc::new(live))
    }

    /// The app's address, when `--app-port` is set.
    pub fn app_addr(&self) -> Option<std::net::SocketAddr> {
        let app = self.app.as_ref()?;
        let host = if app.channel_address == "localhost" {
            "127.0.0.1"
        } else {
            &app.channel_address
        };
        let ip: std::net::IpAddr = host.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, app.port))
    }

    pub fn add_subscriptions(&self, subs: impl IntoIterator<Item = SubscriptionInfo>) {
        self.subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(subs);
    }

    /// Forgets one subscription (a streaming one that ended).
    /// Forgets every subscription but the streaming ones (a reload
    /// restarts the rest).
    pub fn clear_started_subscriptions(&self) {
        self.subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.kind == "STREAMING");
    }

    pub fn remove_subscription(&self, pubsub: &str, topic: &str, kind: &str) {
        let mut subs = self
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(i) = subs
            .iter()
            .position(|s| s.pubsub == pubsub && s.topic == topic && s.kind == kind)
        {
            subs.remove(i);
        }
    }

    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_attribute(&self, key: String, value: String) {
        // Poisoning can only follow a panic elsewhere; keep serving the data.
        let mut m = self.attributes.write().unwrap_or_else(|e| e.into_inner());
        m.insert(key, value);
    }

    pub fn attributes(&self) -> BTreeMap<String, String> {
        self.attributes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_app_health(&self, h: AppHealth) {
        self.app_health.store(h as u8, Ordering::Release);
    }

    pub fn app_health(&self) -> AppHealth {
        match self.app_health.load(Ordering::Acquire) {
            1 => AppHealth::Healthy,
            2 => AppHealth::Unhealthy,
            _ => AppHealth::Unknown,
        }
    }

    /// Asks the process to shut down gracefully (`POST /v1.0/shutdown`).
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown was requested through the API.
    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
