//! The distributed lock building block: `POST /v1.0-alpha1/lock/{store}`,
//! `POST /v1.0-alpha1/unlock/{store}`, gRPC `TryLockAlpha1`/`UnlockAlpha1`.
//! Checks the request as daprd does (in its order), namespaces the
//! resource id with the store's `keyPrefix` strategy and calls the store
//! under its outbound resiliency policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spar_components::lock::{LockError, LockStore, UnlockStatus};

use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::{ApiError, ApiResult, Response, Runtime};

#[derive(Debug)]
pub enum LockRequest {
    TryLock {
        store: String,
        resource_id: String,
        owner: String,
        expiry_in_seconds: i32,
    },
    Unlock {
        store: String,
        resource_id: String,
        owner: String,
    },
}

#[derive(Debug)]
pub enum LockResponse {
    TryLock { success: bool },
    Unlock { status: UnlockStatus },
}

/// How resource ids are namespaced in a store (`keyPrefix` metadata),
/// daprd's layout: `lock||{prefix}||{id}`, or `lock||{id}` for `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPrefix(String);

impl LockPrefix {
    /// daprd's strategies, any case: `appid` (default), `name`, `none`, or
    /// any other value (lower-cased, as daprd does) as the prefix itself.
    pub fn from_strategy(
        strategy: Option<&str>,
        app_id: &str,
        store: &str,
    ) -> Result<Self, String> {
        let s = strategy.unwrap_or("appid").to_lowercase();
        if s.contains("||") {
            return Err(format!("input key/keyPrefix '{s}' can't contain '||'"));
        }
        Ok(LockPrefix(match s.as_str() {
            "none" => "lock||".into(),
            "name" => format!("lock||{store}||"),
            "appid" if app_id.is_empty() => "lock||".into(),
            "appid" => format!("lock||{app_id}||"),
            custom => format!("lock||{custom}||"),
        }))
    }

    fn apply(&self, id: &str) -> Result<String, String> {
        if id.contains("||") {
            return Err(format!("input key/keyPrefix '{id}' can't contain '||'"));
        }
        Ok(format!("{}{id}", self.0))
    }
}

pub struct LockEntry {
    pub store: Arc<dyn LockStore>,
    pub prefix: LockPrefix,
}

/// The lock stores by component name.
#[derive(Default)]
pub struct LockStores {
    map: HashMap<String, LockEntry>,
}

impl LockStores {
    pub fn insert(&mut self, name: String, store: Arc<dyn LockStore>, prefix: LockPrefix) {
        self.map.insert(name, LockEntry { store, prefix });
    }

    /// A store and its prefix, to carry over unchanged on reload.
    pub fn entry(&self, name: &str) -> Option<(Arc<dyn LockStore>, LockPrefix)> {
        self.map
            .get(name)
            .map(|e| (e.store.clone(), e.prefix.clone()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// daprd's checks, in daprd's order: stores configured, resource id,
/// owner, then the store by name.
fn entry<'a>(
    live: &'a Live,
    store: &str,
    resource_id: &str,
    owner: &str,
) -> Result<&'a LockEntry, ApiError> {
    if live.locks.is_empty() {
        return Err(ApiError::LockStoresNotConfigured);
    }
    if resource_id.is_empty() {
        return Err(ApiError::LockResourceIdEmpty(store.into()));
    }
    if owner.is_empty() {
        return Err(ApiError::LockOwnerEmpty(store.into()));
    }
    live.locks
        .map
        .get(store)
        .ok_or_else(|| ApiError::LockStoreNotFound(store.into()))
}

/// A store call under the component's outbound resiliency policy, traced
/// as a child span of the API call (`lock/{store}/{op}`, as state calls
/// are; daprd has none).
async fn guarded<T, F, Fut>(
    live: &Live,
    store: &str,
    name: &'static str,
    op: F,
) -> Result<T, LockError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LockError>>,
{
    let mut span = crate::trace::filter::child_span(
        &live.tracer,
        || format!("lock/{store}/{name}"),
        crate::trace::SpanKind::Client,
    );
    let r = guarded_inner(live, store, op).await;
    if let (Some(s), Err(e)) = (span.as_mut(), &r) {
        s.error(e.to_string());
    }
    r
}

async fn guarded_inner<T, F, Fut>(live: &Live, store: &str, op: F) -> Result<T, LockError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LockError>>,
{
    let Some(p) = live.resiliency.component_outbound(store) else {
        let mut op = op;
        return op().await;
    };
    p.run(op, |r| match r {
        Err(_) => Verdict::Failed(None),
        Ok(_) => Verdict::Success,
    })
    .await
    .map_err(|r| match r {
        Refused::Failed(e) => e,
        Refused::Timeout(d) => {
            LockError::Backend(format!("timeout after {d:?} (resiliency policy)"))
        }
        Refused::BreakerOpen => LockError::Backend("circuit breaker is open".into()),
    })
}

pub async fn handle(rt: &Runtime, req: LockRequest) -> ApiResult {
    let live = rt.live();
    let out = match req {
        LockRequest::TryLock {
            store,
            resource_id,
            owner,
            expiry_in_seconds,
        } => {
            if expiry_in_seconds <= 0 {
                return Err(ApiError::LockExpiryNotPositive(store));
            }
            let e = entry(&live, &store, &resource_id, &owner)?;
            let key = e.prefix.apply(&resource_id).map_err(ApiError::TryLock)?;
            let expiry = Duration::from_secs(expiry_in_seconds as u64);
            let success = guarded(&live, &store, "trylock", || {
                e.store.try_lock(&key, &owner, expiry)
            })
            .await
            .map_err(|err| ApiError::TryLock(err.to_string()))?;
            LockResponse::TryLock { success }
        }
        LockRequest::Unlock {
            store,
            resource_id,
            owner,
        } => {
            let e = entry(&live, &store, &resource_id, &owner)?;
            let key = e.prefix.apply(&resource_id).map_err(ApiError::Unlock)?;
            let status = guarded(&live, &store, "unlock", || e.store.unlock(&key, &owner))
                .await
                .map_err(|err| ApiError::Unlock(err.to_string()))?;
            LockResponse::Unlock { status }
        }
    };
    Ok(Response::Lock(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_as_daprd() {
        let p = |s| LockPrefix::from_strategy(s, "app", "store").unwrap();
        assert_eq!(p(None).apply("r").unwrap(), "lock||app||r");
        assert_eq!(p(Some("AppID")).apply("r").unwrap(), "lock||app||r");
        assert_eq!(p(Some("name")).apply("r").unwrap(), "lock||store||r");
        assert_eq!(p(Some("none")).apply("r").unwrap(), "lock||r");
        assert_eq!(p(Some("MyPrefix")).apply("r").unwrap(), "lock||myprefix||r");
        assert!(p(None).apply("a||b").is_err());
        assert!(LockPrefix::from_strategy(Some("a||b"), "app", "s").is_err());
    }
}
