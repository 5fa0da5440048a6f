//! SPIFFE identities: `spiffe://{trust-domain}/ns/{namespace}/{app-id}`, the
//! identity sentry puts in every workload certificate and access control
//! checks callers against.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub app_id: String,
}

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, app_id: &str) -> Self {
        SpiffeId {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            app_id: app_id.to_string(),
        }
    }

    /// Parses `spiffe://td/ns/ns/id`; anything else is `None`.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let (td, ns_kw, ns, id) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || ns_kw != "ns" || [td, ns, id].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(SpiffeId::new(td, ns, id))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/{}",
            self.trust_domain, self.namespace, self.app_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = SpiffeId::parse("spiffe://public/ns/default/app1").unwrap();
        assert_eq!(id, SpiffeId::new("public", "default", "app1"));
        assert_eq!(id.to_string(), "spiffe://public/ns/default/app1");
        for bad in [
            "spiffe://public/ns/default",
            "spiffe://public/xx/default/app",
            "https://public/ns/default/app",
            "spiffe://public/ns//app",
            "spiffe://public/ns/default/app/extra",
        ] {
            assert!(SpiffeId::parse(bad).is_none(), "{bad}");
        }
    }
}
