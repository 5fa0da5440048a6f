//! `state.mysql` (MySQL and MariaDB): one table per store (`key`, `value`
//! bytes, `doc` JSON copy for queries, `etag`, `expires_at` in ms), every
//! operation of a call in one SQL transaction at READ COMMITTED. Conditional
//! statements decide ETag checks; the primary key decides first-write races.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Executor, MySql, Row, Transaction};
use tokio::sync::OnceCell;

use super::common::{
    self, cleanup_interval, every, expires_ms, item, mismatch, now_ms, page, parse_etag,
};
use super::postgres::valid_ident;
use super::query::{Filter, Query, QueryResponse, QueryResult, SortOrder};
use super::{
    BulkItem, Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest,
    StateError, StateStore,
};
use crate::per_thread::PerThread;
use crate::registry::{BuildContext, BuildError};

const SCHEMA_VERSION: i64 = 1;

pub struct MySqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// A pool per calling thread (`per_thread.rs`): a connection's socket
    /// answers on the runtime that opened it.
    pools: PerThread<MySqlPool>,
    schema: String,
    /// `` `schema`.`table` ``, validated and quoted once.
    table: String,
    meta_table: String,
    timeout: Duration,
    ready: OnceCell<()>,
}

impl Inner {
    fn pool(&self) -> MySqlPool {
        self.pools.get()
    }
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!("mysql: {e}"))
}

/// Dapr's Go DSN (`user:pass@tcp(host:port)/db?params`) or a `mysql://` URL.
pub fn connect_options(conn: &str) -> Result<MySqlConnectOptions, String> {
    let conn = conn.trim();
    if conn.starts_with("mysql://") || conn.starts_with("mariadb://") {
        return MySqlConnectOptions::from_str(&conn.replacen("mariadb://", "mysql://", 1))
            .map_err(|e| e.to_string());
    }
    let (auth, rest) = conn
        .rsplit_once('@')
        .ok_or("expected user:password@tcp(host:port)/database")?;
    let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
    let rest = rest
        .strip_prefix("tcp(")
        .ok_or("expected tcp(host:port) after '@' (unix sockets are not supported)")?;
    let (addr, rest) = rest
        .split_once(')')
        .ok_or("missing ')' after tcp(host:port")?;
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number"))?,
        ),
        None => (addr, 3306),
    };
    let mut o = MySqlConnectOptions::new()
        .host(host)
        .port(port)
        .username(user);
    if !pass.is_empty() {
        o = o.password(pass);
    }
    let db = rest
        .trim_start_matches('/')
        .split('?')
        .next()
        .unwrap_or_default();
    if !db.is_empty() {
        o = o.database(db);
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
    let schema = ident("schemaName", "dapr_state_store")?;
    let meta = ident("metadataTableName", &format!("{table}_metadata"))?;
    let timeout = match c.meta("timeoutInSeconds") {
        Some(v) => Duration::from_secs(
            v.trim()
                .parse()
                .map_err(|_| field("timeoutInSeconds", format!("{v:?} must be a whole number")))?,
        ),
        None => Duration::from_secs(20),
    };
    let cleanup = cleanup_interval(c)?;
    let store = MySqlStore::new(opts, &schema, &table, &meta, timeout);
    if let Some(period) = cleanup {
        every(Arc::downgrade(&store.inner), period, |s| async move {
            let sql = format!(
                "DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= ?",
                s.table
            );
            let q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms());
            if let Err(e) = s.bounded(q.execute(&s.pool())).await {
                tracing::warn!("mysql state cleanup failed: {e}");
            }
        });
    }
    Ok(Arc::new(store))
}

fn doc_of(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(value)
        .ok()
        .and_then(|_| std::str::from_utf8(value).ok())
        .map(str::to_owned)
}

/// Duplicate key or deadlock on a first-write insert: another writer won.
fn lost_race(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23000" || c == "40001")
}

