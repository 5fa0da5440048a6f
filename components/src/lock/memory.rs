//! `lock.in-memory`: locks held in this sidecar's memory. Only callers of
//! the same sidecar see them; for tests and single-process apps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{LockError, LockStore, UnlockStatus};
use crate::build::{BuildContext, BuildError};

#[derive(Default)]
pub struct MemoryLock {
    /// resource → (owner, expires at).
    held: Mutex<HashMap<String, (String, Instant)>>,
}

pub fn build(
    _c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn LockStore>, BuildError> {
    Ok(Arc::new(MemoryLock::default()))
}

impl MemoryLock {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl LockStore for MemoryLock {
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expiry: Duration,
    ) -> Result<bool, LockError> {
        let now = Instant::now();
        let mut held = self.held();
        // Expired locks go when the map is touched, so it never grows with
        // resources nobody releases.
        if held.len() > 1024 {
            held.retain(|_, (_, until)| *until > now);
        }
        match held.get(resource) {
            Some((_, until)) if *until > now => Ok(false),
            _ => {
                held.insert(resource.to_string(), (owner.to_string(), now + expiry));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let now = Instant::now();
        let mut held = self.held();
        match held.get(resource) {
            Some((_, until)) if *until <= now => {
                held.remove(resource);
                Ok(UnlockStatus::LockDoesNotExist)
            }
            None => Ok(UnlockStatus::LockDoesNotExist),
            Some((o, _)) if o != owner => Ok(UnlockStatus::LockBelongsToOthers),
            Some(_) => {
                held.remove(resource);
                Ok(UnlockStatus::Success)
            }
        }
    }
}
