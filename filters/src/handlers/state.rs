//! The state building block: one implementation behind both the HTTP and the
//! gRPC face. Applies the store's key prefix, parses TTL metadata, calls the
//! store and records component metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use spar_components::state::{
    self as st, Concurrency, Consistency, Operation, StateError, StateStore, Ttl,
};

use crate::error::StateOp;
use crate::metrics::ComponentMetrics;
use crate::outbox;
use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::{ApiError, ApiResult, Response, Runtime};

pub type Metadata = HashMap<String, String>;

#[derive(Debug)]
pub enum StateRequest {
    Get {
        store: String,
        key: String,
        consistency: Consistency,
        metadata: Metadata,
    },
    BulkGet {
        store: String,
        keys: Vec<String>,
        metadata: Metadata,
    },
    Save {
        store: String,
        items: Vec<SaveItem>,
    },
    Delete {
        store: String,
        item: DeleteItem,
    },
    BulkDelete {
        store: String,
        items: Vec<DeleteItem>,
    },
    Transaction {
        store: String,
        ops: Vec<TxOp>,
        metadata: Metadata,
    },
    Query {
        store: String,
        query: Vec<u8>,
        metadata: Metadata,
    },
}

impl StateRequest {
    /// The store the request names.
    pub fn store(&self) -> &str {
        match self {
            StateRequest::Get { store, .. }
            | StateRequest::BulkGet { store, .. }
            | StateRequest::Save { store, .. }
            | StateRequest::Delete { store, .. }
            | StateRequest::BulkDelete { store, .. }
            | StateRequest::Transaction { store, .. }
            | StateRequest::Query { store, .. } => store,
        }
    }
}

#[derive(Debug, Default)]
pub struct SaveItem {
    pub key: String,
    pub value: Vec<u8>,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    pub metadata: Metadata,
}

#[derive(Debug, Default)]
pub struct DeleteItem {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub metadata: Metadata,
}

#[derive(Debug)]
pub enum TxOp {
    Upsert(SaveItem),
    Delete(DeleteItem),
}

#[derive(Debug)]
pub enum StateResponse {
    /// `None`: the key does not exist (HTTP 204, gRPC empty data).
    Item(Option<ItemOut>),
    Bulk(Vec<BulkOut>),
    Query(QueryOut),
}

impl StateResponse {
    pub fn http_status(&self) -> u16 {
        match self {
            StateResponse::Item(None) => 204,
            _ => 200,
        }
    }
}

#[derive(Debug)]
pub struct ItemOut {
    pub data: Vec<u8>,
    pub etag: Option<String>,
    /// Response metadata, e.g. `ttlExpireTime`.
    pub metadata: Metadata,
}

#[derive(Debug)]
pub struct BulkOut {
    pub key: String,
    pub data: Option<Vec<u8>>,
    pub etag: Option<String>,
    pub error: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug)]
pub struct QueryOut {
    pub results: Vec<(String, Vec<u8>, Option<String>)>,
    pub token: Option<String>,
    pub metadata: Metadata,
}

/// How keys are namespaced in a store (`keyPrefix` component metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPrefix {
    /// `keyPrefix: none`: keys are stored as given.
    None,
    /// A fixed prefix including the `||` separator, e.g. `myapp||`.
    Fixed(String),
}

impl KeyPrefix {
    /// Dapr's strategies: `appid` (default), `name`, `namespace`, `none`, or
    /// any other string used as the prefix itself.
    pub fn from_strategy(
        strategy: Option<&str>,
        app_id: &str,
        store: &str,
        namespace: Option<&str>,
    ) -> Result<KeyPrefix, String> {
        let p = match strategy.map(str::trim).filter(|s| !s.is_empty()) {
            None => app_id.to_string(),
            Some(s) if s.eq_ignore_ascii_case("appid") => app_id.to_string(),
            Some(s) if s.eq_ignore_ascii_case("none") => return Ok(KeyPrefix::None),
            Some(s) if s.eq_ignore_ascii_case("name") => store.to_string(),
            Some(s) if s.eq_ignore_ascii_case("namespace") => match namespace {
                Some(ns) => format!("{ns}.{app_id}"),
                None => app_id.to_string(),
            },
            Some(custom) => custom.to_string(),
        };
        if p.contains("||") {
            return Err(format!("keyPrefix {p:?} must not contain '||'"));
        }
        if p.is_empty() {
            return Ok(KeyPrefix::None);
        }
        Ok(KeyPrefix::Fixed(format!("{p}||")))
    }

