//! `state.postgresql`: the SQL state store (`sql_store.rs`) in PostgreSQL's
//! dialect — `jsonb` copies of JSON values queried with `#>` paths, a
//! first-write that only revives an expired row, tables created under an
//! advisory lock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row as _};

use super::sql_store::{
    bounded, outcome, row_from_sqlx, run_with_sqlx, step, timed, Arg, Dialect, Expect,
    Placeholders, Row, Settings, SqlStore, Step, Stmt, Tables, Write, SCHEMA_VERSION,
};
use super::{StateError, StateStore};
use crate::meta::Meta;
use crate::per_thread::PerThread;
use crate::registry::{BuildContext, BuildError};

const NAME: &str = "postgresql";

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let m = Meta::new(c);
    let opts = crate::sql::postgres::connect_options(&m.required("connectionString")?)
        .map_err(|e| m.error("connectionString", e))?;
    let timeout = m.duration("timeout", Duration::from_secs(20))?;
    let settings = Settings::read(&m, c, "schema", "public", timeout)?;
    let max_conns = m.int::<u32>("maxConns", 8)?;
    let pools = crate::sql::postgres::pools(opts, max_conns, timeout);
    Ok(Arc::new(SqlStore::new(Pg { pools }, &settings)))
}

pub(crate) struct Pg {
    pools: PerThread<PgPool>,
}

/// Binds a statement's arguments (by reference: no copies of values).
fn query(s: &Stmt) -> sqlx::query::Query<'_, Postgres, PgArguments> {
    let mut q = sqlx::query(AssertSqlSafe(s.sql.as_str()));
    for a in &s.args {
        q = match a {
            Arg::Str(v) => q.bind(v.as_str()),
            Arg::Bytes(v) => q.bind(v.as_slice()),
            Arg::Int(v) => q.bind(*v),
            Arg::OptInt(v) => q.bind(*v),
            Arg::Float(v) => q.bind(*v),
            Arg::Doc(v) => q.bind(v.as_ref().map(Json)),
            Arg::OptStr(v) => q.bind(v.as_deref()),
            Arg::Json(v) => q.bind(Json(v)),
            Arg::Strs(v) => q.bind(v.as_slice()),
        };
    }
    q
}

row_from_sqlx!(PgRow);

/// Another writer won a first-write or serialisation race.
fn lost_race(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505" || c == "40001")
}

/// `$n` for the argument just pushed.
fn push(args: &mut Vec<Arg>, a: Arg) -> usize {
    args.push(a);
    args.len()
}

fn path(args: &mut Vec<Arg>, key: &str) -> usize {
    push(
        args,
        Arg::Strs(key.split('.').map(str::to_string).collect()),
    )
}

impl Dialect for Pg {
    const NAME: &'static str = NAME;

    fn quote(&self, schema: &str, name: &str) -> String {
        format!("\"{schema}\".\"{name}\"")
    }

