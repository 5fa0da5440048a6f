//! The state store over SQL, shared by `state.postgresql` and
//! `state.mysql`: a new SQL store is a [`Dialect`] (its statements, binds
//! and how it runs them) and a `build` function.
//!
//! One table per store — `key`, `value` bytes, `doc` (a JSON copy of JSON
//! values, for the query API), `etag` version, `expires_at` in ms — and a
//! metadata table holding the schema version, created on first use (and at
//! start-up by `init`). Every operation of a call runs in one SQL
//! transaction; conditional statements decide ETag checks and the primary
//! key decides first-write races, never a read-then-write.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::common::{expires_ms, item, mismatch, now_ms, page, parse_etag};
use super::query::{Filter, Query, QueryResponse, QueryResult, SortOrder};
use super::{
    BulkItem, Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest,
    StateError, StateStore,
};
use crate::build::BuildError;
use crate::meta::Meta;
use crate::sweep::{cleanup_interval, every};

pub(crate) const SCHEMA_VERSION: i64 = 1;

/// One bind parameter, in the order the dialect placed it.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Str(String),
    Bytes(Vec<u8>),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    /// A value's JSON copy as JSON (PostgreSQL `jsonb`).
    Doc(Option<Value>),
    /// A string or SQL NULL (a value's JSON copy as text, in MySQL).
    OptStr(Option<String>),
    /// A JSON value compared against `doc`.
    Json(Value),
    /// A list of strings (PostgreSQL arrays).
    Strs(Vec<String>),
}

#[derive(Debug)]
pub(crate) struct Stmt {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Stmt {
    pub fn new(sql: String, args: Vec<Arg>) -> Self {
        Stmt { sql, args }
    }

    /// A statement written with `:name` parameters, rendered in the
    /// dialect's placeholders: `$n` (each name bound once) or `?` (bound
    /// again at each use). `::` (a cast) is left alone.
    pub fn named(style: Placeholders, sql: &str, params: &[(&str, Arg)]) -> Self {
        let b = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        let mut args = Vec::with_capacity(params.len());
        let mut numbered: Vec<(&str, usize)> = Vec::new();
        let (mut i, mut from) = (0, 0);
        while i < b.len() {
            if b[i] == b':' && b.get(i + 1) == Some(&b':') {
                i += 2;
                continue;
            }
            let name_len = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_lowercase() || **c == b'_')
                .count();
            if b[i] != b':' || name_len == 0 {
                i += 1;
                continue;
            }
            let name = &sql[i + 1..i + 1 + name_len];
            let Some((_, arg)) = params.iter().find(|(n, _)| *n == name) else {
                i += 1;
                continue;
            };
            out.push_str(&sql[from..i]);
            match style {
                Placeholders::Question => {
                    args.push(arg.clone());
                    out.push('?');
                }
                Placeholders::Numbered => {
                    let n = match numbered.iter().find(|(n, _)| *n == name) {
                        Some((_, n)) => *n,
                        None => {
                            args.push(arg.clone());
                            numbered.push((name, args.len()));
                            args.len()
                        }
                    };
                    out.push('$');
                    out.push_str(&n.to_string());
                }
            }
            i += 1 + name_len;
            from = i;
        }
        out.push_str(&sql[from..]);
        Stmt { sql: out, args }
    }
}

/// How a dialect writes bind parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholders {
    /// PostgreSQL's `$1`, `$2`…
    Numbered,
    /// MySQL's `?`, in order.
    Question,
}

/// What a statement's outcome means for the operation it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Any outcome.
    Any,
    /// No row changed: the ETag, or a live row, did not match.
    Changed,
    /// A unique-key violation: another writer got there first.
    Inserted,
}

/// A statement of a transaction, and the key it is about.
#[derive(Debug)]
pub(crate) struct Step {
    pub stmt: Stmt,
    pub expect: Expect,
    pub key: String,
}

/// A row read back.
pub(crate) struct Row {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub etag: i64,
    pub expires_at: Option<i64>,
}

/// The store's tables, validated and quoted by the dialect once.
pub(crate) struct Tables {
    pub schema: String,
    pub table: String,
    pub meta: String,
}

