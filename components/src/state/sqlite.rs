//! `state.sqlite`: a real SQLite database (WAL), for the embedded default and
//! for single-node deployments. Blocking SQLite calls run on tokio's blocking
//! pool; one writer connection serialises writes, a few readers serve reads
//! concurrently under WAL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use super::common::page;
use super::common::{check_etag, expiry};
use super::query::{Filter, Query, QueryResponse, QueryResult, SortOrder};
use super::{
    Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest, StateError,
    StateStore,
};
use crate::build::{BuildContext, BuildError};
use crate::sweep::{cleanup_interval, every};

const READERS: usize = 4;
const SCHEMA_VERSION: i64 = 1;

/// Cheap to clone into blocking tasks: all state is behind one `Arc`.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// Empty for `:memory:` databases, which a second connection can't see.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    table: String,
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn build(
    c: &spar_config::Component,
    ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let m = crate::meta::Meta::new(c);
    let conn = match m.str("connectionString").filter(|s| !s.trim().is_empty()) {
        Some(s) => s,
        None => {
            std::fs::create_dir_all(&ctx.data_dir).map_err(|e| BuildError::Init {
                component: c.name().to_string(),
                message: format!(
                    "cannot create data directory {}: {e}",
                    ctx.data_dir.display()
                ),
            })?;
            ctx.data_dir.join("spar-state.db").display().to_string()
        }
    };
    let table = m.str_or("tableName", "state");
    let timeout = m.duration("timeout", Duration::from_secs(20))?;
    let cleanup = cleanup_interval(c)?;
    let store =
        SqliteStore::open_with(&conn, &table, timeout).map_err(|message| BuildError::Init {
            component: c.name().to_string(),
            message,
        })?;
    if let Some(period) = cleanup {
        every(Arc::downgrade(&store.inner), period, |s| async move {
            let r = tokio::task::spawn_blocking(move || s.delete_expired()).await;
            if let Ok(Err(e)) = r {
                tracing::warn!("sqlite state cleanup failed: {e}");
            }
        });
    }
    Ok(Arc::new(store))
}

fn open_conn(target: &str, timeout: Duration) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(target, flags)
        .map_err(|e| format!("cannot open SQLite database {target:?}: {e}"))?;
    c.busy_timeout(timeout).map_err(|e| e.to_string())?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating if needed) a database file with default settings.
    pub fn open(path: &Path) -> Result<SqliteStore, String> {
        Self::open_with(
            &path.display().to_string(),
            "state",
            Duration::from_secs(20),
        )
    }

    pub fn open_with(target: &str, table: &str, timeout: Duration) -> Result<SqliteStore, String> {
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "tableName {table:?} must be letters, digits and '_'"
            ));
        }
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
        let writer = open_conn(target, timeout)?;
        if !in_memory {
            writer
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| format!("cannot enable WAL on {target:?}: {e}"))?;
        }
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| e.to_string())?;
        writer
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    key TEXT NOT NULL PRIMARY KEY,
                    value BLOB NOT NULL,
                    etag INTEGER NOT NULL,
                    expires_at INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at) WHERE expires_at IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS {table}_metadata (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL);
                 INSERT OR IGNORE INTO {table}_metadata (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
            ))
            .map_err(|e| format!("cannot create table {table} in {target:?}: {e}"))?;
        let readers = if in_memory {
            Vec::new()
        } else {
            (0..READERS)
                .map(|_| open_conn(target, timeout).map(Mutex::new))
                .collect::<Result<_, _>>()?
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                table: table.to_string(),
            }),
        })
    }

    fn handle(&self) -> Arc<Inner> {
        self.inner.clone()
    }
}