    fn key_column(&self) -> &'static str {
        "key"
    }

    fn placeholders(&self) -> Placeholders {
        Placeholders::Numbered
    }

    fn touch(&self) -> &'static str {
        ", updated_at = now()"
    }

    /// No copy for a value holding a NUL, which `jsonb` can't store.
    fn doc(&self, value: &[u8]) -> Arg {
        if value.contains(&0) || value.windows(6).any(|w| w == b"\\u0000") {
            return Arg::Doc(None);
        }
        Arg::Doc(serde_json::from_slice::<Value>(value).ok())
    }

    async fn create_tables(&self, t: &Tables, timeout: Duration) -> Result<(), StateError> {
        let table = &t.table;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                key TEXT NOT NULL PRIMARY KEY,
                value BYTEA NOT NULL,
                doc JSONB,
                etag BIGINT NOT NULL,
                expires_at BIGINT,
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        );
        let meta = format!(
            "CREATE TABLE IF NOT EXISTS {} (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
            t.meta
        );
        let version = format!(
            "INSERT INTO {} (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO NOTHING",
            t.meta
        );
        let pool = self.pools.get();
        let mut tx = bounded(NAME, timeout, pool.begin()).await?;
        // Concurrent sidecars may race to create the same table.
        bounded(
            NAME,
            timeout,
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(table)
                .execute(&mut *tx),
        )
        .await?;
        bounded(
            NAME,
            timeout,
            sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx),
        )
        .await?;
        bounded(
            NAME,
            timeout,
            sqlx::query(AssertSqlSafe(meta)).execute(&mut *tx),
        )
        .await?;
        bounded(
            NAME,
            timeout,
            sqlx::query(AssertSqlSafe(version))
                .bind(SCHEMA_VERSION.to_string())
                .execute(&mut *tx),
        )
        .await?;
        bounded(NAME, timeout, tx.commit()).await
    }

    run_with_sqlx!();

    fn first_write(&self, t: &Tables, w: &Write<'_>) -> Vec<Step> {
        let t = &t.table;
        let sql = format!(
            "INSERT INTO {t} (key, value, doc, etag, expires_at) VALUES (:key, :value, :doc, 1, :exp)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, doc = excluded.doc,
               etag = 1, expires_at = excluded.expires_at, updated_at = now()
             WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= :now"
        );
        vec![step(self.stmt(&sql, &w.params()), Expect::Changed, w.key)]
    }

    fn last_write(&self, t: &Tables, w: &Write<'_>) -> Step {
        let t = &t.table;
        let sql = format!(
            "INSERT INTO {t} (key, value, doc, etag, expires_at) VALUES (:key, :value, :doc, 1, :exp)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, doc = excluded.doc,
               etag = CASE WHEN {t}.expires_at IS NOT NULL AND {t}.expires_at <= :now THEN 1 ELSE {t}.etag + 1 END,
               expires_at = excluded.expires_at, updated_at = now()"
        );
        step(self.stmt(&sql, &w.params()), Expect::Any, w.key)
    }

    fn query_select(&self, t: &Tables, args: &mut Vec<Arg>, prefix: &str, now: i64) -> String {
        args.extend([Arg::Str(prefix.into()), Arg::Int(now)]);
        format!(
            "SELECT key, value, etag FROM {} WHERE starts_with(key, $1) AND (expires_at IS NULL OR expires_at > $2) AND doc IS NOT NULL",
            t.table
        )
    }

    /// `jsonb` compares numbers numerically and strings as text.
    fn compare(&self, args: &mut Vec<Arg>, key: &str, op: &str, v: &Value) -> String {
        let p = path(args, key);
        let a = push(args, Arg::Json(v.clone()));
        format!("(jsonb_typeof(doc #> ${p}) = jsonb_typeof(${a}::jsonb) AND doc #> ${p} {op} ${a}::jsonb)")
    }

    fn not_equal(&self, args: &mut Vec<Arg>, key: &str, v: &Value) -> String {
        let p = path(args, key);
        let a = push(args, Arg::Json(v.clone()));
        format!("(doc #> ${p} IS NOT NULL AND doc #> ${p} <> ${a}::jsonb)")
    }

    fn sort(&self, args: &mut Vec<Arg>, key: &str, desc: bool) -> String {
        let p = path(args, key);
        let dir = if desc { "DESC" } else { "ASC" };
        format!("(doc #> ${p}) IS NULL, doc #> ${p} {dir}")
    }

    fn page(&self, args: &mut Vec<Arg>, limit: Option<i64>, offset: i64) -> String {
        match limit {
            Some(l) => {
                let l = push(args, Arg::Int(l));
                let o = push(args, Arg::Int(offset));
                format!(" LIMIT ${l} OFFSET ${o}")
            }
            None if offset > 0 => format!(" OFFSET ${}", push(args, Arg::Int(offset))),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn query_binds_everything() {
        let d = Pg {
            pools: crate::sql::postgres::pools(
                crate::sql::postgres::connect_options("host=127.0.0.1").unwrap(),
                1,
                Duration::from_secs(1),
            ),
        };
        let s = super::super::sql_store::tests::query_for(
            d,
            r#"{"filter":{"AND":[{"EQ":{"a.b":"x'; drop table t; --"}},{"IN":{"n":[1,2]}}]},"sort":[{"key":"n","order":"DESC"}],"page":{"limit":2,"token":"4"}}"#,
        );
        assert!(!s.sql.contains("drop"), "{}", s.sql);
        assert!(
            !s.sql.contains("a.b") && !s.sql.contains("app||"),
            "{}",
            s.sql
        );
        assert_eq!(s.args.len(), 2 + 2 + 4 + 1 + 2);
        let highest = (1..=s.args.len())
            .rev()
            .find(|n| s.sql.contains(&format!("${n}")));
        assert_eq!(highest, Some(s.args.len()));
    }
}
