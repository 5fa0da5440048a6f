//! `state.in-memory`: a process-local store with ETags, TTLs, transactions
//! and queries. Data lives as long as the sidecar.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::common::{check_etag, expiry};
use super::query::{sort_cmp, Query, QueryResponse, QueryResult};
use super::{
    Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest, StateError,
    StateStore,
};
use crate::build::{BuildContext, BuildError};
use crate::sweep::every;

struct Entry {
    data: Vec<u8>,
    version: u64,
    expires_at: Option<SystemTime>,
}

impl Entry {
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

#[derive(Default)]
pub struct MemoryStore {
    // Never held across an await: every method locks, works, unlocks.
    map: RwLock<HashMap<String, Entry>>,
}

pub fn build(
    _c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let store = Arc::new(MemoryStore::new());
    // Drop expired entries in the background so memory doesn't grow with
    // keys nobody reads again.
    every(
        Arc::downgrade(&store),
        Duration::from_secs(10),
        |s| async move { s.purge_expired() },
    );
    Ok(store)
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn purge_expired(&self) {
        let now = SystemTime::now();
        self.write().retain(|_, e| e.live(now));
    }

    fn apply(
        map: &mut HashMap<String, Entry>,
        ops: &[Operation],
        now: SystemTime,
    ) -> Result<(), StateError> {
        // Check everything first, against the state as each earlier op leaves
        // it, so a failure anywhere leaves the map untouched.
        let mut pending: HashMap<&str, Option<u64>> = HashMap::new();
        for op in ops {
            let key = op.key();
            let current = match pending.get(key) {
                Some(v) => *v,
                None => map.get(key).filter(|e| e.live(now)).map(|e| e.version),
            };
            match op {
                Operation::Upsert(r) => {
                    check_etag(
                        current.map(|v| v as i64),
                        r.etag.as_deref(),
                        r.concurrency == Concurrency::FirstWrite,
                    )?;
                    pending.insert(key, Some(current.unwrap_or(0) + 1));
                }
                Operation::Delete(r) => {
                    check_etag(current.map(|v| v as i64), r.etag.as_deref(), false)?;
                    pending.insert(key, None);
                }
            }
        }
        for op in ops {
            match op {
                Operation::Upsert(r) => {
                    let version = map
                        .get(&r.key)
                        .filter(|e| e.live(now))
                        .map_or(1, |e| e.version + 1);
                    map.insert(
                        r.key.clone(),
                        Entry {
                            data: r.value.clone(),
                            version,
                            expires_at: expiry(r.ttl, now),
                        },
                    );
                }
                Operation::Delete(r) => {
                    map.remove(&r.key);
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    fn features(&self) -> Features {
        Features::ALL
    }

    async fn get(&self, req: &GetRequest) -> Result<Option<Item>, StateError> {
        let now = SystemTime::now();
        Ok(self
            .read()
            .get(&req.key)
            .filter(|e| e.live(now))
            .map(|e| Item {
                data: e.data.clone(),
                etag: Some(e.version.to_string()),
                expires_at: e.expires_at,
            }))
    }

    async fn set(&self, req: &SetRequest) -> Result<(), StateError> {
        Self::apply(
            &mut self.write(),
            std::slice::from_ref(&Operation::Upsert(req.clone())),
            SystemTime::now(),
        )
    }

    async fn delete(&self, req: &DeleteRequest) -> Result<(), StateError> {
        Self::apply(
            &mut self.write(),
            &[Operation::Delete(req.clone())],
            SystemTime::now(),
        )
    }

    async fn transact(&self, ops: &[Operation]) -> Result<(), StateError> {
        Self::apply(&mut self.write(), ops, SystemTime::now())
    }

    async fn query(&self, prefix: &str, q: &Query) -> Result<QueryResponse, StateError> {
        let now = SystemTime::now();
        let mut rows: Vec<(String, serde_json::Value, Vec<u8>, u64)> = {
            let map = self.read();
            map.iter()
                .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
                .filter_map(|(k, e)| {
                    let doc: serde_json::Value = serde_json::from_slice(&e.data).ok()?;
                    q.filter
                        .as_ref()
                        .is_none_or(|f| f.matches(&doc))
                        .then(|| (k.clone(), doc, e.data.clone(), e.version))
                })
                .collect()
        };
        // Key order breaks ties so paging is stable.
        rows.sort_by(|a, b| sort_cmp(&q.sort, &a.1, &b.1).then_with(|| a.0.cmp(&b.0)));
        let offset = q.offset().min(rows.len());
        let end = q
            .page
            .limit
            .map_or(rows.len(), |l| offset.saturating_add(l).min(rows.len()));
        let token = (end < rows.len() && q.page.limit.is_some()).then(|| end.to_string());
        let results = rows
            .drain(offset..end)
            .map(|(key, _, data, v)| QueryResult {
                key,
                data,
                etag: Some(v.to_string()),
            })
            .collect();
        Ok(QueryResponse { results, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(Arc::new(MemoryStore::new()), "mem-unit").await;
    }

    #[test]
    fn purge_drops_expired_entries() {
        let s = MemoryStore::new();
        s.write().insert(
            "k".into(),
            Entry {
                data: vec![],
                version: 1,
                expires_at: Some(SystemTime::now() - Duration::from_secs(1)),
            },
        );
        s.purge_expired();
        assert!(s.read().is_empty());
    }
}
