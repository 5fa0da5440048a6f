//! The state store kind: the [`StateStore`] trait and its implementations.
//!
//! Keys reaching a store are already prefixed by the state handler
//! (`appid||key` and friends); stores never see or strip prefixes.

mod common;
pub mod encryption;
mod error;
pub mod memory;
pub mod mysql;
pub mod postgres;
pub mod query;
pub mod redis;
mod sql_store;
pub mod sqlite;
mod types;

pub mod conformance;

pub use error::StateError;
pub use query::{Filter, Query, QueryResponse, QueryResult, SortOrder};
pub use types::*;

use async_trait::async_trait;

/// A state store backend. All methods are cancellation-safe and must never
/// block the async runtime (blocking drivers run on `spawn_blocking`).
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Optional capabilities this store implements, reported in metadata.
    fn features(&self) -> Features;

    /// Checks the backend is reachable and ready (tables created), as
    /// daprd's component `Init` does: a store that fails here fails the
    /// sidecar's start-up unless its component says `ignoreErrors`. Run once
    /// at start, bounded by the component's `initTimeout`.
    async fn init(&self) -> Result<(), StateError> {
        Ok(())
    }

    /// Reads one key; `Ok(None)` when it does not exist (or has expired).
    async fn get(&self, req: &GetRequest) -> Result<Option<Item>, StateError>;

    /// Reads many keys. Missing keys come back with `data: None`; a per-key
    /// failure goes in `error` rather than failing the whole call.
    async fn bulk_get(&self, reqs: &[GetRequest]) -> Result<Vec<BulkItem>, StateError> {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(match self.get(r).await {
                Ok(item) => BulkItem::found(r.key.clone(), item),
                Err(e) => BulkItem::failed(r.key.clone(), e.to_string()),
            });
        }
        Ok(out)
    }

    /// Writes one key, honouring `etag` and `concurrency`.
    async fn set(&self, req: &SetRequest) -> Result<(), StateError>;

    /// Deletes one key, honouring `etag`. Deleting a missing key without an
    /// ETag succeeds; with an ETag it is a mismatch (unless
    /// [`StateStore::missing_key_etag_conflicts`] says otherwise).
    async fn delete(&self, req: &DeleteRequest) -> Result<(), StateError>;

    /// Whether a write or delete carrying an ETag for a key that does not
    /// exist is an ETag mismatch (the default, and most of daprd's stores)
    /// or goes through (daprd's Redis store, whose script only compares an
    /// ETag with a version that exists).
    fn missing_key_etag_conflicts(&self) -> bool {
        true
    }

    /// Applies all operations atomically, or none. Stores without the
    /// `TRANSACTIONAL` feature keep this default.
    async fn transact(&self, _ops: &[Operation]) -> Result<(), StateError> {
        Err(StateError::NotSupported("transactions"))
    }

    /// Runs a query over the JSON values whose key starts with `prefix`.
    /// Stores without the `QUERY_API` feature keep this default.
    async fn query(&self, _prefix: &str, _q: &Query) -> Result<QueryResponse, StateError> {
        Err(StateError::NotSupported("query"))
    }
}
