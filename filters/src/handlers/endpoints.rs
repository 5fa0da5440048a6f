//! Non-Dapr HTTP services as invocation targets: `HTTPEndpoint` resources
//! (called by name, with their headers) and full URLs
//! (`/v1.0/invoke/https://host/method/…`). Parsed once at start; host names
//! are resolved with a short cache so a call does not wait on DNS each time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::ApiError;

/// A parsed `http(s)://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (may be empty).
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Option<BaseUrl> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            (false, url.strip_prefix("http://")?)
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_string(), p.parse().ok()?)
            }
            _ => (authority.to_string(), default_port),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() || host.contains(['@', ' ']) {
            return None;
        }
        Some(BaseUrl {
            tls,
            host,
            port,
            prefix: prefix.to_string(),
        })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// One `HTTPEndpoint`, with its headers (secrets already resolved).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base: BaseUrl,
    pub headers: Arc<[(String, String)]>,
}

/// Where an external call goes, as the front end needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub addr: SocketAddr,
    pub tls: bool,
    /// SNI and `Host`.
    pub host: String,
    pub authority: String,
    pub path: String,
    pub headers: Arc<[(String, String)]>,
}

#[derive(Default)]
pub struct Endpoints {
    by_name: HashMap<String, Endpoint>,
    dns: RwLock<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

const DNS_TTL: Duration = Duration::from_secs(30);

impl Endpoints {
    pub fn new(by_name: HashMap<String, Endpoint>) -> Self {
        Endpoints {
            by_name,
            dns: RwLock::default(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }

    /// The target for `app_id` when it names an HTTPEndpoint or is a full URL.
    pub async fn target(&self, app_id: &str, method: &str) -> Option<Result<External, ApiError>> {
        let (base, headers) = match self.by_name.get(app_id) {
            Some(e) => (e.base.clone(), e.headers.clone()),
            None if app_id.starts_with("http://") || app_id.starts_with("https://") => {
                match BaseUrl::parse(app_id) {
                    Some(b) => (b, Arc::from(Vec::new())),
                    None => {
                        return Some(Err(ApiError::DirectInvoke {
                            app_id: app_id.to_string(),
                            reason: "invalid URL".into(),
                        }))
                    }
                }
            }
            None => return None,
        };
        Some(
            self.lookup(&base.host, base.port)
                .await
                .map(|addr| External {
                    addr,
                    tls: base.tls,
                    authority: base.authority(),
                    host: base.host.clone(),
                    path: format!("{}/{}", base.prefix, method.trim_start_matches('/')),
                    headers,
                })
                .map_err(|reason| ApiError::DirectInvoke {
                    app_id: app_id.to_string(),
                    reason,
                }),
        )
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        if let Some((a, at)) = self.dns.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if at.elapsed() < DNS_TTL {
                return Ok(*a);
            }
        }
        let found = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((host, port)),
        )
        .await
        .map_err(|_| format!("resolving {host}: timed out"))?
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolving {host}: no address"))?;
        self.dns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (found, Instant::now()));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://api.github.com").unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port, b.prefix.as_str()),
            (true, "api.github.com", 443, "")
        );
        assert_eq!(b.authority(), "api.github.com");
        let b = BaseUrl::parse("http://127.0.0.1:8080/api/v2/").unwrap();
        assert_eq!((b.tls, b.port, b.prefix.as_str()), (false, 8080, "/api/v2"));
        assert_eq!(b.authority(), "127.0.0.1:8080");
        let b = BaseUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 9000));
        assert_eq!(b.authority(), "[::1]:9000");
        assert!(BaseUrl::parse("ftp://x").is_none());
        assert!(BaseUrl::parse("http://").is_none());
        assert!(BaseUrl::parse("http://user@host").is_none());
    }

    #[tokio::test]
    async fn targets() {
        let mut m = HashMap::new();
        m.insert(
            "ext".to_string(),
            Endpoint {
                base: BaseUrl::parse("http://127.0.0.1:9/base").unwrap(),
                headers: Arc::from(vec![("x-k".to_string(), "v".to_string())]),
            },
        );
        let e = Endpoints::new(m);
        let t = e.target("ext", "items/1").await.unwrap().unwrap();
        assert_eq!(t.path, "/base/items/1");
        assert_eq!(t.headers.len(), 1);
        let t = e.target("http://127.0.0.1:7", "/x").await.unwrap().unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (7, "/x"));
        assert!(e.target("orders", "x").await.is_none());
    }
}
