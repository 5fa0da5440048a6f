//! Kubernetes DNS name resolution: app `x` in namespace `ns` is the service
//! `x-dapr.ns.svc.{clusterDomain}`, on the sidecars' internal port (the same
//! on every sidecar of a cluster, as in Dapr).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver as Dns, TokioResolver};

use crate::{ResolveError, Resolver, Target};

pub struct KubernetesResolver {
    dns: TokioResolver,
    cluster_domain: String,
    namespace: String,
    port: u16,
    next: AtomicUsize,
}

impl KubernetesResolver {
    /// `dns_server`: `None` uses the system's resolv.conf (in a pod: the
    /// cluster DNS); `Some(addr)` asks that server (spar's `dnsServer`
    /// option, for tests and unusual clusters).
    pub fn new(
        dns_server: Option<SocketAddr>,
        cluster_domain: &str,
        namespace: &str,
        port: u16,
    ) -> Result<Self, String> {
        let dns = match dns_server {
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("DNS: {e}"))?
                .build(),
            Some(addr) => {
                let conn = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let ns = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
                );
                Dns::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
                .build()
            }
        }
        .map_err(|e| format!("DNS: {e}"))?;
        Ok(KubernetesResolver {
            dns,
            cluster_domain: cluster_domain.trim_matches('.').to_string(),
            namespace: namespace.to_string(),
            port,
            next: AtomicUsize::new(0),
        })
    }

    /// The service name Dapr's injector creates for an app.
    pub fn service_name(&self, t: &Target) -> String {
        let ns = t.namespace.as_deref().unwrap_or(&self.namespace);
        format!("{}-dapr.{ns}.svc.{}.", t.app_id, self.cluster_domain)
    }
}

#[async_trait]
impl Resolver for KubernetesResolver {
    async fn resolve(&self, target: &Target) -> Result<SocketAddr, ResolveError> {
        let name = self.service_name(target);
        let ips = self
            .dns
            .lookup_ip(name.as_str())
            .await
            .map_err(|e| ResolveError::Failed {
                app_id: target.app_id.clone(),
                message: format!("{name}: {e}"),
            })?;
        let ips: Vec<_> = ips.iter().collect();
        if ips.is_empty() {
            return Err(ResolveError::NotFound(target.app_id.clone()));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % ips.len();
        Ok(SocketAddr::new(ips[i], self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn service_names() {
        let r = KubernetesResolver::new(
            Some("127.0.0.1:1".parse().unwrap()),
            "cluster.local.",
            "default",
            50002,
        )
        .unwrap();
        let t = |app: &str, ns: Option<&str>| Target {
            app_id: app.into(),
            namespace: ns.map(Into::into),
        };
        assert_eq!(
            r.service_name(&t("orders", None)),
            "orders-dapr.default.svc.cluster.local."
        );
        assert_eq!(
            r.service_name(&t("orders", Some("prod"))),
            "orders-dapr.prod.svc.cluster.local."
        );
    }
}
