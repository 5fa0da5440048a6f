//! `configuration.redis`: string keys holding `value||version` (daprd's
//! layout), read with `MGET`; changes arrive as keyspace notifications
//! (`__keyspace@{db}__:{key}`), each answered with a fresh read of the key.
//! Notifications are off by default on a Redis server: the store turns on
//! the ones it needs (`K`, `g`, `$`, `x`, `e`), keeping the server's other
//! flags, when the server allows `CONFIG SET`. A subscription reconnects
//! after an outage (and turns notifications on again: a restarted server
//! forgets them) and reports the keys that changed while it was away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use spar_config::Component;
use tokio::sync::watch;

use super::{
    backoff, diff, sleep_or_stop, ConfigError, ConfigurationStore, Feed, Item, Items,
    SubscribeRequest, Watch, KEEPALIVE,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::redis_wire::{Commands, Limits, Reply, Wire};

/// The flags daprd's Redis configuration store sets: keyspace events for
/// generic commands, strings, expiry and eviction.
const NOTIFY_FLAGS: &str = "Kg$xe";

/// Most keys read in one `MGET` after a burst of notifications.
const MAX_BATCH: usize = 512;

pub struct RedisConfig {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    wire: Wire,
    client: redis::Client,
    db: i64,
    dial: Duration,
}

pub fn build(
    c: &Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn ConfigurationStore>, BuildError> {
    let m = Meta::new(c);
    let endpoint = crate::redis_wire::endpoint(c)?;
    let url = crate::redis_wire::connection_url(c)?;
    let client =
        redis::Client::open(url.as_str()).map_err(|e| m.error("redisHost", e.to_string()))?;
    let limits = Limits {
        dial: m.duration("dialTimeout", Duration::from_secs(5))?,
        read: m.duration("readTimeout", Duration::from_secs(3))?,
        retries: m.int("maxRetries", 3usize)?,
        max_backoff: m.duration("maxRetryBackoff", Duration::from_secs(2))?,
    };
    let db = endpoint.db;
    let wire = Wire::new(endpoint, limits).map_err(|e| m.error("enableTLS", e))?;
    Ok(Arc::new(RedisConfig {
        inner: Arc::new(Inner {
            name: c.name().to_string(),
            wire,
            client,
            db,
            dial: limits.dial,
        }),
    }))
}

fn failed(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Backend(format!("redis: {e}"))
}

/// daprd's layout: `value||version` (anything after a second `||` is
/// ignored, as there).
pub fn parse_value(raw: &str) -> (String, String) {
    let mut parts = raw.split("||");
    let value = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or_default().to_string();
    (value, version)
}

/// The server's `notify-keyspace-events` with the store's flags added, or
/// `None` when it already has them (`A` stands for `g$xe` and more).
fn merged_flags(current: &str) -> Option<String> {
    let mut flags = current.to_string();
    if !flags.contains('K') {
        flags.push('K');
    }
    if !flags.contains('A') {
        for f in NOTIFY_FLAGS.chars().skip(1) {
            if !flags.contains(f) {
                flags.push(f);
            }
        }
    }
    (flags != current).then_some(flags)
}

fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some(s.clone()),
        _ => None,
    }
}

impl Inner {
    async fn query(&self, cmds: &Commands) -> Result<Vec<Reply>, ConfigError> {
        self.wire.query(cmds, true).await.map_err(failed)
    }

