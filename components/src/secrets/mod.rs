//! The secret store kind: the [`SecretStore`] trait and its implementations.

pub mod conformance;
pub mod local_env;
pub mod local_file;

use std::collections::BTreeMap;

use async_trait::async_trait;
use thiserror::Error;

/// One secret: its keys and values (most stores have a single key, the
/// secret's own name).
pub type Secret = BTreeMap<String, String>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret {0:?} not found")]
    NotFound(String),
    #[error("{0}")]
    Backend(String),
}

#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// One secret by name.
    async fn get(
        &self,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Secret, SecretError>;

    /// Every secret the store holds, by name.
    async fn bulk_get(
        &self,
        metadata: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, SecretError>;
}
