//! `lock.sqlite`: locks in a SQLite file, so every sidecar on the machine
//! that names the same file shares them (the embedded default `lockstore`
//! under the data directory). Expiry is wall-clock milliseconds, which all
//! processes on one host agree on. Each call is one statement or one
//! immediate transaction, so two processes never both take a lock; calls
//! run on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{LockError, LockStore, UnlockStatus};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

pub struct SqliteLock {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    table: String,
}

fn backend(e: impl std::fmt::Display) -> LockError {
    LockError::Backend(format!("sqlite: {e}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn build(
    c: &spar_config::Component,
    ctx: &BuildContext,
) -> Result<Arc<dyn LockStore>, BuildError> {
    let m = Meta::new(c);
    let target = m
        .str("connectionString")
        .unwrap_or_else(|| ctx.data_dir.join("spar-lock.db").display().to_string());
    let table = m.str_or("tableName", "locks");
    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(m.error("tableName", "must be letters, digits and '_'"));
    }
    let timeout = m.duration("timeout", Duration::from_secs(20))?;
    let lock = SqliteLock::open(&target, &table, timeout).map_err(|message| BuildError::Init {
        component: c.name().to_string(),
        message,
    })?;
    Ok(Arc::new(lock))
}

impl SqliteLock {
    /// Opens (creating if needed) the database and its table.
    pub fn open(target: &str, table: &str, timeout: Duration) -> Result<SqliteLock, String> {
        let in_memory = target == ":memory:" || target.contains("mode=memory");
        if !in_memory {
            let file = target.strip_prefix("file:").unwrap_or(target);
            let file = file.split('?').next().unwrap_or(file);
            if let Some(dir) = PathBuf::from(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(target, flags)
            .map_err(|e| format!("cannot open SQLite database {target:?}: {e}"))?;
        // Other sidecars write the same file: wait for them, don't fail.
        conn.busy_timeout(timeout).map_err(|e| e.to_string())?;
        if !in_memory {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| format!("cannot enable WAL on {target:?}: {e}"))?;
        }
        // No fsync per commit: a lock outlives a crashed process in the WAL,
        // and one lost to a power cut would have expired anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| e.to_string())?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                resource TEXT NOT NULL PRIMARY KEY,
                owner TEXT NOT NULL,
                expires_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at);"
        ))
        .map_err(|e| format!("cannot create table {table} in {target:?}: {e}"))?;
        Ok(SqliteLock {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                table: table.to_string(),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, LockError> + Send + 'static,
    ) -> Result<T, LockError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(backend)?
    }
}

impl Inner {
    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One statement: insert, or take over a row whose expiry has passed.
    fn try_lock(&self, resource: &str, owner: &str, expiry: Duration) -> Result<bool, LockError> {
        let now = now_ms();
        let until = now.saturating_add(expiry.as_millis() as i64);
        let t = &self.table;
        let changed = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO {t} (resource, owner, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (resource) DO UPDATE
                       SET owner = excluded.owner, expires_at = excluded.expires_at
                       WHERE {t}.expires_at <= ?4"
                ),
                params![resource, owner, until, now],
            )
            .map_err(backend)?;
        Ok(changed == 1)
    }

    fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let now = now_ms();
        let t = &self.table;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let held: Option<(String, i64)> = tx
            .query_row(
                &format!("SELECT owner, expires_at FROM {t} WHERE resource = ?1"),
                [resource],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        let status = match held {
            None => UnlockStatus::LockDoesNotExist,
            Some((_, until)) if until <= now => {
                tx.execute(&format!("DELETE FROM {t} WHERE resource = ?1"), [resource])
                    .map_err(backend)?;
                UnlockStatus::LockDoesNotExist
            }
            Some((o, _)) if o != owner => UnlockStatus::LockBelongsToOthers,
            Some(_) => {
                tx.execute(&format!("DELETE FROM {t} WHERE resource = ?1"), [resource])
                    .map_err(backend)?;
                UnlockStatus::Success
            }
        };
        // Rows of locks that expired without an unlock go too, a few at a
        // time, so the table holds about what is held.
        tx.execute(
            &format!(
                "DELETE FROM {t} WHERE resource IN
                   (SELECT resource FROM {t} WHERE expires_at <= ?1 LIMIT 64)"
            ),
            [now],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(status)
    }
}

#[async_trait]
impl LockStore for SqliteLock {
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expiry: Duration,
    ) -> Result<bool, LockError> {
        let (r, o) = (resource.to_string(), owner.to_string());
        self.blocking(move |i| i.try_lock(&r, &o, expiry)).await
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let (r, o) = (resource.to_string(), owner.to_string());
        self.blocking(move |i| i.unlock(&r, &o)).await
    }
}