/// The part of an SQL state store that depends on the database.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The backend's name in messages.
    const NAME: &'static str;

    /// `"schema"."name"` in this dialect's quoting.
    fn quote(&self, schema: &str, name: &str) -> String;
    /// The `key` column, quoted.
    fn key_column(&self) -> &'static str;
    /// How a value's JSON copy is stored (`None`: not queryable).
    fn doc(&self, value: &[u8]) -> Arg;

    /// Creates the tables (concurrent sidecars may race to).
    fn create_tables(
        &self,
        t: &Tables,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    /// Runs the steps in one transaction: all or nothing.
    fn run(
        &self,
        steps: Vec<Step>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    fn fetch(
        &self,
        s: Stmt,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Row>, StateError>> + Send;
    fn execute(
        &self,
        s: Stmt,
        timeout: Duration,
    ) -> impl Future<Output = Result<u64, StateError>> + Send;

    fn placeholders(&self) -> Placeholders;
    /// What an update sets besides the row's own columns (PostgreSQL's
    /// `updated_at`).
    fn touch(&self) -> &'static str;

    /// Inserts, or revives an expired row; a live row wins (a mismatch).
    fn first_write(&self, t: &Tables, w: &Write<'_>) -> Vec<Step>;
    /// Inserts or overwrites; the ETag restarts at 1 on an expired row.
    fn last_write(&self, t: &Tables, w: &Write<'_>) -> Step;

    /// A statement in this dialect (see [`Stmt::named`]); `k` in the text
    /// is the quoted `key` column.
    fn stmt(&self, sql: &str, params: &[(&str, Arg)]) -> Stmt {
        Stmt::named(
            self.placeholders(),
            &sql.replace("{k}", self.key_column()),
            params,
        )
    }

    /// `UPDATE … WHERE key AND etag AND live`.
    fn update_if_etag(&self, t: &Tables, w: &Write<'_>, etag: i64) -> Step {
        let sql = format!(
            "UPDATE {} SET value = :value, doc = :doc, etag = etag + 1, expires_at = :exp{}
             WHERE {{k}} = :key AND etag = :etag AND {LIVE}",
            t.table,
            self.touch()
        );
        let mut p = w.params();
        p.push(("etag", Arg::Int(etag)));
        step(self.stmt(&sql, &p), Expect::Changed, w.key)
    }

    fn delete_if_etag(&self, t: &Tables, key: &str, etag: i64, now: i64) -> Step {
        let sql = format!(
            "DELETE FROM {} WHERE {{k}} = :key AND etag = :etag AND {LIVE}",
            t.table
        );
        let p = [
            ("key", Arg::Str(key.into())),
            ("etag", Arg::Int(etag)),
            ("now", Arg::Int(now)),
        ];
        step(self.stmt(&sql, &p), Expect::Changed, key)
    }

    fn delete(&self, t: &Tables, key: &str) -> Step {
        let sql = format!("DELETE FROM {} WHERE {{k}} = :key", t.table);
        step(
            self.stmt(&sql, &[("key", Arg::Str(key.into()))]),
            Expect::Any,
            key,
        )
    }

    fn get(&self, t: &Tables, key: &str, now: i64) -> Stmt {
        let sql = format!(
            "SELECT value, etag, expires_at FROM {} WHERE {{k}} = :key AND {LIVE}",
            t.table
        );
        self.stmt(
            &sql,
            &[("key", Arg::Str(key.into())), ("now", Arg::Int(now))],
        )
    }

    fn bulk_get(&self, t: &Tables, keys: &[String], now: i64) -> Stmt {
        let marks: Vec<String> = (0..keys.len())
            .map(|i| format!(":k_{}", letters(i)))
            .collect();
        let sql = format!(
            "SELECT {{k}}, value, etag, expires_at FROM {} WHERE {{k}} IN ({}) AND {LIVE}",
            t.table,
            marks.join(", ")
        );
        let names: Vec<String> = (0..keys.len())
            .map(|i| format!("k_{}", letters(i)))
            .collect();
        let mut p: Vec<(&str, Arg)> = names
            .iter()
            .zip(keys)
            .map(|(n, k)| (n.as_str(), Arg::Str(k.clone())))
            .collect();
        p.push(("now", Arg::Int(now)));
        self.stmt(&sql, &p)
    }

    fn purge_expired(&self, t: &Tables, now: i64) -> Stmt {
        let sql = format!(
            "DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= :now",
            t.table
        );
        self.stmt(&sql, &[("now", Arg::Int(now))])
    }

    /// The query's `SELECT key, value, etag … WHERE` keys under `prefix`,
    /// live, with a JSON copy.
    fn query_select(&self, t: &Tables, args: &mut Vec<Arg>, prefix: &str, now: i64) -> String;
    /// The field at `key` (dot path) compares to `v` with `op` (`=`, `<`…),
    /// and is of `v`'s JSON type.
    fn compare(&self, args: &mut Vec<Arg>, key: &str, op: &str, v: &Value) -> String;
    /// The field exists and is not equal to `v`.
    fn not_equal(&self, args: &mut Vec<Arg>, key: &str, v: &Value) -> String;
    /// `ORDER BY` terms for the field: missing last, then by value.
    fn sort(&self, args: &mut Vec<Arg>, key: &str, desc: bool) -> String;
    /// `LIMIT`/`OFFSET` for a page (`limit` rows, one more to tell if
    /// another page exists).
    fn page(&self, args: &mut Vec<Arg>, limit: Option<i64>, offset: i64) -> String;
}

/// An upsert's values, as every dialect needs them.
pub(crate) struct Write<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub doc: Arg,
    pub expires: Option<i64>,
    pub now: i64,
}

impl Write<'_> {
    /// `:key`, `:value`, `:doc`, `:exp`, `:now`.
    pub fn params(&self) -> Vec<(&'static str, Arg)> {
        vec![
            ("key", Arg::Str(self.key.into())),
            ("value", Arg::Bytes(self.value.to_vec())),
            ("doc", self.doc.clone()),
            ("exp", Arg::OptInt(self.expires)),
            ("now", Arg::Int(self.now)),
        ]
    }
}

/// A row is live until it expires.
pub(crate) const LIVE: &str = "(expires_at IS NULL OR expires_at > :now)";

pub(crate) fn step(stmt: Stmt, expect: Expect, key: &str) -> Step {
    Step {
        stmt,
        expect,
        key: key.to_string(),
    }
}

/// `a`, `b`, … `ba`…: parameter names are letters.
fn letters(mut i: usize) -> String {
    let mut s = String::new();
    loop {
        s.insert(0, (b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

pub(crate) struct SqlStore<D: Dialect> {
    inner: Arc<Inner<D>>,
}

pub(crate) struct Inner<D: Dialect> {
    d: D,
    t: Tables,
    timeout: Duration,
    ready: OnceCell<()>,
}

/// The metadata every SQL state store reads: its table names (checked as
/// identifiers), the timeout and the expired-row sweep.
pub(crate) struct Settings {
    pub schema: String,
    pub table: String,
    pub meta: String,
    pub timeout: Duration,
    pub cleanup: Option<Duration>,
}

impl Settings {
    /// `schema_field` names the schema (PostgreSQL `schema`, MySQL
    /// `schemaName`); `timeout` was read by the caller (its field differs).
    pub fn read(
        m: &Meta<'_>,
        c: &spar_config::Component,
        schema_field: &str,
        default_schema: &str,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let ident = |name: &str, default: &str| -> Result<String, BuildError> {
            let v = m.str_or(name, default);
            if crate::sql::valid_ident(&v) {
                Ok(v)
            } else {
                Err(m.error(
                    name,
                    format!("{v:?} must be letters, digits and '_' (max 63)"),
                ))
            }
        };
        let table = ident("tableName", "state")?;
        Ok(Settings {
            schema: ident(schema_field, default_schema)?,
            meta: ident("metadataTableName", &format!("{table}_metadata"))?,
            table,
            timeout,
            cleanup: cleanup_interval(c)?,
        })
    }
}

impl<D: Dialect> SqlStore<D> {
    pub(crate) fn new(d: D, s: &Settings) -> Self {
        let t = Tables {
            schema: s.schema.clone(),
            table: d.quote(&s.schema, &s.table),
            meta: d.quote(&s.schema, &s.meta),
        };
        let store = SqlStore {
            inner: Arc::new(Inner {
                d,
                t,
                timeout: s.timeout,
                ready: OnceCell::new(),
            }),
        };
        if let Some(period) = s.cleanup {
            every(Arc::downgrade(&store.inner), period, |s| async move {
                let stmt = s.d.purge_expired(&s.t, now_ms());
                if let Err(e) = s.d.execute(stmt, s.timeout).await {
                    tracing::warn!("{} state cleanup failed: {e}", D::NAME);
                }
            });
        }
        store
    }
}

impl<D: Dialect> Inner<D> {
    /// Creates the tables once (tried again after a failure).
    async fn ready(&self) -> Result<(), StateError> {
        self.ready
            .get_or_try_init(|| self.d.create_tables(&self.t, self.timeout))
            .await
            .map(|_| ())
    }

    fn steps(&self, op: &Operation, now: i64, out: &mut Vec<Step>) -> Result<(), StateError> {
        match op {
            Operation::Upsert(r) => {
                let w = Write {
                    key: &r.key,
                    value: &r.value,
                    doc: self.d.doc(&r.value),
                    expires: expires_ms(r.ttl, now),
                    now,
                };
                match (&r.etag, r.concurrency) {
                    (Some(e), _) => out.push(self.d.update_if_etag(&self.t, &w, parse_etag(e)?)),
                    (None, Concurrency::FirstWrite) => out.extend(self.d.first_write(&self.t, &w)),
                    (None, Concurrency::LastWrite) => out.push(self.d.last_write(&self.t, &w)),
                }
            }
            Operation::Delete(r) => out.push(match &r.etag {
                Some(e) => self.d.delete_if_etag(&self.t, &r.key, parse_etag(e)?, now),
                None => self.d.delete(&self.t, &r.key),
            }),
        }
        Ok(())
    }

    async fn transact(&self, ops: &[Operation]) -> Result<(), StateError> {
        self.ready().await?;
        let now = now_ms();
        let mut steps = Vec::with_capacity(ops.len());
        for op in ops {
            self.steps(op, now, &mut steps)?;
        }
        self.d.run(steps, self.timeout).await
    }

    fn query_stmt(&self, prefix: &str, q: &Query, now: i64) -> Stmt {
        let mut args = Vec::new();
        let mut sql = self.d.query_select(&self.t, &mut args, prefix, now);
        if let Some(f) = &q.filter {
            sql.push_str(" AND ");
            sql.push_str(&self.filter(&mut args, f));
        }
        sql.push_str(" ORDER BY ");
        for s in &q.sort {
            sql.push_str(&self.d.sort(&mut args, &s.key, s.order == SortOrder::Desc));
            sql.push_str(", ");
        }
        sql.push_str(self.d.key_column());
        sql.push_str(" ASC");
        let clamp = |n: usize| n.min(i64::MAX as usize) as i64;
        let limit = q.page.limit.map(|l| clamp(l.saturating_add(1)));
        sql.push_str(&self.d.page(&mut args, limit, clamp(q.offset())));
        Stmt::new(sql, args)
    }

    fn filter(&self, args: &mut Vec<Arg>, f: &Filter) -> String {
        let join = |args: &mut Vec<Arg>, fs: &[Filter], sep: &str| {
            let parts: Vec<String> = fs.iter().map(|f| self.filter(args, f)).collect();
            format!("({})", parts.join(sep))
        };
        match f {
            Filter::Eq(k, v) => self.d.compare(args, k, "=", v),
            Filter::Gt(k, v) => self.d.compare(args, k, ">", v),
            Filter::Gte(k, v) => self.d.compare(args, k, ">=", v),
            Filter::Lt(k, v) => self.d.compare(args, k, "<", v),
            Filter::Lte(k, v) => self.d.compare(args, k, "<=", v),
            Filter::Neq(k, v) => self.d.not_equal(args, k, v),
            Filter::In(k, vs) => {
                let eqs: Vec<Filter> = vs
                    .iter()
                    .map(|v| Filter::Eq(k.clone(), v.clone()))
                    .collect();
                join(args, &eqs, " OR ")
            }
            Filter::And(fs) => join(args, fs, " AND "),
            Filter::Or(fs) => join(args, fs, " OR "),
        }
    }
}

fn to_item(r: Row) -> Item {
    item(r.value, r.etag, r.expires_at)
}

#[async_trait]
impl<D: Dialect> StateStore for SqlStore<D> {
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
        let rows =
            s.d.fetch(s.d.get(&s.t, &req.key, now_ms()), s.timeout)
                .await?;
        Ok(rows.into_iter().next().map(to_item))
    }

    /// One round trip for all keys.
    async fn bulk_get(&self, reqs: &[GetRequest]) -> Result<Vec<BulkItem>, StateError> {
        let s = &self.inner;
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        s.ready().await?;
        let keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
        let rows =
            s.d.fetch(s.d.bulk_get(&s.t, &keys, now_ms()), s.timeout)
                .await?;
        let mut found: HashMap<String, Item> = rows
            .into_iter()
            .filter_map(|r| Some((r.key.clone()?, to_item(r))))
            .collect();
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
        let rows =
            s.d.fetch(s.query_stmt(prefix, q, now_ms()), s.timeout)
                .await?;
        let results = rows
            .into_iter()
            .map(|r| QueryResult {
                key: r.key.unwrap_or_default(),
                data: r.value,
                etag: Some(r.etag.to_string()),
            })
            .collect();
        Ok(page(results, q))
    }
}

/// A statement's failure as the store reports it; the steps' expectations
/// turn "no row" and "duplicate key" into ETag mismatches.
pub(crate) fn outcome(
    step: &Step,
    result: Result<u64, sqlx::Error>,
    lost_race: impl Fn(&sqlx::Error) -> bool,
    backend: &str,
) -> Result<(), StateError> {
    match (step.expect, result) {
        (Expect::Changed, Ok(0)) => Err(mismatch(&step.key)),
        (_, Ok(_)) => Ok(()),
        (Expect::Inserted, Err(e)) if lost_race(&e) => Err(mismatch(&step.key)),
        (_, Err(e)) => Err(StateError::Backend(format!("{backend}: {e}"))),
    }
}

/// A statement's own result within the timeout (its error is then judged
/// by the step's expectation); only the timeout is an error here.
pub(crate) async fn timed<T>(
    backend: &str,
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<Result<T, sqlx::Error>, StateError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| StateError::Backend(format!("{backend}: no answer within {timeout:?}")))
}

/// A database call bounded by the store's timeout.
pub(crate) async fn bounded<T>(
    backend: &str,
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StateError> {
    crate::sql::bounded(backend, timeout, f)
        .await
        .map_err(StateError::Backend)
}

/// The running half of a [`Dialect`] — one transaction for the steps,
/// rows read back, statements executed — written once for every sqlx
/// driver. A macro, because sqlx's drivers share no trait for it that is
/// simpler than this code. Expects, in scope: `NAME`, `query(&Stmt)` (the
/// driver's binds), `row(&DriverRow)` and `lost_race(&sqlx::Error)`.
macro_rules! run_with_sqlx {
    () => {
        async fn run(&self, steps: Vec<Step>, timeout: Duration) -> Result<(), StateError> {
            let pool = self.pools.get();
            let mut tx = bounded(NAME, timeout, pool.begin()).await?;
            for s in &steps {
                let r = timed(NAME, timeout, query(&s.stmt).execute(&mut *tx)).await?;
                // An early return drops `tx`, which rolls everything back.
                outcome(s, r.map(|d| d.rows_affected()), lost_race, NAME)?;
            }
            bounded(NAME, timeout, tx.commit()).await
        }

        async fn fetch(&self, s: Stmt, timeout: Duration) -> Result<Vec<Row>, StateError> {
            let pool = self.pools.get();
            let rows = bounded(NAME, timeout, query(&s).fetch_all(&pool)).await?;
            rows.iter()
                .map(row)
                .collect::<Result<_, _>>()
                .map_err(|e| StateError::Backend(format!("{NAME}: {e}")))
        }

        async fn execute(&self, s: Stmt, timeout: Duration) -> Result<u64, StateError> {
            let pool = self.pools.get();
            Ok(bounded(NAME, timeout, query(&s).execute(&pool))
                .await?
                .rows_affected())
        }
    };
}
pub(crate) use run_with_sqlx;

/// A driver row as a [`Row`]: `key` and `expires_at` when the statement
/// selected them.
macro_rules! row_from_sqlx {
    ($row:ty) => {
        fn row(r: &$row) -> Result<Row, sqlx::Error> {
            Ok(Row {
                key: r.try_get("key").ok(),
                value: r.try_get("value")?,
                etag: r.try_get("etag")?,
                expires_at: r.try_get("expires_at").unwrap_or(None),
            })
        }
    };
}
pub(crate) use row_from_sqlx;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn named_parameters() {
        let p = [("key", Arg::Str("k".into())), ("now", Arg::Int(1))];
        let sql = "SELECT x::text FROM t WHERE k = :key AND (e > :now OR :now = 0) AND k <> :key";
        let n = Stmt::named(Placeholders::Numbered, sql, &p);
        assert_eq!(
            n.sql,
            "SELECT x::text FROM t WHERE k = $1 AND (e > $2 OR $2 = 0) AND k <> $1"
        );
        assert_eq!(n.args.len(), 2);
        let q = Stmt::named(Placeholders::Question, sql, &p);
        assert_eq!(
            q.sql,
            "SELECT x::text FROM t WHERE k = ? AND (e > ? OR ? = 0) AND k <> ?"
        );
        assert_eq!(q.args.len(), 4);
        assert_eq!(letters(0), "a");
        assert_eq!(letters(27), "bb");
    }

    /// Every placeholder of a generated query has its argument.
    pub fn query_for<D: Dialect>(d: D, q: &str) -> Stmt {
        let store = SqlStore::new(
            d,
            &Settings {
                schema: "s".into(),
                table: "t".into(),
                meta: "m".into(),
                timeout: Duration::from_secs(1),
                cleanup: None,
            },
        );
        let q = Query::parse(q.as_bytes()).unwrap();
        store.inner.query_stmt("app||", &q, 0)
    }
}
