//! `state.postgresql`: one table per store (`key`, `value` bytes, `doc`
//! JSONB copy of JSON values for queries, `etag` version, `expires_at`),
//! through a sqlx pool. Every write is a single conditional statement inside
//! one SQL transaction, so ETag checks and first-write races are decided by
//! PostgreSQL's row locks and unique index, not by a read-then-write.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use tokio::sync::OnceCell;

use super::common::{
    self, cleanup_interval, every, expires_ms, item, mismatch, now_ms, page, parse_etag,
};
use super::query::{Filter, Query, QueryResponse, QueryResult, SortOrder};
use super::{
    BulkItem, Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest,
    StateError, StateStore,
};
use crate::per_thread::PerThread;
use crate::registry::{BuildContext, BuildError};

const SCHEMA_VERSION: i64 = 1;

pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// A pool per calling thread (`per_thread.rs`): a connection's socket
    /// answers on the runtime that opened it.
    pools: PerThread<PgPool>,
    /// `"schema"."table"`, validated and quoted once.
    table: String,
    meta_table: String,
    timeout: Duration,
    schema_ready: OnceCell<()>,
}

impl Inner {
    fn pool(&self) -> PgPool {
        self.pools.get()
    }
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!("postgresql: {e}"))
}

/// An SQL identifier we can quote safely.
pub fn valid_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && s.len() <= 63
}

/// libpq's `key=value` form (what Dapr's docs show) or a `postgres://` URL.
pub fn connect_options(conn: &str) -> Result<PgConnectOptions, String> {
    let conn = conn.trim();
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        return PgConnectOptions::from_str(conn).map_err(|e| e.to_string());
    }
    let mut o = PgConnectOptions::new_without_pgpass();
    for pair in conn.split_whitespace() {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let v = v.trim_matches('\'');
        o = match k {
            "host" => o.host(v),
            "port" => o.port(
                v.parse()
                    .map_err(|_| format!("port {v:?} is not a number"))?,
            ),
            "user" => o.username(v),
            "password" => o.password(v),
            "dbname" | "database" => o.database(v),
            "sslmode" => o.ssl_mode(PgSslMode::from_str(v).map_err(|e| e.to_string())?),
            "application_name" => o.application_name(v),
            // Accepted for compatibility; the pool has its own timeouts.
            "connect_timeout" | "pool_max_conns" | "pool_min_conns" => o,
            other => return Err(format!("unknown connection parameter {other:?}")),
        };
    }
    Ok(o)
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let field = |f: &str, message: String| BuildError::Metadata {
        component: c.name().to_string(),
        field: f.to_string(),
        message,
    };
    let conn = c
        .meta("connectionString")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| field("connectionString", "is required".into()))?;
    let opts = connect_options(&conn).map_err(|e| field("connectionString", e))?;
    let ident = |name: &str, default: &str| -> Result<String, BuildError> {
        let v = c.meta(name).unwrap_or_else(|| default.to_string());
        if valid_ident(&v) {
            Ok(v)
        } else {
            Err(field(
                name,
                format!("{v:?} must be letters, digits and '_' (max 63)"),
            ))
        }
    };
    let table = ident("tableName", "state")?;
    let schema = ident("schema", "public")?;
    let meta = ident("metadataTableName", &format!("{table}_metadata"))?;
    let timeout = match c.meta("timeout") {
        Some(t) => spar_config::parse_duration(&t)
            .or_else(|e| {
                t.trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| e)
            })
            .map_err(|e| field("timeout", e))?,
        None => Duration::from_secs(20),
    };
    let cleanup = cleanup_interval(c)?;
    let max_conns: u32 = match c.meta("maxConns") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| field("maxConns", format!("{v:?} must be a number")))?,
        None => 8,
    };
    let store = PostgresStore::new(opts, &schema, &table, &meta, timeout, max_conns);
    if let Some(period) = cleanup {
        every(Arc::downgrade(&store.inner), period, |s| async move {
            let sql = format!(
                "DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= $1",
                s.table
            );
            let q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms());
            if let Err(e) = s.bounded(q.execute(&s.pool())).await {
                tracing::warn!("postgresql state cleanup failed: {e}");
            }
        });
    }
    Ok(Arc::new(store))
}

/// A value's JSON copy for the query API; none when it isn't JSON (or holds
/// a NUL, which JSONB can't store).
fn doc_of(value: &[u8]) -> Option<Json<Value>> {
    if value.contains(&0) || value.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    serde_json::from_slice(value).ok().map(Json)
}

