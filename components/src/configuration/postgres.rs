//! `configuration.postgresql`: daprd's layout — a table the operator
//! creates with columns `KEY`, `VALUE`, `VERSION` (text) and `METADATA`
//! (JSON), several rows per key allowed (the highest numeric version
//! wins) — and daprd's notifications: a trigger on the table sends the row
//! as JSON (`{"data": {key, value, version, metadata}}`) with `pg_notify`
//! on the channel named by `notifyChannel` (component metadata, or
//! `pgNotifyChannel` in the subscribe request); each subscription keeps one
//! `LISTEN` connection, re-made after an outage, after which the keys that
//! changed meanwhile are read again and reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row as _};
use tokio::sync::watch;

use super::{
    backoff, diff, sleep_or_stop, ConfigError, ConfigurationStore, Feed, Item, Items,
    SubscribeRequest, Watch, KEEPALIVE,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::per_thread::PerThread;
use crate::sql::bounded;

pub struct PgConfig {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    opts: PgConnectOptions,
    pools: PerThread<PgPool>,
    table: String,
    channel: Option<String>,
    timeout: Duration,
}

/// daprd's rule for table and channel names: lower-case letters, digits,
/// `.`, `/`, `_`, at most 64 characters.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '/' | '_'))
}

/// daprd's rule for keys in a get: letters, digits, `.`, `/`, `_`.
fn valid_key(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_'))
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn ConfigurationStore>, BuildError> {
    let m = Meta::new(c);
    let opts = crate::sql::postgres::connect_options(&m.required("connectionString")?)
        .map_err(|e| m.error("connectionString", e))?;
    let table = m.required("table")?;
    if !valid_name(&table) {
        return Err(m.error(
            "table",
            format!("{table:?}: lower-case letters, digits, '.', '/', '_', at most 64"),
        ));
    }
    let channel = m.str("notifyChannel").or_else(|| m.str("pgNotifyChannel"));
    if let Some(ch) = &channel {
        if !valid_name(ch) {
            return Err(m.error(
                "notifyChannel",
                format!("{ch:?}: lower-case letters, digits, '.', '/', '_', at most 64"),
            ));
        }
    }
    let timeout = match m.str("timeoutInSeconds") {
        Some(_) => m.duration("timeoutInSeconds", Duration::from_secs(20))?,
        None => m.duration("timeout", Duration::from_secs(20))?,
    };
    if timeout < Duration::from_secs(1) {
        return Err(m.error("timeout", "must be at least 1s"));
    }
    let max_conns = m.int::<u32>("maxConns", 4)?;
    let pools = crate::sql::postgres::pools(opts.clone(), max_conns, timeout);
    Ok(Arc::new(PgConfig {
        inner: Arc::new(Inner {
            name: c.name().to_string(),
            opts,
            pools,
            table,
            channel,
            timeout,
        }),
    }))
}

fn failed(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Backend(e.to_string())
}

/// A JSON object's entries as strings (non-string values as their JSON).
fn string_map(v: &Value) -> HashMap<String, String> {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
        _ => HashMap::new(),
    }
}

/// A version as daprd compares them: a number, else -1.
fn numeric(version: &str) -> i64 {
    version.trim().parse().unwrap_or(-1)
}

impl Inner {
    async fn get(&self, keys: &[String]) -> Result<Items, ConfigError> {
        if let Some(bad) = keys.iter().find(|k| !valid_key(k)) {
            return Err(ConfigError::Invalid(format!("invalid key : '{bad}'")));
        }
        let cols = "key::text, value::text, version::text, metadata::text";
        let pool = self.pools.get();
        let rows = if keys.is_empty() {
            let sql = format!("SELECT {cols} FROM {}", self.table);
            bounded(
                "postgresql",
                self.timeout,
                sqlx::query(AssertSqlSafe(sql)).fetch_all(&pool),
            )
            .await
        } else {
            let sql = format!("SELECT {cols} FROM {} WHERE key = ANY($1)", self.table);
            bounded(
                "postgresql",
                self.timeout,
                sqlx::query(AssertSqlSafe(sql)).bind(keys).fetch_all(&pool),
            )
            .await
        }
        .map_err(failed)?;
        let mut out = Items::new();
        for r in rows {
            let key: String = r.try_get(0).map_err(failed)?;
            let value: Option<String> = r.try_get(1).map_err(failed)?;
            let version: Option<String> = r.try_get(2).map_err(failed)?;
            let metadata: Option<String> = r.try_get(3).map_err(failed)?;
            let item = Item {
                value: value.unwrap_or_default(),
                version: version.unwrap_or_default(),
                metadata: metadata
                    .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                    .map(|v| string_map(&v))
                    .unwrap_or_default(),
            };
            // Several rows of one key: the highest numeric version wins,
            // the first row among non-numeric ones (daprd's rule).
            match out.get(&key) {
                Some(prev) if numeric(&item.version) <= numeric(&prev.version) => {}
                _ => {
                    out.insert(key, item);
                }
            }
        }
        Ok(out)
    }