    fn apply(&self, store: &str, key: &str) -> Result<String, ApiError> {
        match self {
            KeyPrefix::None => Ok(key.to_string()),
            KeyPrefix::Fixed(p) => {
                if key.contains("||") {
                    return Err(ApiError::StateInvalidKey {
                        store: store.into(),
                        key: key.into(),
                    });
                }
                let mut s = String::with_capacity(p.len() + key.len());
                s.push_str(p);
                s.push_str(key);
                Ok(s)
            }
        }
    }

    fn strip(&self, key: String) -> String {
        match self {
            KeyPrefix::Fixed(p) if key.starts_with(p.as_str()) => key[p.len()..].to_string(),
            _ => key,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            KeyPrefix::None => "",
            KeyPrefix::Fixed(p) => p,
        }
    }
}

pub struct StoreEntry {
    pub store: Arc<dyn StateStore>,
    pub prefix: KeyPrefix,
}

/// The state stores by component name, looked up once per request.
#[derive(Default)]
pub struct StateStores {
    map: HashMap<String, StoreEntry>,
    metrics: Option<ComponentMetrics>,
}

impl StateStores {
    pub fn insert(&mut self, name: String, store: Arc<dyn StateStore>, prefix: KeyPrefix) {
        self.map.insert(name, StoreEntry { store, prefix });
    }

    /// A store and its key prefix, to carry over unchanged on reload.
    pub fn entry(&self, name: &str) -> Option<(Arc<dyn StateStore>, KeyPrefix)> {
        self.map
            .get(name)
            .map(|e| (e.store.clone(), e.prefix.clone()))
    }

