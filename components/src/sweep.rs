//! Periodic sweeps of expired entries (state stores' TTLs, lock rows):
//! daprd's `cleanupInterval` metadata and the background task that runs a
//! sweep while its component lives.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::build::BuildError;

/// `cleanupInterval` metadata: a Go duration or seconds, default 1 h; `0`
/// or negative turns the sweeper off.
pub fn cleanup_interval(c: &spar_config::Component) -> Result<Option<Duration>, BuildError> {
    let m = crate::meta::Meta::new(c);
    match m.str("cleanupInterval") {
        Some(t) if t.trim().starts_with('-') => Ok(None),
        _ => Ok(
            Some(m.duration("cleanupInterval", Duration::from_secs(3600))?)
                .filter(|d| !d.is_zero()),
        ),
    }
}

/// Runs `task` every `period` while `target` is alive (a `Weak`, so the
/// sweeper never keeps a dropped store around). Needs a tokio runtime;
/// without one (plain unit tests) nothing is scheduled.
pub fn every<T, F, Fut>(target: Weak<T>, period: Duration, task: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(t) = target.upgrade() else { return };
            task(t).await;
        }
    });
}
