//! mDNS name resolution (Dapr's self-hosted default): every sidecar
//! announces `_dapr._tcp.local.` with its app id and internal port; each
//! sidecar browses from start, keeps every instance in a cache and picks
//! instances round-robin. An instance that stops is dropped when its
//! announcement is withdrawn; one that fails a connection is skipped for a
//! few seconds (unless it is the only one). Each announcement carries the
//! sidecar's namespace, so `app.namespace` picks only that namespace's
//! instances; a bare `app` takes any.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::{ResolveError, Resolver, Target};

const SERVICE: &str = "_dapr._tcp.local.";

/// app id → instances.
/// Looked up on every call: a fast hasher.
type Instances = rustc_hash::FxHashMap<String, Vec<Instance>>;

#[derive(Debug, Clone)]
struct Instance {
    fullname: String,
    namespace: String,
    addr: SocketAddr,
}

/// How long an instance that failed a connection is passed over.
const SUSPECT_FOR: Duration = Duration::from_secs(5);

pub struct MdnsResolver {
    daemon: ServiceDaemon,
    cache: Arc<RwLock<Instances>>,
    suspects: RwLock<rustc_hash::FxHashMap<SocketAddr, Instant>>,
    next: AtomicUsize,
    announced: RwLock<Option<String>>,
    /// How long a request may wait for a first answer about an unseen app.
    cold_wait: Duration,
}

fn failed(app: &str, e: impl std::fmt::Display) -> ResolveError {
    ResolveError::Failed {
        app_id: app.to_string(),
        message: e.to_string(),
    }
}

impl MdnsResolver {
    /// Starts the daemon and browsing right away, so the cache is warm
    /// before the first request. `loopback_only` keeps every mDNS packet on
    /// the loopback interface (a sidecar that only listens on loopback has
    /// nothing to announce to the network).
    pub fn start(loopback_only: bool) -> Result<Arc<MdnsResolver>, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
        if loopback_only {
            // Later selections override earlier ones.
            daemon
                .disable_interface(IfKind::All)
                .map_err(|e| format!("mDNS: {e}"))?;
            daemon
                .enable_interface(IfKind::LoopbackV4)
                .map_err(|e| format!("mDNS: {e}"))?;
        }
        let events = daemon
            .browse(SERVICE)
            .map_err(|e| format!("mDNS browse: {e}"))?;
        let cache: Arc<RwLock<Instances>> = Arc::default();
        let c = cache.clone();
        std::thread::Builder::new()
            .name("spar-mdns".into())
            .spawn(move || {
                while let Ok(ev) = events.recv() {
                    let mut m = c.write().unwrap_or_else(|e| e.into_inner());
                    match ev {
                        ServiceEvent::ServiceResolved(s) => {
                            let Some(app) = s.txt_properties.get_property_val_str("appid") else {
                                continue;
                            };
                            // Prefer IPv4 loopback when offered (same host), else any IPv4.
                            let mut ips: Vec<IpAddr> =
                                s.addresses.iter().map(|a| a.to_ip_addr()).collect();
                            ips.sort_by_key(|ip| (!ip.is_loopback(), !ip.is_ipv4()));
                            let Some(ip) = ips.first() else { continue };
                            let namespace = s
                                .txt_properties
                                .get_property_val_str("namespace")
                                .unwrap_or("default")
                                .to_string();
                            let list = m.entry(app.to_string()).or_default();
                            list.retain(|i| i.fullname != s.fullname);
                            list.push(Instance {
                                fullname: s.fullname.clone(),
                                namespace,
                                addr: SocketAddr::new(*ip, s.port),
                            });
                        }
                        ServiceEvent::ServiceRemoved(_, fullname) => {
                            for list in m.values_mut() {
                                list.retain(|i| i.fullname != fullname);
                            }
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| format!("mDNS thread: {e}"))?;
        Ok(Arc::new(MdnsResolver {
            daemon,
            cache,
            suspects: RwLock::default(),
            next: AtomicUsize::new(0),
            announced: RwLock::new(None),
            cold_wait: Duration::from_secs(3),
        }))
    }

    /// Announces this sidecar: `app_id` in `namespace`, reachable at `ip:port`.
    pub fn announce(
        &self,
        app_id: &str,
        namespace: &str,
        ip: IpAddr,
        port: u16,
    ) -> Result<(), String> {
        let instance = format!("{app_id}-{}-{port}", std::process::id());
        let host = format!("spar-{}-{port}.local.", std::process::id());
        let info = ServiceInfo::new(
            SERVICE,
            &instance,
            &host,
            ip,
            port,
            &[("appid", app_id), ("namespace", namespace)][..],
        )
        .map_err(|e| format!("mDNS announce: {e}"))?;
        let fullname = info.get_fullname().to_string();
        self.daemon
            .register(info)
            .map_err(|e| format!("mDNS announce: {e}"))?;
        *self.announced.write().unwrap_or_else(|e| e.into_inner()) = Some(fullname);
        Ok(())
    }

    /// Withdraws the announcement (on shutdown) so peers drop us at once.
    pub fn withdraw(&self) {
        if let Some(name) = self
            .announced
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            if let Ok(rx) = self.daemon.unregister(&name) {
                let _ = rx.recv_timeout(Duration::from_secs(1));
            }
        }
    }

    /// Round-robin over the app's instances (in the target's namespace),
    /// passing over suspects unless all are; no allocation, and the clock
    /// is read only when there are suspects.
    fn pick(&self, target: &Target) -> Option<SocketAddr> {
        let m = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let ns = target.namespace.as_deref();
        let all = m.get(&target.app_id)?;
        let listed = || all.iter().filter(|i| ns.is_none_or(|n| n == i.namespace));
        let s = self.suspects.read().unwrap_or_else(|e| e.into_inner());
        let now = (!s.is_empty()).then(Instant::now);
        let healthy = |i: &&Instance| match now {
            None => true,
            Some(now) => s.get(&i.addr).is_none_or(|until| *until <= now),
        };
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        match listed().filter(healthy).count() {
            0 => {
                let n = listed().count();
                (n > 0).then(|| listed().nth(turn % n).map(|i| i.addr))?
            }
            n => listed().filter(healthy).nth(turn % n).map(|i| i.addr),
        }
    }
}

#[async_trait]
impl Resolver for MdnsResolver {
    async fn resolve(&self, target: &Target) -> Result<SocketAddr, ResolveError> {
        let app = target.app_id.as_str();
        if let Some(a) = self.pick(target) {
            return Ok(a);
        }
        // Cold: the browse started at boot may not have seen it yet.
        let deadline = Instant::now() + self.cold_wait;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(a) = self.pick(target) {
                return Ok(a);
            }
        }
        Err(ResolveError::NotFound(app.to_string()))
    }

    fn report_failure(&self, _: &Target, addr: SocketAddr) {
        let mut s = self.suspects.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.retain(|_, until| *until > now);
        s.insert(addr, now + SUSPECT_FOR);
    }
}

impl Drop for MdnsResolver {
    fn drop(&mut self) {
        self.withdraw();
        let _ = self.daemon.shutdown().map_err(|e| failed("", e));
    }
}