    /// A connection listening on `channel`, made within the timeout.
    async fn listen(&self, channel: &str) -> Result<PgListener, ConfigError> {
        let open = async {
            // A pool of one: the listener's own connection, apart from the
            // pools that serve gets.
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(self.timeout)
                .connect_lazy_with(self.opts.clone());
            let mut l = PgListener::connect_with(&pool).await?;
            // Reconnection is ours (fresh listener, keys re-read).
            l.eager_reconnect(false);
            l.listen(channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        bounded("postgresql", self.timeout, open)
            .await
            .map_err(failed)
    }
}

/// The changed row in a trigger's notification, when it is one of `keys`
/// (all keys when empty). A deleted row (`"action": "DELETE"`) is reported
/// as an empty item.
fn parse_notification(payload: &str, keys: &[String]) -> Option<(String, Item)> {
    let v: Value = serde_json::from_str(payload).ok()?;
    let data = v.get("data")?.as_object()?;
    let field = |name: &str| {
        data.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let as_text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let key = as_text(field("key"));
    if !keys.is_empty() && !keys.contains(&key) {
        return None;
    }
    let deleted = v
        .get("action")
        .and_then(Value::as_str)
        .is_some_and(|a| a.eq_ignore_ascii_case("DELETE"));
    if deleted {
        return Some((key, Item::default()));
    }
    Some((
        key,
        Item {
            value: as_text(field("value")),
            version: as_text(field("version")),
            metadata: field("metadata").map(string_map).unwrap_or_default(),
        },
    ))
}

#[async_trait]
impl ConfigurationStore for PgConfig {
    async fn init(&self) -> Result<(), ConfigError> {
        let pool = self.inner.pools.get();
        // `schema.table` is looked up in that schema (daprd looks for a
        // table named with the dot, which never exists).
        let (schema, table) = match self.inner.table.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, self.inner.table.as_str()),
        };
        let exists: bool = bounded(
            "postgresql",
            self.inner.timeout,
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_tables WHERE tablename = $1 AND ($2::text IS NULL OR schemaname = $2))",
            )
            .bind(table)
            .bind(schema)
            .fetch_one(&pool),
        )
        .await
        .map_err(failed)?;
        if !exists {
            return Err(ConfigError::Backend(format!(
                "postgreSQL configuration table '{}' does not exist",
                self.inner.table
            )));
        }
        Ok(())
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
        let channel = inner
            .channel
            .clone()
            .or_else(|| {
                req.metadata
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("pgNotifyChannel"))
                    .map(|(_, v)| v.clone())
            })
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "unable to subscribe to \"{}\". notifyChannel must be set in component metadata or request metadata",
                    inner.table
                ))
            })?;
        if !valid_name(&channel) {
            return Err(ConfigError::Invalid(format!(
                "invalid notifyChannel name {channel:?}. non-alphanumerics or upper cased names are not supported"
            )));
        }
        let listener = inner.listen(&channel).await?;
        let seen = inner.get(&req.keys).await?;
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(watch_channel(
            inner,
            channel,
            req.keys.clone(),
            feed,
            listener,
            seen,
            stop,
        ));
        Ok(Watch::new(stop_tx, task))
    }
}

async fn watch_channel(
    inner: Arc<Inner>,
    channel: String,
    keys: Vec<String>,
    feed: Arc<Feed>,
    mut listener: PgListener,
    mut seen: Items,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                n = listener.try_recv() => n,
                _ = tokio::time::sleep(KEEPALIVE) => {
                    // try_recv is cancel-safe: nothing is lost by probing.
                    let probe = bounded(
                        "postgresql",
                        inner.timeout,
                        sqlx::query("SELECT 1").execute(&mut listener),
                    )
                    .await;
                    match probe {
                        Ok(_) => continue,
                        Err(e) => Err(sqlx::Error::Protocol(e)),
                    }
                }
            };
            match next {
                Ok(Some(n)) => {
                    if let Some((key, item)) = parse_notification(n.payload(), &keys) {
                        if item == Item::default() {
                            seen.remove(&key);
                        } else {
                            seen.insert(key.clone(), item.clone());
                        }
                        feed.push(Items::from([(key, item)]));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(component = %inner.name, "LISTEN connection failed: {e}");
                    break;
                }
            }
            if feed.is_closed() {
                return;
            }
        }
        tracing::warn!(component = %inner.name, "configuration subscription lost its PostgreSQL connection; reconnecting");
        drop(listener);
        let mut attempt = 0;
        listener = loop {
            if sleep_or_stop(&mut stop, backoff(attempt)).await {
                return;
            }
            attempt += 1;
            match inner.listen(&channel).await {
                Ok(l) => break l,
                Err(e) => tracing::debug!(component = %inner.name, "reconnecting: {e}"),
            }
        };
        tracing::info!(component = %inner.name, "configuration subscription reconnected to PostgreSQL");
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
    fn names_and_keys() {
        assert!(valid_name("configtable"));
        assert!(valid_name("public.config_1"));
        assert!(!valid_name("Config"));
        assert!(!valid_name("a;drop"));
        assert!(!valid_name(""));
        assert!(valid_key("app/Key.1_x"));
        assert!(!valid_key("a'b"));
    }

    #[test]
    fn notifications() {
        let p = r#"{"table":"t","action":"UPDATE","data":{"key":"k","value":"v","version":"2","metadata":{"a":"b"}}}"#;
        let (k, item) = parse_notification(p, &[]).unwrap();
        assert_eq!(k, "k");
        assert_eq!(item.value, "v");
        assert_eq!(item.version, "2");
        assert_eq!(item.metadata["a"], "b");
        assert!(parse_notification(p, &["other".into()]).is_none());
        let d =
            r#"{"action":"DELETE","data":{"KEY":"k","VALUE":"v","VERSION":"2","METADATA":null}}"#;
        assert_eq!(
            parse_notification(d, &["k".into()]).unwrap().1,
            Item::default()
        );
        assert!(parse_notification("not json", &[]).is_none());
    }
}