impl PostgresStore {
    pub fn new(
        opts: PgConnectOptions,
        schema: &str,
        table: &str,
        meta: &str,
        timeout: Duration,
        max_conns: u32,
    ) -> Self {
        // Lazy: the sidecar starts even while PostgreSQL is down; the pool
        // connects (and reconnects) on demand, bounded by the timeout.
        let make = move || {
            PgPoolOptions::new()
                .max_connections(max_conns.max(1))
                .acquire_timeout(timeout)
                .connect_lazy_with(opts.clone())
        };
        let first = make();
        // A pool spawns its maintenance task where it is made: only inside a
        // runtime.
        let pools = PerThread::new(first, move || {
            tokio::runtime::Handle::try_current().ok()?;
            Some(make())
        });
        PostgresStore {
            inner: Arc::new(Inner {
                pools,
                table: format!("\"{schema}\".\"{table}\""),
                meta_table: format!("\"{schema}\".\"{meta}\""),
                timeout,
                schema_ready: OnceCell::new(),
            }),
        }
    }

    /// Drops the table (tests only leave nothing behind).
    pub async fn drop_tables(&self) -> Result<(), StateError> {
        for t in [&self.inner.table, &self.inner.meta_table] {
            sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {t}")))
                .execute(&self.inner.pool())
                .await
                .map_err(backend)?;
        }
        Ok(())
    }
}

impl Inner {
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StateError> {
        common::bounded("postgresql", self.timeout, f).await
    }

    /// Creates the tables on first use (and again after a failure), so the
    /// sidecar can start before the database is reachable.
    async fn ready(&self) -> Result<(), StateError> {
        self.schema_ready
            .get_or_try_init(|| async {
                let t = &self.table;
                let ddl = format!(
                    "CREATE TABLE IF NOT EXISTS {t} (
                        key TEXT NOT NULL PRIMARY KEY,
                        value BYTEA NOT NULL,
                        doc JSONB,
                        etag BIGINT NOT NULL,
                        expires_at BIGINT,
                        updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                );
                let meta = format!(
                    "CREATE TABLE IF NOT EXISTS {} (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
                    self.meta_table
                );
                let version = format!(
                    "INSERT INTO {} (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO NOTHING",
                    self.meta_table
                );
                let mut tx = self.bounded(self.pool().begin()).await?;
                // Concurrent sidecars may race to create the same table.
                self.bounded(sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(t).execute(&mut *tx)).await?;
                self.bounded(sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx)).await?;
                self.bounded(sqlx::query(AssertSqlSafe(meta)).execute(&mut *tx)).await?;
                self.bounded(sqlx::query(AssertSqlSafe(version)).bind(SCHEMA_VERSION.to_string()).execute(&mut *tx)).await?;
                self.bounded(tx.commit()).await
            })
            .await
            .map(|_| ())
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        op: &Operation,
        now: i64,
    ) -> Result<(), StateError> {
        let t = &self.table;
        let live = "(expires_at IS NULL OR expires_at > $2)";
        match op {
            Operation::Upsert(r) => {
                let exp = expires_ms(r.ttl, now);
                let doc = doc_of(&r.value);
                let n = match (&r.etag, r.concurrency) {
                    (Some(e), _) => {
                        let etag = parse_etag(e)?;
                        let sql = format!(
                            "UPDATE {t} SET value = $3, doc = $4, etag = etag + 1, expires_at = $5, updated_at = now()
                             WHERE key = $1 AND etag = $6 AND {live}"
                        );
                        let q = sqlx::query(AssertSqlSafe(sql)).bind(&r.key).bind(now).bind(&r.value).bind(doc).bind(exp).bind(etag);
                        self.bounded(q.execute(&mut **tx)).await?
                    }
                    (None, Concurrency::FirstWrite) => {
                        // Inserts, or revives an expired row; a live row wins.
                        let sql = format!(
                            "INSERT INTO {t} (key, value, doc, etag, expires_at) VALUES ($1, $3, $4, 1, $5)
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value, doc = excluded.doc,
                               etag = 1, expires_at = excluded.expires_at, updated_at = now()
                             WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= $2"
                        );
                        let q = sqlx::query(AssertSqlSafe(sql)).bind(&r.key).bind(now).bind(&r.value).bind(doc).bind(exp);
                        self.bounded(q.execute(&mut **tx)).await?
                    }
                    (None, Concurrency::LastWrite) => {
                        let sql = format!(
                            "INSERT INTO {t} (key, value, doc, etag, expires_at) VALUES ($1, $3, $4, 1, $5)
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value, doc = excluded.doc,
                               etag = CASE WHEN {t}.expires_at IS NOT NULL AND {t}.expires_at <= $2 THEN 1 ELSE {t}.etag + 1 END,
                               expires_at = excluded.expires_at, updated_at = now()"
                        );
                        let q = sqlx::query(AssertSqlSafe(sql)).bind(&r.key).bind(now).bind(&r.value).bind(doc).bind(exp);
                        self.bounded(q.execute(&mut **tx)).await?
                    }
                }
                .rows_affected();
                if n == 0 {
                    return Err(mismatch(&r.key));
                }
            }
            Operation::Delete(r) => match &r.etag {
                Some(e) => {
                    let etag = parse_etag(e)?;
                    let sql = format!("DELETE FROM {t} WHERE key = $1 AND etag = $3 AND {live}");
                    let n = self
                        .bounded(
                            sqlx::query(AssertSqlSafe(sql))
                                .bind(&r.key)
                                .bind(now)
                                .bind(etag)
                                .execute(&mut **tx),
                        )
                        .await?
                        .rows_affected();
                    if n == 0 {
                        return Err(mismatch(&r.key));
                    }
                }
                None => {
                    let sql = format!("DELETE FROM {t} WHERE key = $1");
                    self.bounded(
                        sqlx::query(AssertSqlSafe(sql))
                            .bind(&r.key)
                            .execute(&mut **tx),
                    )
                    .await?;
                }
            },
        }
        Ok(())
    }

    async fn transact(&self, ops: &[Operation]) -> Result<(), StateError> {
        self.ready().await?;
        let now = now_ms();
        let mut tx = self.bounded(self.pool().begin()).await?;
        for op in ops {
            // An early return drops `tx`, which rolls everything back.
            self.apply(&mut tx, op, now).await?;
        }
        self.bounded(tx.commit()).await
    }
}

