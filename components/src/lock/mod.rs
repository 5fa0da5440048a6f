//! The distributed lock kind: the [`LockStore`] trait and its stores.
//!
//! A lock is a resource id held by one owner until it is released or its
//! expiry passes; taking it never waits (try-lock). The runtime has already
//! namespaced the resource id (`lock||{app}||{id}`, daprd's key layout) when
//! a store sees it.

pub mod conformance;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LockError {
    #[error("{0}")]
    Backend(String),
}

/// What releasing a lock found, with daprd's numbers
/// (`UnlockResponse.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockStatus {
    Success = 0,
    LockDoesNotExist = 1,
    LockBelongsToOthers = 2,
    InternalError = 3,
}

#[async_trait]
pub trait LockStore: Send + Sync + 'static {
    /// Reaches the backend, as daprd's `InitLockStore` does; bounded by the
    /// component's `initTimeout`.
    async fn init(&self) -> Result<(), LockError> {
        Ok(())
    }

    /// Takes `resource` for `owner` for `expiry` unless someone holds it
    /// (the owner itself included: locks are not re-entrant, as in Dapr).
    /// `Ok(false)`: held by someone.
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expiry: Duration,
    ) -> Result<bool, LockError>;

    /// Releases `resource` if `owner` holds it.
    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, LockError>;
}
