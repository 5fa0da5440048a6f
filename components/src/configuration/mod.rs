//! The configuration kind: read-only key/value items with a version and
//! metadata, and subscriptions to their changes (the values are written
//! outside Dapr: `redis-cli`, `psql`, `sqlite3`).
//!
//! A store pushes the changes it sees into a [`Feed`], which keeps only
//! the latest item per key until the consumer takes them: a slow consumer
//! (an app, a gRPC stream) sees the newest values, never an unbounded
//! queue of old ones.

pub mod conformance;
pub mod postgres;
pub mod redis;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::{watch, Notify};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0}")]
    Backend(String),
    #[error("{0}")]
    Invalid(String),
}

/// One configuration item. A deleted key is reported to subscribers as an
/// item with everything empty (as daprd's Redis store does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    pub value: String,
    pub version: String,
    pub metadata: HashMap<String, String>,
}

pub type Items = HashMap<String, Item>;

#[derive(Debug, Clone, Default)]
pub struct SubscribeRequest {
    /// Empty: every key of the store.
    pub keys: Vec<String>,
    pub metadata: HashMap<String, String>,
}

/// Most keys a feed holds for a consumer that has not caught up; changes
/// to further keys are dropped (and counted in the log) until it does.
pub const MAX_PENDING_KEYS: usize = 10_000;

/// Changes waiting for one subscriber, the latest per key.
#[derive(Default)]
pub struct Feed {
    state: Mutex<FeedState>,
    ready: Notify,
}

#[derive(Default)]
struct FeedState {
    pending: Items,
    closed: bool,
    dropped: u64,
}

impl Feed {
    pub fn new() -> Arc<Feed> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds changes; a key already waiting is replaced by its newer item.
    pub fn push(&self, items: Items) {
        if items.is_empty() {
            return;
        }
        let mut s = self.lock();
        if s.closed {
            return;
        }
        for (k, v) in items {
            if s.pending.len() >= MAX_PENDING_KEYS && !s.pending.contains_key(&k) {
                s.dropped += 1;
                if s.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = s.dropped,
                        "configuration subscriber is behind on {MAX_PENDING_KEYS} keys: dropping changes"
                    );
                }
                continue;
            }
            s.pending.insert(k, v);
        }
        drop(s);
        self.ready.notify_one();
    }

    /// The changes gathered since the last call, waiting for some; `None`
    /// once the feed is closed.
    pub async fn next(&self) -> Option<Items> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                if !s.pending.is_empty() {
                    return Some(std::mem::take(&mut s.pending));
                }
            }
            notified.await;
        }
    }

    /// Ends the feed: [`Feed::next`] returns `None`, pushes are ignored.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.pending.clear();
        drop(s);
        self.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// A store's running watch for one subscription; it stops when closed or
/// dropped.
pub struct Watch {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    pub fn new(stop: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) -> Self {
        Watch {
            stop,
            task: Some(task),
        }
    }

    /// Stops watching and waits until the watcher has let go of its
    /// connection.
    pub async fn close(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[async_trait]
pub trait ConfigurationStore: Send + Sync + 'static {
    /// Reaches the backend, as daprd's component `Init` does (bounded by
    /// the component's `initTimeout`).
    async fn init(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The items of `keys` that exist (every item when `keys` is empty).
    async fn get(
        &self,
        keys: &[String],
        metadata: &HashMap<String, String>,
    ) -> Result<Items, ConfigError>;

    /// Starts pushing changes of `req.keys` into `feed`. Returns once the
    /// watch is in place, so a change made after it is seen. A watch
    /// survives backend outages: it reconnects with backoff and reports
    /// what changed meanwhile.
    async fn subscribe(
        &self,
        req: &SubscribeRequest,
        feed: Arc<Feed>,
    ) -> Result<Watch, ConfigError>;
}

/// Waits for `d`, or returns `true` early when `stop` turned true.
pub(crate) async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// How often an idle watch checks its connection is alive (a server gone
/// without closing it would otherwise leave the watch waiting forever).
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(30);

/// Reconnection backoff: 100 ms doubling to 2 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << attempt.min(5)).min(Duration::from_secs(2))
}

/// The items of `now` that differ from `before` (new or changed), and the
/// keys of `before` missing from `now` as empty items (deleted); `before`
/// becomes `now`. Limited to `keys` when there are any.
pub(crate) fn diff(before: &mut Items, now: Items, keys: &[String]) -> Items {
    let mut out = Items::new();
    for (k, v) in &now {
        if before.get(k) != Some(v) {
            out.insert(k.clone(), v.clone());
        }
    }
    for k in before.keys() {
        if !now.contains_key(k) && (keys.is_empty() || keys.contains(k)) {
            out.insert(k.clone(), Item::default());
        }
    }
    *before = now;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: &str) -> Item {
        Item {
            value: v.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn feed_keeps_the_latest_per_key() {
        let f = Feed::new();
        f.push(Items::from([("a".into(), item("1"))]));
        f.push(Items::from([
            ("a".into(), item("2")),
            ("b".into(), item("x")),
        ]));
        let got = f.next().await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["a"].value, "2");
        f.close();
        assert!(f.next().await.is_none());
        f.push(Items::from([("a".into(), item("3"))]));
        assert!(f.next().await.is_none());
    }

    #[tokio::test]
    async fn feed_is_bounded_by_keys() {
        let f = Feed::new();
        for i in 0..MAX_PENDING_KEYS + 50 {
            f.push(Items::from([(format!("k{i}"), item("v"))]));
        }
        // Keys already waiting still take newer values.
        f.push(Items::from([("k0".into(), item("new"))]));
        let got = f.next().await.unwrap();
        assert_eq!(got.len(), MAX_PENDING_KEYS);
        assert_eq!(got["k0"].value, "new");
    }

    #[tokio::test]
    async fn next_waits_for_a_push() {
        let f = Feed::new();
        let g = f.clone();
        let t = tokio::spawn(async move { g.next().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        f.push(Items::from([("a".into(), item("1"))]));
        assert_eq!(t.await.unwrap().unwrap()["a"].value, "1");
    }

    #[test]
    fn diff_reports_changes_and_deletes() {
        let mut before = Items::from([("a".into(), item("1")), ("b".into(), item("2"))]);
        let now = Items::from([("a".into(), item("1")), ("c".into(), item("3"))]);
        let d = diff(&mut before, now, &[]);
        assert_eq!(d.len(), 2);
        assert_eq!(d["b"], Item::default());
        assert_eq!(d["c"].value, "3");
        assert_eq!(before.len(), 2);
    }
}
