//! `secretstores.local.env`: the sidecar's environment variables as secrets.
//! Metadata `prefix` limits which variables are visible (and is stripped).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Secret, SecretError, SecretStore};
use crate::build::{BuildContext, BuildError};

#[derive(Debug, Default)]
pub struct EnvStore {
    prefix: String,
}

impl EnvStore {
    pub fn new(prefix: &str) -> Self {
        EnvStore {
            prefix: prefix.to_string(),
        }
    }
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn SecretStore>, BuildError> {
    Ok(Arc::new(EnvStore::new(
        &c.meta("prefix").unwrap_or_default(),
    )))
}

#[async_trait]
impl SecretStore for EnvStore {
    async fn get(&self, name: &str, _: &BTreeMap<String, String>) -> Result<Secret, SecretError> {
        let var = format!("{}{name}", self.prefix);
        match std::env::var(&var) {
            Ok(v) => Ok(Secret::from([(name.to_string(), v)])),
            Err(_) => Err(SecretError::NotFound(name.to_string())),
        }
    }

    async fn bulk_get(
        &self,
        _: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, SecretError> {
        Ok(std::env::vars()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(self.prefix.as_str())?.to_string();
                (!name.is_empty()).then(|| (name.clone(), Secret::from([(name, v)])))
            })
            .collect())
    }
}
