//! `configuration.sqlite` (spar's own; daprd has none): the embedded
//! default `configstore`. A table `(key, value, version, metadata)` in a
//! SQLite file that users edit with `sqlite3`:
//!
//! ```sh
//! sqlite3 ~/.spar/data/spar-configuration.db \
//!   "INSERT OR REPLACE INTO configuration (key, value, version) VALUES ('greeting', 'hello', '1')"
//! ```
//!
//! SQLite has no change notification across processes, so while a
//! subscription runs, the store asks SQLite every `pollInterval` (default
//! 50 ms) whether another connection committed (`PRAGMA data_version`, a
//! read of the file header, no query) and only then reads the subscribed
//! keys and reports the ones that differ. No subscription: no polling.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

use super::{
    diff, sleep_or_stop, ConfigError, ConfigurationStore, Feed, Item, Items, SubscribeRequest,
    Watch,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

pub struct SqliteConfig {
    inner: Arc<Inner>,
}

struct Inner {
    target: String,
    table: String,
    timeout: Duration,
    poll: Duration,
    /// Reads for gets; opened lazily so a watcher's connection is its own.
    conn: Mutex<Option<Connection>>,
}

pub fn build(
    c: &spar_config::Component,
    ctx: &BuildContext,
) -> Result<Arc<dyn ConfigurationStore>, BuildError> {
    let m = Meta::new(c);
    let target = match m.str("connectionString") {
        Some(s) => s,
        None => ctx
            .data_dir
            .join("spar-configuration.db")
            .display()
            .to_string(),
    };
    let table = m.str_or("tableName", "configuration");
    if !crate::sql::valid_ident(&table) {
        return Err(m.error(
            "tableName",
            format!("{table:?} must be letters, digits and '_'"),
        ));
    }
    let poll = m.duration("pollInterval", Duration::from_millis(50))?;
    if poll < Duration::from_millis(5) {
        return Err(m.error("pollInterval", "must be at least 5ms"));
    }
    Ok(Arc::new(SqliteConfig {
        inner: Arc::new(Inner {
            target,
            table,
            timeout: m.duration("timeout", Duration::from_secs(20))?,
            poll,
            conn: Mutex::new(None),
        }),
    }))
}

fn failed(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Backend(format!("sqlite: {e}"))
}

impl Inner {
    fn open(&self) -> Result<Connection, ConfigError> {
        let in_memory = self.target == ":memory:" || self.target.contains("mode=memory");
        if !in_memory {
            let file = self.target.strip_prefix("file:").unwrap_or(&self.target);
            let file = file.split('?').next().unwrap_or(file);
            if let Some(dir) = PathBuf::from(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let c = Connection::open_with_flags(&self.target, flags).map_err(failed)?;
        c.busy_timeout(self.timeout).map_err(failed)?;
        Ok(c)
    }

    /// Creates the table (and WAL, so `sqlite3` writers and our readers
    /// don't block each other).
    fn create(&self) -> Result<(), ConfigError> {
        let c = self.open()?;
        let _ = c.pragma_update(None, "journal_mode", "WAL");
        c.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                key TEXT NOT NULL PRIMARY KEY,
                value TEXT NOT NULL,
                version TEXT NOT NULL DEFAULT '',
                metadata TEXT
             );",
            self.table
        ))
        .map_err(failed)?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        Ok(())
    }

    fn read(&self, c: &Connection, keys: &[String]) -> Result<Items, ConfigError> {
        let mut out = Items::new();
        let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, Item)> {
            let metadata: Option<String> = r.get(3)?;
            Ok((
                r.get(0)?,
                Item {
                    value: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    version: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    metadata: metadata
                        .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
                        .map(|v| match v {
                            serde_json::Value::Object(o) => o
                                .into_iter()
                                .map(|(k, v)| {
                                    let s = match v {
                                        serde_json::Value::String(s) => s,
                                        other => other.to_string(),
                                    };
                                    (k, s)
                                })
                                .collect(),
                            _ => HashMap::new(),
                        })
                        .unwrap_or_default(),
                },
            ))
        };
        let cols =
            "CAST(key AS TEXT), CAST(value AS TEXT), CAST(version AS TEXT), CAST(metadata AS TEXT)";
        if keys.is_empty() {
            let mut s = c
                .prepare_cached(&format!("SELECT {cols} FROM {}", self.table))
                .map_err(failed)?;
            for r in s.query_map([], row).map_err(failed)? {
                let (k, v) = r.map_err(failed)?;
                out.insert(k, v);
            }
        } else {
            let mut s = c
                .prepare_cached(&format!("SELECT {cols} FROM {} WHERE key = ?1", self.table))
                .map_err(failed)?;
            for k in keys {
                if let Some(r) = s.query_map([k], row).map_err(failed)?.next() {
                    let (k, v) = r.map_err(failed)?;
                    out.insert(k, v);
                }
            }
        }
        Ok(out)
    }

    fn get(&self, keys: &[String]) -> Result<Items, ConfigError> {
        let mut g = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(self.open()?);
        }
        match g.as_ref() {
            Some(c) => self.read(c, keys),
            None => Err(failed("no connection")),
        }
    }
}