    /// Records `dapr_component_state_*` metrics for every store call.
    pub fn with_metrics(&mut self, m: ComponentMetrics) {
        self.metrics = Some(m);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `app_id` goes into the error's details, as daprd's HTTP lookup puts
    /// it there (empty: left out, as its query API does).
    fn get(&self, name: &str, app_id: &str) -> Result<&StoreEntry, ApiError> {
        if self.map.is_empty() {
            return Err(ApiError::StateStoresNotConfigured {
                store: name.into(),
                app_id: app_id.into(),
            });
        }
        self.map
            .get(name)
            .ok_or_else(|| ApiError::StateStoreNotFound {
                store: name.into(),
                app_id: app_id.into(),
            })
    }

    fn record(&self, store: &str, op: &str, ok: bool, started: Instant) {
        if let Some(m) = &self.metrics {
            m.state(store, op, ok, started);
        }
    }
}

/// A store call under the component's outbound resiliency policy, if any.
/// Only backend failures count (and are retried): an ETag mismatch or a bad
/// request is the caller's answer, not the store's trouble.
///
/// Traced as a child span of the API call (`state/{store}/{op}`), covering
/// every attempt.
async fn guarded<T, F, Fut>(
    rt: &Live,
    store: &str,
    name: &'static str,
    op: F,
) -> Result<T, StateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StateError>>,
{
    let mut span = crate::trace::filter::child_span(
        &rt.tracer,
        || format!("state/{store}/{name}"),
        crate::trace::SpanKind::Client,
    );
    if let Some(s) = span.as_mut() {
        s.attr("db.system", "state");
        s.attr("db.name", store.to_owned());
        s.attr("db.operation", name);
    }
    let r = guarded_inner(rt, store, op).await;
    if let (Some(s), Err(e)) = (span.as_mut(), &r) {
        s.error(e.to_string());
    }
    r
}

async fn guarded_inner<T, F, Fut>(rt: &Live, store: &str, op: F) -> Result<T, StateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StateError>>,
{
    let Some(p) = rt.resiliency.component_outbound(store) else {
        let mut op = op;
        return op().await;
    };
    p.run(op, |r| match r {
        Err(StateError::Backend(_)) => Verdict::Failed(None),
        _ => Verdict::Success,
    })
    .await
    .map_err(|r| match r {
        Refused::Failed(e) => e,
        Refused::Timeout(d) => {
            StateError::Backend(format!("timeout after {d:?} (resiliency policy)"))
        }
        Refused::BreakerOpen => StateError::Backend("circuit breaker is open".into()),
    })
}

/// `concurrency` as Dapr spells it over HTTP.
pub fn parse_concurrency(s: &str) -> Result<Concurrency, ApiError> {
    match s {
        "" | "last-write" => Ok(Concurrency::LastWrite),
        "first-write" => Ok(Concurrency::FirstWrite),
        o => Err(ApiError::MalformedRequest(format!(
            "invalid concurrency {o:?}: expected first-write or last-write"
        ))),
    }
}

/// `consistency` as Dapr spells it over HTTP.
pub fn parse_consistency(s: &str) -> Result<Consistency, ApiError> {
    match s {
        "" | "eventual" => Ok(Consistency::Eventual),
        "strong" => Ok(Consistency::Strong),
        o => Err(ApiError::MalformedRequest(format!(
            "invalid consistency {o:?}: expected eventual or strong"
        ))),
    }
}

fn state_err(op: StateOp, store: &str, key: Option<&str>, e: StateError) -> ApiError {
    ApiError::State {
        op,
        store: store.into(),
        key: key.map(str::to_owned),
        source: e,
    }
}

/// `ttlInSeconds` metadata: a positive integer, or -1 for never.
fn parse_ttl(md: &Metadata) -> Result<Option<Ttl>, StateError> {
    let Some(v) = md.get("ttlInSeconds") else {
        return Ok(None);
    };
    match v.trim().parse::<i64>() {
        Ok(-1) => Ok(Some(Ttl::Never)),
        Ok(n) if n > 0 => Ok(Some(Ttl::Seconds(n as u64))),
        Ok(0) => Ok(None),
        _ => Err(StateError::InvalidRequest(format!(
            "ttlInSeconds must be a whole number of seconds, or -1 for no expiry; got {v:?}"
        ))),
    }
}

fn ttl_metadata(expires: Option<SystemTime>) -> Metadata {
    let mut md = Metadata::new();
    if let Some(t) = expires {
        md.insert(
            "ttlExpireTime".into(),
            humantime::format_rfc3339_seconds(t).to_string(),
        );
    }
    md
}

fn to_set(store: &str, prefix: &KeyPrefix, it: SaveItem) -> Result<st::SetRequest, ApiError> {
    if it.key.is_empty() {
        return Err(ApiError::MalformedRequest(
            r#""key" is a required field"#.into(),
        ));
    }
    Ok(st::SetRequest {
        key: prefix.apply(store, &it.key)?,
        value: it.value,
        etag: it.etag.filter(|e| !e.is_empty()),
        concurrency: it.concurrency,
        consistency: it.consistency,
        ttl: None,
        metadata: it.metadata,
    })
}

fn to_delete(
    store: &str,
    prefix: &KeyPrefix,
    it: DeleteItem,
) -> Result<st::DeleteRequest, ApiError> {
    if it.key.is_empty() {
        return Err(ApiError::MalformedRequest(
            r#""key" is a required field"#.into(),
        ));
    }
    Ok(st::DeleteRequest {
        key: prefix.apply(store, &it.key)?,
        etag: it.etag.filter(|e| !e.is_empty()),
        concurrency: it.concurrency,
        metadata: it.metadata,
    })
}

/// `protocol` tells how values were handed over (JSON text over HTTP, raw
/// bytes over gRPC), which the outbox's events follow as daprd's do.
pub async fn handle(rt: &Runtime, req: StateRequest, protocol: crate::Protocol) -> ApiResult {
    let live = rt.live();
    let stores = &live.state;
    let started = Instant::now();
    let out = match req {
        StateRequest::Get {
            store,
            key,
            consistency,
            metadata,
        } => {
            let e = stores.get(&store, &rt.app_id)?;
            let g = st::GetRequest {
                key: e.prefix.apply(&store, &key)?,
                consistency,
                metadata,
            };
            let r = guarded(&live, &store, "get", || e.store.get(&g)).await;
            stores.record(&store, "get", r.is_ok(), started);
            let item = r.map_err(|err| state_err(StateOp::Get, &store, Some(&key), err))?;
            StateResponse::Item(item.map(|i| ItemOut {
                data: i.data,
                etag: i.etag,
                metadata: ttl_metadata(i.expires_at),
            }))
        }
        StateRequest::BulkGet {
            store,
            keys,
            metadata,
        } => {
            let e = stores.get(&store, &rt.app_id)?;
            let reqs = keys
                .iter()
                .map(|k| {
                    Ok(st::GetRequest {
                        key: e.prefix.apply(&store, k)?,
                        consistency: Consistency::Eventual,
                        metadata: metadata.clone(),
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            let r = guarded(&live, &store, "bulkGet", || e.store.bulk_get(&reqs)).await;
            stores.record(&store, "bulk_get", r.is_ok(), started);
            let items = r.map_err(|err| state_err(StateOp::BulkGet, &store, None, err))?;
            StateResponse::Bulk(
                items
                    .into_iter()
                    .map(|b| {
                        let (data, etag, md) = match b.item {
                            Some(i) => (Some(i.data), i.etag, ttl_metadata(i.expires_at)),
                            None => (None, None, Metadata::new()),
                        };
                        BulkOut {
                            key: e.prefix.strip(b.key),
                            data,
                            etag,
                            error: b.error,
                            metadata: md,
                        }
                    })
                    .collect(),
            )
        }
        StateRequest::Save { store, items } => {
            let e = stores.get(&store, &rt.app_id)?;
            let mut reqs = Vec::with_capacity(items.len());
            for it in items {
                let ttl = parse_ttl(&it.metadata)
                    .map_err(|err| state_err(StateOp::Save, &store, None, err))?;
                let mut s = to_set(&store, &e.prefix, it)?;
                s.ttl = ttl;
                reqs.push(s);
            }
            for s in &reqs {
                let r = guarded(&live, &store, "set", || e.store.set(s)).await;
                stores.record(&store, "set", r.is_ok(), started);
                r.map_err(|err| state_err(StateOp::Save, &store, None, err))?;
            }
            return Ok(Response::Empty);
        }
        StateRequest::Delete { store, item } => {
            let e = stores.get(&store, &rt.app_id)?;
            let key = item.key.clone();
            let d = to_delete(&store, &e.prefix, item)?;
            let r = guarded(&live, &store, "delete", || e.store.delete(&d)).await;
            stores.record(&store, "delete", r.is_ok(), started);
            r.map_err(|err| state_err(StateOp::Delete, &store, Some(&key), err))?;
            return Ok(Response::Empty);
        }
        StateRequest::BulkDelete { store, items } => {
            let e = stores.get(&store, &rt.app_id)?;
            let reqs = items
                .into_iter()
                .map(|it| to_delete(&store, &e.prefix, it))
                .collect::<Result<Vec<_>, _>>()?;
            for d in &reqs {
                let r = guarded(&live, &store, "delete", || e.store.delete(d)).await;
                stores.record(&store, "delete", r.is_ok(), started);
                r.map_err(|err| state_err(StateOp::BulkDelete, &store, None, err))?;
            }
            return Ok(Response::Empty);
        }
        StateRequest::Transaction {
            store,
            mut ops,
            metadata,
        } => {
            let e = stores.get(&store, &rt.app_id)?;
            if !e.store.features().transactional {
                return Err(state_err(
                    StateOp::Transaction,
                    &store,
                    None,
                    StateError::NotSupported("transactions"),
                ));
            }
            // Outbox: projections are not saved; each upsert's event is
            // taken before its item is consumed (with its own metadata).
            let outbox = live.outbox.get(&store);
            let events = outbox.map(|_| {
                let projections = outbox::take_projections(&mut ops);
                let form = match protocol {
                    crate::Protocol::Http => outbox::ValueForm::Json,
                    crate::Protocol::Grpc => outbox::ValueForm::Raw,
                };
                outbox::event_parts(&ops, &projections, form)
            });
            let mut tx = Vec::with_capacity(ops.len());
            for op in ops {
                tx.push(match op {
                    TxOp::Upsert(mut it) => {
                        merge(&mut it.metadata, &metadata);
                        let ttl = parse_ttl(&it.metadata)
                            .map_err(|err| state_err(StateOp::Transaction, &store, None, err))?;
                        let mut s = to_set(&store, &e.prefix, it)?;
                        s.ttl = ttl;
                        Operation::Upsert(s)
                    }
                    TxOp::Delete(mut it) => {
                        merge(&mut it.metadata, &metadata);
                        Operation::Delete(to_delete(&store, &e.prefix, it)?)
                    }
                });
            }
            if let (Some(c), Some(events)) = (outbox, events) {
                let trace = crate::trace::filter::current();
                let traceparent = trace.as_ref().map(|t| t.traceparent()).unwrap_or_default();
                let tracestate = trace
                    .as_ref()
                    .and_then(|t| t.tracestate.as_deref())
                    .unwrap_or_default();
                tx.extend(
                    outbox::publish_internal(
                        &live,
                        &rt.app_id,
                        c,
                        events,
                        &traceparent,
                        tracestate,
                    )
                    .await?,
                );
            }
            let r = guarded(&live, &store, "transaction", || e.store.transact(&tx)).await;
            stores.record(&store, "transaction", r.is_ok(), started);
            r.map_err(|err| state_err(StateOp::Transaction, &store, None, err))?;
            return Ok(Response::Empty);
        }
        StateRequest::Query {
            store,
            query,
            metadata,
        } => {
            let e = stores.get(&store, "")?;
            if !e.store.features().query {
                return Err(state_err(
                    StateOp::Query,
                    &store,
                    None,
                    StateError::NotSupported("query"),
                ));
            }
            let q = st::Query::parse(&query)
                .map_err(|err| state_err(StateOp::Query, &store, None, err))?;
            let r = guarded(&live, &store, "query", || {
                e.store.query(e.prefix.as_str(), &q)
            })
            .await;
            stores.record(&store, "query", r.is_ok(), started);
            let res = r.map_err(|err| state_err(StateOp::Query, &store, None, err))?;
            StateResponse::Query(QueryOut {
                results: res
                    .results
                    .into_iter()
                    .map(|r| (e.prefix.strip(r.key), r.data, r.etag))
                    .collect(),
                token: res.token,
                metadata,
            })
        }
    };
    Ok(Response::State(out))
}

/// Request-level metadata applies to every item that doesn't set the key itself.
fn merge(item: &mut Metadata, req: &Metadata) {
    for (k, v) in req {
        item.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_strategies() {
        let p = |s| KeyPrefix::from_strategy(s, "app", "store", Some("ns")).unwrap();
        assert_eq!(p(None), KeyPrefix::Fixed("app||".into()));
        assert_eq!(p(Some("appid")), KeyPrefix::Fixed("app||".into()));
        assert_eq!(p(Some("name")), KeyPrefix::Fixed("store||".into()));
        assert_eq!(p(Some("namespace")), KeyPrefix::Fixed("ns.app||".into()));
        assert_eq!(p(Some("none")), KeyPrefix::None);
        assert_eq!(p(Some("custom")), KeyPrefix::Fixed("custom||".into()));
        assert!(KeyPrefix::from_strategy(Some("a||b"), "app", "s", None).is_err());
    }

    #[test]
    fn keys_with_separator_are_rejected_when_prefixed() {
        let p = KeyPrefix::Fixed("app||".into());
        assert!(p.apply("s", "a||b").is_err());
        assert_eq!(p.apply("s", "k").unwrap(), "app||k");
        assert_eq!(p.strip("app||k".into()), "k");
        assert_eq!(KeyPrefix::None.apply("s", "a||b").unwrap(), "a||b");
    }

    #[test]
    fn ttl_parsing() {
        let md = |v: &str| Metadata::from([("ttlInSeconds".to_string(), v.to_string())]);
        assert_eq!(parse_ttl(&md("5")).unwrap(), Some(Ttl::Seconds(5)));
        assert_eq!(parse_ttl(&md("-1")).unwrap(), Some(Ttl::Never));
        assert!(parse_ttl(&md("-2")).is_err());
        assert!(parse_ttl(&md("abc")).is_err());
        assert_eq!(parse_ttl(&Metadata::new()).unwrap(), None);
    }
}
