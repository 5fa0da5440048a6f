//! The configuration conformance suite: the same cases for every
//! `ConfigurationStore`. Values are written from outside the store, as
//! users do (`redis-cli`, `psql`, `sqlite3`), through a [`Writer`] each
//! backend's test provides. Keys carry a unique prefix so shared servers
//! run the suite beside other traffic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;

/// Writes items the way an operator would, bypassing the store.
#[async_trait]
pub trait Writer: Send + Sync {
    async fn set(&self, key: &str, value: &str, version: &str);
    async fn delete(&self, key: &str);
}

/// How long a change may take to reach a subscriber in these cases (the
/// integration tests check the 100 ms the API promises; this only has to
/// tell "arrived" from "never").
const ARRIVAL: Duration = Duration::from_secs(5);

/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(400);

async fn next_within(feed: &Feed, d: Duration) -> Option<Items> {
    tokio::time::timeout(d, feed.next()).await.ok().flatten()
}

/// Waits until `key` arrives with `value` (other keys and older values in
/// between are returned too, for checks).
async fn wait_for(feed: &Feed, key: &str, value: &str) -> Vec<Items> {
    let deadline = Instant::now() + ARRIVAL;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(items) = next_within(feed, left).await else {
            panic!("{key}={value:?} did not arrive within {ARRIVAL:?}; got {got:?}");
        };
        let done = items.get(key).is_some_and(|i| i.value == value);
        got.push(items);
        if done {
            return got;
        }
    }
}

/// Runs every case. `isolated`: the store holds only this test's keys, so
/// a get of all keys can be checked exactly.
pub async fn run_all(
    store: Arc<dyn ConfigurationStore>,
    w: &dyn Writer,
    prefix: &str,
    isolated: bool,
) {
    store.init().await.expect("init");
    get_keys(&*store, w, prefix).await;
    if isolated {
        get_all(&*store, w, prefix).await;
    }
    subscribe_sees_changes(&*store, w, prefix).await;
    delete_is_an_empty_item(&*store, w, prefix).await;
    every_subscriber_gets_every_change(&*store, w, prefix).await;
    closed_watch_stops(&*store, w, prefix).await;
    subscribe_to_all_keys(&*store, w, prefix).await;
}

fn none() -> HashMap<String, String> {
    HashMap::new()
}

pub async fn get_keys(s: &dyn ConfigurationStore, w: &dyn Writer, prefix: &str) {
    let (a, b, c) = (
        format!("{prefix}.get.a"),
        format!("{prefix}.get.b"),
        format!("{prefix}.get.missing"),
    );
    w.set(&a, "alpha", "1").await;
    w.set(&b, "beta", "7").await;
    let got = s
        .get(&[a.clone(), b.clone(), c.clone()], &none())
        .await
        .expect("get");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[&a].value, "alpha");
    assert_eq!(got[&a].version, "1");
    assert_eq!(got[&b].value, "beta");
    assert_eq!(got[&b].version, "7");
    assert!(s.get(&[c], &none()).await.expect("get").is_empty());
}

pub async fn get_all(s: &dyn ConfigurationStore, w: &dyn Writer, prefix: &str) {
    let k = format!("{prefix}.all.x");
    w.set(&k, "x", "1").await;
    let got = s.get(&[], &none()).await.expect("get all");
    assert_eq!(got[&k].value, "x");
    assert!(got.len() >= 3, "{got:?}");
}

pub async fn subscribe_sees_changes(s: &dyn ConfigurationStore, w: &dyn Writer, prefix: &str) {
    let (k, other) = (format!("{prefix}.sub.k"), format!("{prefix}.sub.other"));
    w.set(&k, "v1", "1").await;
    let feed = Feed::new();
    let _watch = s
        .subscribe(
            &SubscribeRequest {
                keys: vec![k.clone()],
                metadata: none(),
            },
            feed.clone(),
        )
        .await
        .expect("subscribe");
    w.set(&other, "not watched", "1").await;
    w.set(&k, "v2", "2").await;
    let got = wait_for(&feed, &k, "v2").await;
    assert!(
        got.iter().all(|i| !i.contains_key(&other)),
        "an unsubscribed key arrived: {got:?}"
    );
    let last = got.last().unwrap();
    assert_eq!(last[&k].version, "2");
    w.set(&k, "v3", "3").await;
    wait_for(&feed, &k, "v3").await;
}

pub async fn delete_is_an_empty_item(s: &dyn ConfigurationStore, w: &dyn Writer, prefix: &str) {
    let k = format!("{prefix}.del.k");
    w.set(&k, "here", "1").await;
    let feed = Feed::new();
    let _watch = s
        .subscribe(
            &SubscribeRequest {
                keys: vec![k.clone()],
                metadata: none(),
            },
            feed.clone(),
        )
        .await
        .expect("subscribe");
    w.delete(&k).await;
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let items = next_within(&feed, left)
            .await
            .expect("the delete did not arrive");
        if items.get(&k) == Some(&Item::default()) {
            break;
        }
    }
    assert!(s.get(&[k], &none()).await.expect("get").is_empty());
}

pub async fn every_subscriber_gets_every_change(
    s: &dyn ConfigurationStore,
    w: &dyn Writer,
    prefix: &str,
) {
    let k = format!("{prefix}.many.k");
    w.set(&k, "0", "0").await;
    let feeds: Vec<Arc<Feed>> = (0..3).map(|_| Feed::new()).collect();
    let mut watches = Vec::new();
    for f in &feeds {
        watches.push(
            s.subscribe(
                &SubscribeRequest {
                    keys: vec![k.clone()],
                    metadata: none(),
                },
                f.clone(),
            )
            .await
            .expect("subscribe"),
        );
    }
    for n in 1..=3 {
        let v = n.to_string();
        w.set(&k, &v, &v).await;
        for f in &feeds {
            wait_for(f, &k, &v).await;
        }
    }
}

pub async fn closed_watch_stops(s: &dyn ConfigurationStore, w: &dyn Writer, prefix: &str) {
    let k = format!("{prefix}.close.k");
    w.set(&k, "a", "1").await;
    let feed = Feed::new();
    let watch = s
        .subscribe(
            &SubscribeRequest {
                keys: vec![k.clone()],
                metadata: none(),
            },
            feed.clone(),
        )
        .await
        .expect("subscribe");
    watch.close().await;
    w.set(&k, "b", "2").await;
    assert!(
        next_within(&feed, QUIET).await.is_none(),
        "a change arrived after the watch closed"
    );
}

pub async fn subscribe_to_all_keys(s: &dyn ConfigurationStore, w: &dyn Writer, prefix: &str) {
    let k = format!("{prefix}.any.k");
    let feed = Feed::new();
    let _watch = s
        .subscribe(&SubscribeRequest::default(), feed.clone())
        .await
        .expect("subscribe to all keys");
    w.set(&k, "new", "1").await;
    wait_for(&feed, &k, "new").await;
}