impl MySqlStore {
    pub fn new(
        opts: MySqlConnectOptions,
        schema: &str,
        table: &str,
        meta: &str,
        timeout: Duration,
    ) -> Self {
        // Lazy pool: start even while the server is down; reconnects on demand.
        let make = move || {
            MySqlPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // No gap locks: concurrent first-writes can't deadlock on them.
                        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                            .await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(opts.clone())
        };
        let first = make();
        // A pool spawns its maintenance task where it is made: only inside a
        // runtime.
        let pools = PerThread::new(first, move || {
            tokio::runtime::Handle::try_current().ok()?;
            Some(make())
        });
        MySqlStore {
            inner: Arc::new(Inner {
                pools,
                schema: schema.to_string(),
                table: format!("`{schema}`.`{table}`"),
                meta_table: format!("`{schema}`.`{meta}`"),
                timeout,
                ready: OnceCell::new(),
            }),
        }
    }

    /// Drops the tables (tests leave nothing behind).
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
        common::bounded("mysql", self.timeout, f).await
    }

    async fn ready(&self) -> Result<(), StateError> {
        self.ready
            .get_or_try_init(|| async {
                let ddl = [
                    format!("CREATE DATABASE IF NOT EXISTS `{}`", self.schema),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} (
                            `key` VARCHAR(512) NOT NULL PRIMARY KEY,
                            `value` LONGBLOB NOT NULL,
                            `doc` JSON NULL,
                            `etag` BIGINT NOT NULL,
                            `expires_at` BIGINT NULL,
                            INDEX (`expires_at`)
                         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                        self.table
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} (`key` VARCHAR(255) NOT NULL PRIMARY KEY, `value` TEXT NOT NULL) ENGINE=InnoDB",
                        self.meta_table
                    ),
                    format!(
                        "INSERT IGNORE INTO {} (`key`, `value`) VALUES ('schema_version', '{SCHEMA_VERSION}')",
                        self.meta_table
                    ),
                ];
                for sql in ddl {
                    self.bounded(sqlx::query(AssertSqlSafe(sql)).execute(&self.pool())).await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, MySql>,
        op: &Operation,
        now: i64,
    ) -> Result<(), StateError> {
        let t = &self.table;
        let live = "(`expires_at` IS NULL OR `expires_at` > ?)";
        match op {
            Operation::Upsert(r) => {
                let exp = expires_ms(r.ttl, now);
                let doc = doc_of(&r.value);
                match (&r.etag, r.concurrency) {
                    (Some(e), _) => {
                        let etag = parse_etag(e)?;
                        let sql = format!(
                            "UPDATE {t} SET `value` = ?, `doc` = ?, `etag` = `etag` + 1, `expires_at` = ? WHERE `key` = ? AND `etag` = ? AND {live}"
                        );
                        let q = sqlx::query(AssertSqlSafe(sql))
                            .bind(&r.value)
                            .bind(doc)
                            .bind(exp)
                            .bind(&r.key)
                            .bind(etag)
                            .bind(now);
                        if self.bounded(q.execute(&mut **tx)).await?.rows_affected() == 0 {
                            return Err(mismatch(&r.key));
                        }
                    }
                    (None, Concurrency::FirstWrite) => {
                        let purge = format!("DELETE FROM {t} WHERE `key` = ? AND `expires_at` IS NOT NULL AND `expires_at` <= ?");
                        self.bounded(
                            sqlx::query(AssertSqlSafe(purge))
                                .bind(&r.key)
                                .bind(now)
                                .execute(&mut **tx),
                        )
                        .await?;
                        let sql = format!("INSERT INTO {t} (`key`, `value`, `doc`, `etag`, `expires_at`) VALUES (?, ?, ?, 1, ?)");
                        let q = sqlx::query(AssertSqlSafe(sql))
                            .bind(&r.key)
                            .bind(&r.value)
                            .bind(doc)
                            .bind(exp);
                        match tokio::time::timeout(self.timeout, q.execute(&mut **tx)).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) if lost_race(&e) => return Err(mismatch(&r.key)),
                            Ok(Err(e)) => return Err(backend(e)),
                            Err(_) => {
                                return Err(StateError::Backend("mysql: insert timed out".into()))
                            }
                        }
                    }
                    (None, Concurrency::LastWrite) => {
                        // `etag` is assigned before `expires_at` so it sees the old expiry.
                        let sql = format!(
                            "INSERT INTO {t} (`key`, `value`, `doc`, `etag`, `expires_at`) VALUES (?, ?, ?, 1, ?)
                             ON DUPLICATE KEY UPDATE
                               `etag` = IF(`expires_at` IS NOT NULL AND `expires_at` <= ?, 1, `etag` + 1),
                               `value` = VALUES(`value`), `doc` = VALUES(`doc`), `expires_at` = VALUES(`expires_at`)"
                        );
                        let q = sqlx::query(AssertSqlSafe(sql))
                            .bind(&r.key)
                            .bind(&r.value)
                            .bind(doc)
                            .bind(exp)
                            .bind(now);
                        self.bounded(q.execute(&mut **tx)).await?;
                    }
                }
            }
            Operation::Delete(r) => match &r.etag {
                Some(e) => {
                    let etag = parse_etag(e)?;
                    let sql = format!("DELETE FROM {t} WHERE `key` = ? AND `etag` = ? AND {live}");
                    let q = sqlx::query(AssertSqlSafe(sql))
                        .bind(&r.key)
                        .bind(etag)
                        .bind(now);
                    if self.bounded(q.execute(&mut **tx)).await?.rows_affected() == 0 {
                        return Err(mismatch(&r.key));
                    }
                }
                None => {
                    let sql = format!("DELETE FROM {t} WHERE `key` = ?");
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

/// One bind parameter, in the order its `?` appears in the SQL.
enum Arg {
    Text(String),
    Float(f64),
    Int(i64),
}

/// `$."a"."b"`: quoted segments, so keys like `a-b` work too.
fn json_path(key: &str) -> String {
    let mut p = String::from("$");
    for seg in key.split('.') {
        p.push_str(".\"");
        p.push_str(seg);
        p.push('"');
    }
    p
}

const NUMBER_TYPES: &str = "('INTEGER','DOUBLE','UNSIGNED INTEGER','DECIMAL')";

struct SqlBuilder {
    args: Vec<Arg>,
}

impl SqlBuilder {
    /// A typed comparison of the field at `key` with `v`; `None` for types
    /// that can't be compared (they never match).
    fn compare(&mut self, key: &str, op: &str, v: &Value) -> String {
        let path = json_path(key);
        let ex = "JSON_EXTRACT(`doc`, ?)";
        match v {
            Value::String(s) => {
                self.args.extend([
                    Arg::Text(path.clone()),
                    Arg::Text(path),
                    Arg::Text(s.clone()),
                ]);
                format!("(JSON_TYPE({ex}) = 'STRING' AND JSON_UNQUOTE({ex}) COLLATE utf8mb4_bin {op} CAST(? AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin)")
            }
            Value::Number(n) => {
                self.args.extend([
                    Arg::Text(path.clone()),
                    Arg::Text(path),
                    Arg::Float(n.as_f64().unwrap_or(0.0)),
                ]);
                format!("(JSON_TYPE({ex}) IN {NUMBER_TYPES} AND CAST({ex} AS DOUBLE) {op} ?)")
            }
            Value::Bool(b) => {
                self.args.extend([
                    Arg::Text(path.clone()),
                    Arg::Text(path),
                    Arg::Text(b.to_string()),
                ]);
                format!("(JSON_TYPE({ex}) = 'BOOLEAN' AND JSON_UNQUOTE({ex}) {op} ?)")
            }
            _ => {
                self.args.push(Arg::Text(path));
                format!("(JSON_TYPE({ex}) = 'NULL' AND '{op}' IN ('=', '>=', '<='))")
            }
        }
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
                self.args.push(Arg::Text(json_path(k)));
                let eq = self.compare(k, "=", v);
                format!("(JSON_EXTRACT(`doc`, ?) IS NOT NULL AND NOT {eq})")
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
        args: vec![
            Arg::Text(prefix.to_string()),
            Arg::Text(prefix.to_string()),
            Arg::Int(now),
        ],
    };
    let mut sql = format!(
        "SELECT `key`, `value`, `etag` FROM {table} WHERE LEFT(`key`, CHAR_LENGTH(?)) = ? AND (`expires_at` IS NULL OR `expires_at` > ?) AND `doc` IS NOT NULL"
    );
    if let Some(f) = &q.filter {
        let cond = b.filter(f);
        sql.push_str(" AND ");
        sql.push_str(&cond);
    }
    sql.push_str(" ORDER BY ");
    for s in &q.sort {
        let p = json_path(&s.key);
        let dir = if s.order == SortOrder::Desc {
            "DESC"
        } else {
            "ASC"
        };
        let ex = "JSON_EXTRACT(`doc`, ?)";
        // Missing last; numbers numerically; strings byte-wise.
        sql.push_str(&format!(
            "{ex} IS NULL, CASE WHEN JSON_TYPE({ex}) IN {NUMBER_TYPES} THEN CAST({ex} AS DOUBLE) END {dir}, JSON_UNQUOTE({ex}) COLLATE utf8mb4_bin {dir}, "
        ));
        b.args.extend((0..4).map(|_| Arg::Text(p.clone())));
    }
    sql.push_str("`key` ASC");
    if let Some(limit) = q.page.limit {
        sql.push_str(" LIMIT ? OFFSET ?");
        b.args.push(Arg::Int(
            limit.saturating_add(1).min(i64::MAX as usize) as i64
        ));
        b.args
            .push(Arg::Int(q.offset().min(i64::MAX as usize) as i64));
    } else if q.offset() > 0 {
        sql.push_str(" LIMIT 18446744073709551615 OFFSET ?");
        b.args
            .push(Arg::Int(q.offset().min(i64::MAX as usize) as i64));
    }
    (sql, b.args)
}

fn item_from(row: &MySqlRow) -> Result<Item, sqlx::Error> {
    Ok(item(
        row.try_get("value")?,
        row.try_get("etag")?,
        row.try_get("expires_at")?,
    ))
}

#[async_trait]
impl StateStore for MySqlStore {
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
            "SELECT `value`, `etag`, `expires_at` FROM {} WHERE `key` = ? AND (`expires_at` IS NULL OR `expires_at` > ?)",
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

    async fn bulk_get(&self, reqs: &[GetRequest]) -> Result<Vec<BulkItem>, StateError> {
        let s = &self.inner;
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        s.ready().await?;
        let marks = vec!["?"; reqs.len()].join(", ");
        let sql = format!(
            "SELECT `key`, `value`, `etag`, `expires_at` FROM {} WHERE `key` IN ({marks}) AND (`expires_at` IS NULL OR `expires_at` > ?)",
            s.table
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in reqs {
            q = q.bind(&r.key);
        }
        let rows = s.bounded(q.bind(now_ms()).fetch_all(&s.pool())).await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.try_get("key").map_err(backend)?;
            found.insert(key, item_from(row).map_err(backend)?);
        }
        Ok(reqs
            .iter()
            .map(|r| BulkItem::found(r.key.clone(), found.remove(&r.key)))
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
                Arg::Float(f) => query.bind(f),
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
    fn dsns() {
        assert!(connect_options("root:@tcp(127.0.0.1:3306)/test?parseTime=true").is_ok());
        assert!(connect_options("user:p@ss:word@tcp(db:3307)/").is_ok());
        assert!(connect_options("mysql://root@127.0.0.1:3306/test").is_ok());
        assert!(connect_options("root@unix(/tmp/sock)/x").is_err());
        assert!(connect_options("nonsense").is_err());
        assert!(connect_options("root@tcp(h:port)/x").is_err());
    }

    #[test]
    fn placeholders_match_args() {
        let q = Query::parse(br#"{"filter":{"OR":[{"EQ":{"a-b.c":"x"}},{"NEQ":{"n":1}},{"IN":{"f":[true,null]}}]},"sort":[{"key":"n"}],"page":{"limit":3}}"#).unwrap();
        let (sql, args) = query_sql("`s`.`t`", "p||", &q, 0);
        assert_eq!(sql.matches('?').count(), args.len(), "{sql}");
        assert!(
            sql.contains("JSON_EXTRACT") && !sql.contains("a-b"),
            "{sql}"
        );
        assert_eq!(json_path("a-b.c"), "$.\"a-b\".\"c\"");
    }
}
