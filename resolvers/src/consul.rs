//! Consul name resolution over Consul's HTTP API: each sidecar registers its
//! app id (with `DAPR_PORT` meta = internal port and an HTTP health check on
//! its healthz), deregisters on shutdown, and resolves passing instances.
//! The last good answer per app is kept, so a Consul hiccup doesn't fail
//! calls that worked a moment ago.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::{ResolveError, Resolver, Target};

pub struct ConsulResolver {
    client: reqwest::Client,
    /// `http://host:port`
    base: String,
    use_cache: bool,
    self_register: bool,
    meta_key: String,
    tags: Vec<String>,
    registered: RwLock<Option<String>>,
    last_good: RwLock<HashMap<String, Vec<SocketAddr>>>,
    next: AtomicUsize,
}

fn failed(app: &str, m: impl std::fmt::Display) -> ResolveError {
    ResolveError::Failed {
        app_id: app.to_string(),
        message: m.to_string(),
    }
}

impl ConsulResolver {
    /// From `spec.nameResolution.configuration` (Dapr's Consul options:
    /// `client.address`, `selfRegister`, `tags`, `queryOptions.useCache`,
    /// `daprPortMetaKey`).
    pub fn new(cfg: &Value) -> Result<ConsulResolver, String> {
        let address = cfg
            .pointer("/client/address")
            .and_then(Value::as_str)
            .unwrap_or("127.0.0.1:8500");
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("consul client: {e}"))?;
        Ok(ConsulResolver {
            client,
            base,
            use_cache: cfg
                .pointer("/queryOptions/useCache")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            self_register: cfg
                .get("selfRegister")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            meta_key: cfg
                .get("daprPortMetaKey")
                .and_then(Value::as_str)
                .unwrap_or("DAPR_PORT")
                .to_string(),
            tags: cfg
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            registered: RwLock::new(None),
            last_good: RwLock::new(HashMap::new()),
            next: AtomicUsize::new(0),
        })
    }

    /// Registers this sidecar when `selfRegister` is on.
    pub async fn register(
        &self,
        app_id: &str,
        ip: IpAddr,
        internal_port: u16,
        http_port: u16,
    ) -> Result<(), String> {
        if !self.self_register {
            return Ok(());
        }
        let id = format!("{app_id}-{ip}-{internal_port}");
        let body = json!({
            "ID": id,
            "Name": app_id,
            "Address": ip.to_string(),
            "Port": internal_port,
            "Tags": self.tags,
            "Meta": { self.meta_key.clone(): internal_port.to_string() },
            "Checks": [{
                "Name": "Dapr Health Status",
                "CheckID": format!("daprHealth:{id}"),
                "Interval": "15s",
                "HTTP": format!("http://{ip}:{http_port}/v1.0/healthz"),
            }],
        });
        let r = self
            .client
            .put(format!("{}/v1/agent/service/register", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("consul register: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("consul register: HTTP {}", r.status()));
        }
        *self.registered.write().unwrap_or_else(|e| e.into_inner()) = Some(id);
        Ok(())
    }

    /// Removes the registration (on shutdown).
    pub async fn deregister(&self) {
        let id = self
            .registered
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(id) = id {
            let url = format!("{}/v1/agent/service/deregister/{id}", self.base);
            if let Err(e) = self.client.put(url).send().await {
                tracing::warn!("consul deregister: {e}");
            }
        }
    }

    async fn query(&self, app: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let mut url = format!("{}/v1/health/service/{app}?passing=true", self.base);
        if self.use_cache {
            url.push_str("&cached");
        }
        let entries: Vec<Value> = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| failed(app, e))?
            .error_for_status()
            .map_err(|e| failed(app, e))?
            .json()
            .await
            .map_err(|e| failed(app, e))?;
        Ok(entries
            .iter()
            .filter_map(|e| {
                let svc = e.get("Service")?;
                let host = svc
                    .get("Address")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                    .or_else(|| e.pointer("/Node/Address").and_then(Value::as_str))?;
                let port = svc
                    .pointer(&format!("/Meta/{}", self.meta_key))
                    .and_then(Value::as_str)
                    .and_then(|p| p.parse().ok())?;
                Some(SocketAddr::new(host.parse().ok()?, port))
            })
            .collect())
    }
}

#[async_trait]
impl Resolver for ConsulResolver {
    async fn resolve(&self, target: &Target) -> Result<SocketAddr, ResolveError> {
        let app = target.app_id.as_str();
        let addrs = match self.query(app).await {
            Ok(a) => {
                self.last_good
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(app.to_string(), a.clone());
                a
            }
            // Consul unreachable: fall back to the last answer we had.
            Err(e) => self
                .last_good
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(app)
                .cloned()
                .ok_or(e)?,
        };
        if addrs.is_empty() {
            return Err(ResolveError::NotFound(app.to_string()));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
        Ok(addrs[i])
    }
}