fn data_version(c: &Connection) -> Result<i64, ConfigError> {
    c.pragma_query_value(None, "data_version", |r| r.get(0))
        .map_err(failed)
}

#[async_trait]
impl ConfigurationStore for SqliteConfig {
    async fn init(&self) -> Result<(), ConfigError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.create())
            .await
            .map_err(failed)?
    }

    async fn get(
        &self,
        keys: &[String],
        _metadata: &HashMap<String, String>,
    ) -> Result<Items, ConfigError> {
        let inner = self.inner.clone();
        let keys = keys.to_vec();
        tokio::task::spawn_blocking(move || inner.get(&keys))
            .await
            .map_err(failed)?
    }

    async fn subscribe(
        &self,
        req: &SubscribeRequest,
        feed: Arc<Feed>,
    ) -> Result<Watch, ConfigError> {
        let inner = self.inner.clone();
        let keys = req.keys.clone();
        // The watcher's own connection: data_version counts commits by
        // other connections, the store's included.
        let (conn, seen, version) = {
            let inner = inner.clone();
            let keys = keys.clone();
            tokio::task::spawn_blocking(move || {
                let c = inner.open()?;
                let v = data_version(&c)?;
                let seen = inner.read(&c, &keys)?;
                Ok::<_, ConfigError>((c, seen, v))
            })
            .await
            .map_err(failed)??
        };
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(poll(inner, keys, feed, conn, seen, version, stop));
        Ok(Watch::new(stop_tx, task))
    }
}

async fn poll(
    inner: Arc<Inner>,
    keys: Vec<String>,
    feed: Arc<Feed>,
    conn: Connection,
    mut seen: Items,
    mut version: i64,
    mut stop: watch::Receiver<bool>,
) {
    let conn = Arc::new(Mutex::new(conn));
    loop {
        if sleep_or_stop(&mut stop, inner.poll).await || feed.is_closed() {
            return;
        }
        let (c, i, k) = (conn.clone(), inner.clone(), keys.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let c = c.lock().unwrap_or_else(|e| e.into_inner());
            let v = data_version(&c)?;
            if v == version {
                return Ok((v, None));
            }
            Ok::<_, ConfigError>((v, Some(i.read(&c, &k)?)))
        })
        .await;
        match checked {
            Ok(Ok((v, now))) => {
                version = v;
                if let Some(now) = now {
                    feed.push(diff(&mut seen, now, &keys));
                }
            }
            Ok(Err(e)) => tracing::warn!("configuration.sqlite: cannot read changes: {e}"),
            Err(e) => tracing::warn!("configuration.sqlite: {e}"),
        }
    }
}