/// One bind parameter of a generated query.
enum Arg {
    Text(String),
    Path(Vec<String>),
    Json(Value),
    Int(i64),
}

/// Builds `WHERE` conditions over `doc` with every value and path bound.
struct SqlBuilder {
    args: Vec<Arg>,
}

impl SqlBuilder {
    fn push(&mut self, a: Arg) -> usize {
        self.args.push(a);
        self.args.len()
    }

    fn path(&mut self, key: &str) -> usize {
        self.push(Arg::Path(key.split('.').map(str::to_string).collect()))
    }

    /// Same JSON type and the comparison holds (jsonb compares numbers
    /// numerically, strings as text).
    fn compare(&mut self, key: &str, op: &str, v: &Value) -> String {
        let p = self.path(key);
        let a = self.push(Arg::Json(v.clone()));
        format!("(jsonb_typeof(doc #> ${p}) = jsonb_typeof(${a}::jsonb) AND doc #> ${p} {op} ${a}::jsonb)")
    }

    fn filter(&mut self, f: &Filter) -> String {
        let join = |b: &mut Self, fs: &[Filter], sep: &str| {
            let parts: Vec<String> = fs.iter().map(|f| b.filter(f)).collect();
            format!("({})", parts.join(sep))
        };
        match f {
            Filter::Eq(k, v) => self.compare(k, "=", v),
            Filter::Gt(k, v) => self.compare(k, ">", v),
            Filter::Gte(k, v) => self.compare(k, ">=", v),
            Filter::Lt(k, v) => self.compare(k, "<", v),
            Filter::Lte(k, v) => self.compare(k, "<=", v),
            Filter::Neq(k, v) => {
                let p = self.path(k);
                let a = self.push(Arg::Json(v.clone()));
                format!("(doc #> ${p} IS NOT NULL AND doc #> ${p} <> ${a}::jsonb)")
            }
            Filter::In(k, vs) => {
                let eqs: Vec<Filter> = vs
                    .iter()
                    .map(|v| Filter::Eq(k.clone(), v.clone()))
                    .collect();
                join(self, &eqs, " OR ")
            }
            Filter::And(fs) => join(self, fs, " AND "),
            Filter::Or(fs) => join(self, fs, " OR "),
        }
    }
}

fn query_sql(table: &str, prefix: &str, q: &Query, now: i64) -> (String, Vec<Arg>) {
    let mut b = SqlBuilder {
        args: vec![Arg::Text(prefix.to_string()), Arg::Int(now)],
    };
    let mut sql = format!(
        "SELECT key, value, etag FROM {table} WHERE starts_with(key, $1) AND (expires_at IS NULL OR expires_at > $2) AND doc IS NOT NULL"
    );
    if let Some(f) = &q.filter {
        let cond = b.filter(f);
        sql.push_str(" AND ");
        sql.push_str(&cond);
    }
    sql.push_str(" ORDER BY ");
    for s in &q.sort {
        let p = b.path(&s.key);
        let dir = if s.order == SortOrder::Desc {
            "DESC"
        } else {
            "ASC"
        };
        sql.push_str(&format!("(doc #> ${p}) IS NULL, doc #> ${p} {dir}, "));
    }
    sql.push_str("key ASC");
    if let Some(limit) = q.page.limit {
        let l = b.push(Arg::Int(
            limit.saturating_add(1).min(i64::MAX as usize) as i64
        ));
        let o = b.push(Arg::Int(q.offset().min(i64::MAX as usize) as i64));
        sql.push_str(&format!(" LIMIT ${l} OFFSET ${o}"));
    } else if q.offset() > 0 {
        let o = b.push(Arg::Int(q.offset().min(i64::MAX as usize) as i64));
        sql.push_str(&format!(" OFFSET ${o}"));
    }
    (sql, b.args)
}