impl Inner {
    fn reader(&self) -> &Mutex<Connection> {
        if self.readers.is_empty() {
            return &self.writer;
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        &self.readers[i]
    }

    fn delete_expired(&self) -> Result<usize, StateError> {
        let now = millis(SystemTime::now());
        lock(&self.writer)
            .execute(
                &format!(
                    "DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                    self.table
                ),
                [now],
            )
            .map_err(backend)
    }

    fn get_sync(&self, key: &str) -> Result<Option<Item>, StateError> {
        let now = millis(SystemTime::now());
        let conn = lock(self.reader());
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT value, etag, expires_at FROM {} WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                self.table
            ))
            .map_err(backend)?;
        stmt.query_row(params![key, now], |r| {
            Ok(Item {
                data: r.get(0)?,
                etag: Some(r.get::<_, i64>(1)?.to_string()),
                expires_at: r.get::<_, Option<i64>>(2)?.map(from_millis),
            })
        })
        .optional()
        .map_err(backend)
    }

    /// Every operation in one IMMEDIATE transaction: ETag checks and writes
    /// are atomic, and concurrent writers queue on SQLite's write lock.
    fn transact_sync(&self, ops: &[Operation]) -> Result<(), StateError> {
        let now = SystemTime::now();
        let now_ms = millis(now);
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        {
            let t = &self.table;
            let mut current = tx
                .prepare_cached(&format!(
                    "SELECT etag FROM {t} WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
                ))
                .map_err(backend)?;
            let mut upsert = tx
                .prepare_cached(&format!(
                    "INSERT INTO {t} (key, value, etag, expires_at) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                       etag = CASE WHEN {t}.expires_at IS NOT NULL AND {t}.expires_at <= ?4 THEN 1 ELSE {t}.etag + 1 END,
                       expires_at = excluded.expires_at"
                ))
                .map_err(backend)?;
            let mut delete = tx
                .prepare_cached(&format!("DELETE FROM {t} WHERE key = ?1"))
                .map_err(backend)?;
            for op in ops {
                let cur: Option<i64> = current
                    .query_row(params![op.key(), now_ms], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                match op {
                    Operation::Upsert(r) => {
                        check_etag(
                            cur,
                            r.etag.as_deref(),
                            r.concurrency == Concurrency::FirstWrite,
                        )?;
                        let exp = expiry(r.ttl, now).map(millis);
                        upsert
                            .execute(params![r.key, r.value, exp, now_ms])
                            .map_err(backend)?;
                    }
                    Operation::Delete(r) => {
                        check_etag(cur, r.etag.as_deref(), false)?;
                        delete.execute(params![r.key]).map_err(backend)?;
                    }
                }
            }
        }
        // Dropping `tx` on an early `?` above rolls everything back.
        tx.commit().map_err(backend)
    }

    fn query_sync(&self, prefix: &str, q: &Query) -> Result<QueryResponse, StateError> {
        let mut sql = format!(
            "SELECT key, value, etag FROM {} WHERE substr(key, 1, ?1) = ?2 AND (expires_at IS NULL OR expires_at > ?3) AND json_valid(value)",
            self.table
        );
        let mut args: Vec<SqlValue> = vec![
            SqlValue::Integer(prefix.chars().count() as i64),
            SqlValue::Text(prefix.to_string()),
            SqlValue::Integer(millis(SystemTime::now())),
        ];
        if let Some(f) = &q.filter {
            sql.push_str(" AND ");
            filter_sql(f, &mut sql, &mut args);
        }
        sql.push_str(" ORDER BY ");
        for s in &q.sort {
            args.push(SqlValue::Text(json_path(&s.key)));
            let p = args.len();
            let dir = if s.order == SortOrder::Desc {
                "DESC"
            } else {
                "ASC"
            };
            // Missing fields sort last either way, as in the in-memory store.
            sql.push_str(&format!(
                "json_extract(value, ?{p}) IS NULL, json_extract(value, ?{p}) {dir}, "
            ));
        }
        sql.push_str("key ASC");
        let offset = q.offset();
        if let Some(limit) = q.page.limit {
            // One extra row tells whether another page exists.
            args.push(SqlValue::Integer(
                limit.saturating_add(1).min(i64::MAX as usize) as i64,
            ));
            args.push(SqlValue::Integer(offset.min(i64::MAX as usize) as i64));
            sql.push_str(&format!(
                " LIMIT ?{} OFFSET ?{}",
                args.len() - 1,
                args.len()
            ));
        } else if offset > 0 {
            args.push(SqlValue::Integer(offset.min(i64::MAX as usize) as i64));
            sql.push_str(&format!(" LIMIT -1 OFFSET ?{}", args.len()));
        }
        let conn = lock(self.reader());
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        let results: Vec<QueryResult> = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(QueryResult {
                    key: r.get(0)?,
                    data: r.get(1)?,
                    etag: Some(r.get::<_, i64>(2)?.to_string()),
                })
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        Ok(page(results, q))
    }
}

fn json_path(key: &str) -> String {
    // Keys were validated to [A-Za-z0-9_-] segments by the query parser; the
    // path is still bound as a parameter, never spliced into SQL.
    format!("$.{key}")
}

/// JSON types a filter value may match, so `"10"` never equals `10`.
fn type_guard(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "('integer','real')",
        Value::String(_) => "('text')",
        Value::Bool(_) => "('true','false')",
        _ => "('null')",
    }
}

fn sql_value(v: &Value) -> SqlValue {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(SqlValue::Integer)
            .unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        _ => SqlValue::Null,
    }
}

