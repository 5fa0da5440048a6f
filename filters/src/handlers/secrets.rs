//! The secrets building block: `GET /v1.0/secrets/{store}/{name}`, `/bulk`,
//! gRPC `GetSecret`/`GetBulkSecret`, with the Configuration's
//! `spec.secrets.scopes` access policy applied per store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use spar_components::secrets::{Secret, SecretStore};

use crate::{ApiError, ApiResult, Response, Runtime};

#[derive(Debug)]
pub enum SecretsRequest {
    Get {
        store: String,
        name: String,
        metadata: BTreeMap<String, String>,
    },
    Bulk {
        store: String,
        metadata: BTreeMap<String, String>,
    },
}

#[derive(Debug)]
pub enum SecretsResponse {
    One(Secret),
    Bulk(BTreeMap<String, Secret>),
}

/// One store's access policy, precomputed from `spec.secrets.scopes`.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub default_deny: bool,
    pub allowed: HashSet<String>,
    pub denied: HashSet<String>,
}

impl Access {
    /// Dapr's rule: a non-empty allow list is the whole truth; otherwise the
    /// deny list, then the default.
    pub fn allows(&self, name: &str) -> bool {
        if !self.allowed.is_empty() {
            return self.allowed.contains(name);
        }
        if self.denied.contains(name) {
            return false;
        }
        !self.default_deny
    }
}

#[derive(Default)]
pub struct SecretStores {
    map: HashMap<String, (Arc<dyn SecretStore>, Access)>,
}

impl SecretStores {
    pub fn insert(&mut self, name: String, store: Arc<dyn SecretStore>, access: Access) {
        self.map.insert(name, (store, access));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn SecretStore>> {
        self.map.get(name).map(|(s, _)| s)
    }

    fn entry(&self, name: &str) -> Result<&(Arc<dyn SecretStore>, Access), ApiError> {
        if self.map.is_empty() {
            return Err(ApiError::SecretStoresNotConfigured);
        }
        self.map
            .get(name)
            .ok_or_else(|| ApiError::SecretStoreNotFound(name.into()))
    }
}

pub async fn handle(rt: &Runtime, req: SecretsRequest) -> ApiResult {
    let live = rt.live();
    let out = match req {
        SecretsRequest::Get {
            store,
            name,
            metadata,
        } => {
            let (s, access) = live.secrets.entry(&store)?;
            if !access.allows(&name) {
                return Err(ApiError::SecretPermissionDenied { name, store });
            }
            let started = std::time::Instant::now();
            let got = s.get(&name, &metadata).await;
            if let Some(m) = &rt.metrics {
                m.secret(&store, "get", got.is_ok(), started);
            }
            let secret = got.map_err(|e| ApiError::SecretGet {
                name: name.clone(),
                store: store.clone(),
                reason: e.to_string(),
            })?;
            SecretsResponse::One(secret)
        }
        SecretsRequest::Bulk { store, metadata } => {
            let (s, access) = live.secrets.entry(&store)?;
            let started = std::time::Instant::now();
            let got = s.bulk_get(&metadata).await;
            if let Some(m) = &rt.metrics {
                m.secret(&store, "bulk_get", got.is_ok(), started);
            }
            let mut all = got.map_err(|e| ApiError::SecretGet {
                name: "bulk".into(),
                store: store.clone(),
                reason: e.to_string(),
            })?;
            // Bulk answers leave out what the policy forbids, as daprd does.
            all.retain(|name, _| access.allows(name));
            SecretsResponse::Bulk(all)
        }
    };
    Ok(Response::Secrets(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn access_rules() {
        let open = Access::default();
        assert!(open.allows("x"));
        let deny_all = Access {
            default_deny: true,
            ..Default::default()
        };
        assert!(!deny_all.allows("x"));
        let allow_list = Access {
            default_deny: false,
            allowed: set(&["a"]),
            denied: set(&["a"]),
        };
        assert!(allow_list.allows("a") && !allow_list.allows("b"));
        let deny_list = Access {
            default_deny: false,
            allowed: set(&[]),
            denied: set(&["b"]),
        };
        assert!(deny_list.allows("a") && !deny_list.allows("b"));
    }
}