fn item_from(row: &sqlx::postgres::PgRow) -> Result<Item, sqlx::Error> {
    Ok(item(
        row.try_get("value")?,
        row.try_get("etag")?,
        row.try_get("expires_at")?,
    ))
}

#[async_trait]
impl StateStore for PostgresStore {
    fn features(&self) -> Features {
        Features::ALL
    }

    /// Connects and creates the tables, as daprd's store does when it starts.
    async fn init(&self) -> Result<(), StateError> {
        self.inner.ready().await
    }

    async fn get(&self, req: &GetRequest) -> Result<Option<Item>, StateError> {
        let s = &self.inner;
        s.ready().await?;
        let sql = format!(
            "SELECT value, etag, expires_at FROM {} WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)",
            s.table
        );
        let row = s
            .bounded(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(&req.key)
                    .bind(now_ms())
                    .fetch_optional(&s.pool()),
            )
            .await?;
        row.as_ref().map(item_from).transpose().map_err(backend)
    }

    /// One round trip for all keys.
    async fn bulk_get(&self, reqs: &[GetRequest]) -> Result<Vec<BulkItem>, StateError> {
        let s = &self.inner;
        s.ready().await?;
        let keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
        let sql = format!(
            "SELECT key, value, etag, expires_at FROM {} WHERE key = ANY($1) AND (expires_at IS NULL OR expires_at > $2)",
            s.table
        );
        let rows = s
            .bounded(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(&keys)
                    .bind(now_ms())
                    .fetch_all(&s.pool()),
            )
            .await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.try_get("key").map_err(backend)?;
            found.insert(key, item_from(row).map_err(backend)?);
        }
        Ok(keys
            .into_iter()
            .map(|k| {
                let item = found.remove(&k);
                BulkItem::found(k, item)
            })
            .collect())
    }

    async fn set(&self, req: &SetRequest) -> Result<(), StateError> {
        self.inner.transact(&[Operation::Upsert(req.clone())]).await
    }

    async fn delete(&self, req: &DeleteRequest) -> Result<(), StateError> {
        self.inner.transact(&[Operation::Delete(req.clone())]).await
    }

    async fn transact(&self, ops: &[Operation]) -> Result<(), StateError> {
        self.inner.transact(ops).await
    }

    async fn query(&self, prefix: &str, q: &Query) -> Result<QueryResponse, StateError> {
        let s = &self.inner;
        s.ready().await?;
        let (sql, args) = query_sql(&s.table, prefix, q, now_ms());
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            query = match a {
                Arg::Text(t) => query.bind(t),
                Arg::Path(p) => query.bind(p),
                Arg::Json(j) => query.bind(Json(j)),
                Arg::Int(i) => query.bind(i),
            };
        }
        let rows = s.bounded(query.fetch_all(&s.pool())).await?;
        let results = rows
            .iter()
            .map(|r| {
                Ok(QueryResult {
                    key: r.try_get("key")?,
                    data: r.try_get("value")?,
                    etag: Some(r.try_get::<i64, _>("etag")?.to_string()),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(backend)?;
        Ok(page(results, q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        assert!(connect_options(
            "host=127.0.0.1 user=postgres port=5432 dbname=postgres connect_timeout=10"
        )
        .is_ok());
        assert!(connect_options("postgres://postgres@127.0.0.1:5432/postgres").is_ok());
        assert!(connect_options("host=a port=x").is_err());
        assert!(connect_options("bogus").is_err());
        assert!(connect_options("nope=1").is_err());
    }

    #[test]
    fn identifiers() {
        assert!(valid_ident("state_1"));
        assert!(!valid_ident("1state"));
        assert!(!valid_ident("a\"; drop"));
        assert!(!valid_ident(&"a".repeat(64)));
    }

    #[test]
    fn query_binds_everything() {
        let q = Query::parse(br#"{"filter":{"AND":[{"EQ":{"a.b":"x'; drop table t; --"}},{"IN":{"n":[1,2]}}]},"sort":[{"key":"n","order":"DESC"}],"page":{"limit":2,"token":"4"}}"#).unwrap();
        let (sql, args) = query_sql("\"public\".\"t\"", "app||", &q, 0);
        assert!(!sql.contains("drop"), "{sql}");
        assert!(!sql.contains("a.b") && !sql.contains("app||"), "{sql}");
        assert_eq!(args.len(), 2 + 2 + 4 + 1 + 2);
    }
}