fn compare_sql(key: &str, op: &str, v: &Value, sql: &mut String, args: &mut Vec<SqlValue>) {
    args.push(SqlValue::Text(json_path(key)));
    let p = args.len();
    args.push(sql_value(v));
    let a = args.len();
    let cmp = if v.is_null() {
        // json_extract of JSON null is SQL NULL; only equality makes sense.
        "1".to_string()
    } else {
        format!("json_extract(value, ?{p}) {op} ?{a}")
    };
    sql.push_str(&format!(
        "(json_type(value, ?{p}) IN {} AND {cmp})",
        type_guard(v)
    ));
}

fn filter_sql(f: &Filter, sql: &mut String, args: &mut Vec<SqlValue>) {
    let join = |fs: &[Filter], sep: &str, sql: &mut String, args: &mut Vec<SqlValue>| {
        sql.push('(');
        for (i, f) in fs.iter().enumerate() {
            if i > 0 {
                sql.push_str(sep);
            }
            filter_sql(f, sql, args);
        }
        sql.push(')');
    };
    match f {
        Filter::Eq(k, v) => compare_sql(k, "=", v, sql, args),
        Filter::Gt(k, v) => compare_sql(k, ">", v, sql, args),
        Filter::Gte(k, v) => compare_sql(k, ">=", v, sql, args),
        Filter::Lt(k, v) => compare_sql(k, "<", v, sql, args),
        Filter::Lte(k, v) => compare_sql(k, "<=", v, sql, args),
        Filter::Neq(k, v) => {
            args.push(SqlValue::Text(json_path(k)));
            let p = args.len();
            sql.push_str(&format!("(json_type(value, ?{p}) IS NOT NULL AND NOT "));
            compare_sql(k, "=", v, sql, args);
            sql.push(')');
        }
        Filter::In(k, vs) => {
            let eqs: Vec<Filter> = vs
                .iter()
                .map(|v| Filter::Eq(k.clone(), v.clone()))
                .collect();
            join(&eqs, " OR ", sql, args);
        }
        Filter::And(fs) => join(fs, " AND ", sql, args),
        Filter::Or(fs) => join(fs, " OR ", sql, args),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f).await.map_err(backend)?
}

#[async_trait]
impl StateStore for SqliteStore {
    fn features(&self) -> Features {
        Features::ALL
    }

    async fn get(&self, req: &GetRequest) -> Result<Option<Item>, StateError> {
        let (this, key) = (self.handle(), req.key.clone());
        blocking(move || this.get_sync(&key)).await
    }

    async fn set(&self, req: &SetRequest) -> Result<(), StateError> {
        let (this, ops) = (self.handle(), vec![Operation::Upsert(req.clone())]);
        blocking(move || this.transact_sync(&ops)).await
    }

    async fn delete(&self, req: &DeleteRequest) -> Result<(), StateError> {
        let (this, ops) = (self.handle(), vec![Operation::Delete(req.clone())]);
        blocking(move || this.transact_sync(&ops)).await
    }

    async fn transact(&self, ops: &[Operation]) -> Result<(), StateError> {
        let (this, ops) = (self.handle(), ops.to_vec());
        blocking(move || this.transact_sync(&ops)).await
    }

    async fn query(&self, prefix: &str, q: &Query) -> Result<QueryResponse, StateError> {
        let (this, prefix, q) = (self.handle(), prefix.to_string(), q.clone());
        blocking(move || this.query_sync(&prefix, &q)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("sub").join("t.db")).unwrap();
        super::super::conformance::run_all(Arc::new(s), "sqlite-unit").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_in_memory() {
        let s = SqliteStore::open_with(":memory:", "t2", Duration::from_secs(5)).unwrap();
        super::super::conformance::run_all(Arc::new(s), "sqlite-mem").await;
    }

    #[test]
    fn rejects_bad_table_names_and_paths() {
        assert!(SqliteStore::open_with(":memory:", "x; drop", Duration::from_secs(1)).is_err());
        assert!(
            SqliteStore::open_with("/proc/nope/x.db", "state", Duration::from_secs(1)).is_err()
        );
    }

    #[test]
    fn expired_rows_are_purged() {
        let s = SqliteStore::open_with(":memory:", "p", Duration::from_secs(1)).unwrap();
        let now = millis(SystemTime::now());
        lock(&s.inner.writer)
            .execute(
                "INSERT INTO p (key, value, etag, expires_at) VALUES ('k', x'00', 1, ?1)",
                [now - 1000],
            )
            .unwrap();
        assert_eq!(s.inner.delete_expired().unwrap(), 1);
    }
}