    async fn get(&self, keys: &[String]) -> Result<Items, ConfigError> {
        let keys: Vec<String> = if keys.is_empty() {
            let mut c = Commands::default();
            c.push(&["KEYS", "*"]);
            match self.query(&c).await?.pop() {
                Some(Reply::Array(all)) => all.iter().filter_map(text).collect(),
                Some(Reply::Error(e)) => return Err(failed(e)),
                other => return Err(failed(format!("unexpected reply to KEYS: {other:?}"))),
            }
        } else {
            keys.to_vec()
        };
        if keys.is_empty() {
            return Ok(Items::new());
        }
        let mut c = Commands::with_capacity(16 + keys.iter().map(|k| k.len() + 16).sum::<usize>());
        c.command(keys.len() + 1).arg("MGET");
        for k in &keys {
            c.arg(k);
        }
        let values = match self.query(&c).await?.pop() {
            Some(Reply::Array(v)) if v.len() == keys.len() => v,
            Some(Reply::Error(e)) => return Err(failed(e)),
            other => return Err(failed(format!("unexpected reply to MGET: {other:?}"))),
        };
        let mut out = Items::with_capacity(keys.len());
        // Missing keys and keys of other types (nil in MGET) are left out,
        // and so are empty values, as daprd does.
        for (k, v) in keys.into_iter().zip(values) {
            let Some(raw) = text(&v) else { continue };
            let (value, version) = parse_value(&raw);
            if !value.is_empty() {
                out.insert(
                    k,
                    Item {
                        value,
                        version,
                        metadata: HashMap::new(),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Turns on the keyspace notifications the store needs, keeping the
    /// server's other flags. A server that refuses `CONFIG` (managed
    /// Redis) is told about in the log: its operator must set them.
    async fn enable_notifications(&self) {
        let mut c = Commands::default();
        c.push(&["CONFIG", "GET", "notify-keyspace-events"]);
        let current = match self.query(&c).await.map(|mut r| r.pop()) {
            Ok(Some(Reply::Array(kv))) => kv.get(1).and_then(text).unwrap_or_default(),
            Ok(Some(Reply::Error(e))) => {
                tracing::warn!(component = %self.name, "cannot read notify-keyspace-events ({e}); subscriptions need \"{NOTIFY_FLAGS}\"");
                return;
            }
            _ => return,
        };
        let Some(flags) = merged_flags(&current) else {
            return;
        };
        let mut c = Commands::default();
        c.push(&["CONFIG", "SET", "notify-keyspace-events", &flags]);
        if let Ok(Some(Reply::Error(e))) = self.query(&c).await.map(|mut r| r.pop()) {
            tracing::warn!(component = %self.name, "cannot enable keyspace notifications ({e}); set notify-keyspace-events to \"{NOTIFY_FLAGS}\" on the server");
        }
    }

    fn channel_prefix(&self) -> String {
        format!("__keyspace@{}__:", self.db)
    }

    /// A pub/sub connection listening to the keys' notifications.
    async fn listen(&self, keys: &[String]) -> Result<redis::aio::PubSub, ConfigError> {
        let prefix = self.channel_prefix();
        let open = async {
            let mut ps = self.client.get_async_pubsub().await?;
            if keys.is_empty() {
                ps.psubscribe(format!("{prefix}*")).await?;
            } else {
                let channels: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
                ps.subscribe(channels).await?;
            }
            Ok::<_, redis::RedisError>(ps)
        };
        match tokio::time::timeout(self.dial, open).await {
            Ok(r) => r.map_err(failed),
            Err(_) => Err(failed(format!("no answer within {:?}", self.dial))),
        }
    }
}

#[async_trait]
impl ConfigurationStore for RedisConfig {
    async fn init(&self) -> Result<(), ConfigError> {
        let mut c = Commands::default();
        c.push(&["PING"]);
        match self.inner.query(&c).await?.pop() {
            Some(Reply::Error(e)) => Err(failed(e)),
            _ => Ok(()),
        }
    }

    async fn get(
        &self,
        keys: &[String],
        _metadata: &HashMap<String, String>,
    ) -> Result<Items, ConfigError> {
        self.inner.get(keys).await
    }

    async fn subscribe(
        &self,
        req: &SubscribeRequest,
        feed: Arc<Feed>,
    ) -> Result<Watch, ConfigError> {
        let inner = self.inner.clone();
        inner.enable_notifications().await;
        let ps = inner.listen(&req.keys).await?;
        // What the subscriber has seen: the values now. After an outage the
        // keys that differ from it are reported.
        let seen = inner.get(&req.keys).await?;
        let (stop_tx, stop) = watch::channel(false);
        let keys = req.keys.clone();
        let task = tokio::spawn(watch_keys(inner, keys, feed, ps, seen, stop));
        Ok(Watch::new(stop_tx, task))
    }
}

async fn watch_keys(
    inner: Arc<Inner>,
    keys: Vec<String>,
    feed: Arc<Feed>,
    mut ps: redis::aio::PubSub,
    mut seen: Items,
    mut stop: watch::Receiver<bool>,
) {
    let prefix = inner.channel_prefix();
    loop {
        {
            let (mut sink, mut messages) = ps.split();
            loop {
                let msg = tokio::select! {
                    _ = stop.changed() => return,
                    m = messages.next() => m,
                    _ = tokio::time::sleep(KEEPALIVE) => {
                        let ping = tokio::time::timeout(inner.dial, sink.ping::<redis::Value>()).await;
                        if matches!(ping, Ok(Ok(_))) {
                            continue;
                        }
                        None
                    }
                };
                let Some(msg) = msg else { break };
                // Notifications already waiting are read with this one:
                // one MGET for the batch keeps up with bursts of writes.
                let mut changed: Vec<String> = Vec::new();
                let mut lost = false;
                let mut next = Some(msg);
                while let Some(m) = next.take() {
                    if let Some(key) = m.get_channel_name().strip_prefix(&prefix) {
                        if !changed.iter().any(|k| k == key) {
                            changed.push(key.to_string());
                        }
                    }
                    if changed.len() >= MAX_BATCH {
                        break;
                    }
                    match messages.next().now_or_never() {
                        Some(Some(m)) => next = Some(m),
                        Some(None) => lost = true,
                        None => {}
                    }
                }
                if !changed.is_empty() {
                    match inner.get(&changed).await {
                        Ok(mut now) => {
                            let mut items = Items::with_capacity(changed.len());
                            for key in changed {
                                let item = now.remove(&key).unwrap_or_default();
                                if item == Item::default() {
                                    seen.remove(&key);
                                } else {
                                    seen.insert(key.clone(), item.clone());
                                }
                                items.insert(key, item);
                            }
                            feed.push(items);
                        }
                        Err(e) => {
                            tracing::warn!(component = %inner.name, "cannot read changed configuration keys: {e}")
                        }
                    }
                }
                if lost {
                    break;
                }
                if feed.is_closed() {
                    return;
                }
            }
        }
        tracing::warn!(component = %inner.name, "configuration subscription lost its Redis connection; reconnecting");
        let mut attempt = 0;
        ps = loop {
            if sleep_or_stop(&mut stop, backoff(attempt)).await {
                return;
            }
            attempt += 1;
            inner.enable_notifications().await;
            match inner.listen(&keys).await {
                Ok(p) => break p,
                Err(e) => tracing::debug!(component = %inner.name, "reconnecting: {e}"),
            }
        };
        tracing::info!(component = %inner.name, "configuration subscription reconnected to Redis");
        match inner.get(&keys).await {
            Ok(now) => feed.push(diff(&mut seen, now, &keys)),
            Err(e) => {
                tracing::warn!(component = %inner.name, "cannot re-read keys after reconnecting: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_and_version() {
        assert_eq!(parse_value("v||1"), ("v".into(), "1".into()));
        assert_eq!(parse_value("v"), ("v".into(), String::new()));
        assert_eq!(parse_value("a||b||c"), ("a".into(), "b".into()));
        assert_eq!(parse_value(""), (String::new(), String::new()));
    }

    #[test]
    fn notification_flags_are_added_not_replaced() {
        assert_eq!(merged_flags("").as_deref(), Some("Kg$xe"));
        assert_eq!(merged_flags("El").as_deref(), Some("ElKg$xe"));
        assert_eq!(merged_flags("KA"), None);
        assert_eq!(merged_flags("EA").as_deref(), Some("EAK"));
        assert_eq!(merged_flags("g$xeK"), None);
    }
}
