//! `state.mysql` (MySQL and MariaDB): the SQL state store (`sql_store.rs`)
//! in MySQL's dialect — `JSON` copies of JSON values queried with
//! `JSON_EXTRACT`, a first-write that purges an expired row then inserts
//! (the primary key decides a race), sessions at READ COMMITTED.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::mysql::{MySqlArguments, MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, MySql, Row as _};

use super::sql_store::{
    bounded, outcome, row_from_sqlx, run_with_sqlx, step, timed, Arg, Dialect, Expect,
    Placeholders, Row, Settings, SqlStore, Step, Stmt, Tables, Write, SCHEMA_VERSION,
};
use super::{StateError, StateStore};
use crate::meta::Meta;
use crate::per_thread::PerThread;
use crate::registry::{BuildContext, BuildError};

const NAME: &str = "mysql";

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let m = Meta::new(c);
    let opts = crate::sql::mysql::connect_options(&m.required("connectionString")?)
        .map_err(|e| m.error("connectionString", e))?;
    let timeout = Duration::from_secs(m.int::<u64>("timeoutInSeconds", 20)?);
    let settings = Settings::read(&m, c, "schemaName", "dapr_state_store", timeout)?;
    let pools = crate::sql::mysql::pools(opts, 8, timeout);
    Ok(Arc::new(SqlStore::new(My { pools }, &settings)))
}

pub(crate) struct My {
    pools: PerThread<MySqlPool>,
}

/// Binds a statement's arguments (by reference: no copies of values).
fn query(s: &Stmt) -> sqlx::query::Query<'_, MySql, MySqlArguments> {
    let mut q = sqlx::query(AssertSqlSafe(s.sql.as_str()));
    for a in &s.args {
        q = match a {
            Arg::Str(v) => q.bind(v.as_str()),
            Arg::Bytes(v) => q.bind(v.as_slice()),
            Arg::Int(v) => q.bind(*v),
            Arg::OptInt(v) => q.bind(*v),
            Arg::Float(v) => q.bind(*v),
            Arg::OptStr(v) => q.bind(v.as_deref()),
            // MySQL keeps JSON as text.
            Arg::Doc(v) => q.bind(v.as_ref().map(Value::to_string)),
            Arg::Json(v) => q.bind(v.to_string()),
            Arg::Strs(v) => q.bind(v.join(",")),
        };
    }
    q
}

row_from_sqlx!(MySqlRow);

/// Duplicate key or deadlock on a first-write insert: another writer won.
fn lost_race(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23000" || c == "40001")
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
const EXTRACT: &str = "JSON_EXTRACT(`doc`, ?)";

impl Dialect for My {
    const NAME: &'static str = NAME;

    fn quote(&self, schema: &str, name: &str) -> String {
        format!("`{schema}`.`{name}`")
    }

    fn key_column(&self) -> &'static str {
        "`key`"
    }

    fn placeholders(&self) -> Placeholders {
        Placeholders::Question
    }

    fn touch(&self) -> &'static str {
        ""
    }

    /// The value itself, when it is JSON text.
    fn doc(&self, value: &[u8]) -> Arg {
        Arg::OptStr(
            serde_json::from_slice::<serde::de::IgnoredAny>(value)
                .ok()
                .and_then(|_| std::str::from_utf8(value).ok())
                .map(str::to_owned),
        )
    }

    async fn create_tables(&self, t: &Tables, timeout: Duration) -> Result<(), StateError> {
        let ddl = [
            format!("CREATE DATABASE IF NOT EXISTS `{}`", t.schema),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                    `key` VARCHAR(512) NOT NULL PRIMARY KEY,
                    `value` LONGBLOB NOT NULL,
                    `doc` JSON NULL,
                    `etag` BIGINT NOT NULL,
                    `expires_at` BIGINT NULL,
                    INDEX (`expires_at`)
                 ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                t.table
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (`key` VARCHAR(255) NOT NULL PRIMARY KEY, `value` TEXT NOT NULL) ENGINE=InnoDB",
                t.meta
            ),
            format!(
                "INSERT IGNORE INTO {} (`key`, `value`) VALUES ('schema_version', '{SCHEMA_VERSION}')",
                t.meta
            ),
        ];
        let pool = self.pools.get();
        for sql in ddl {
            bounded(
                NAME,
                timeout,
                sqlx::query(AssertSqlSafe(sql)).execute(&pool),
            )
            .await?;
        }
        Ok(())
    }

    run_with_sqlx!();

    fn first_write(&self, t: &Tables, w: &Write<'_>) -> Vec<Step> {
        let t = &t.table;
        let purge = format!(
            "DELETE FROM {t} WHERE `key` = :key AND expires_at IS NOT NULL AND expires_at <= :now"
        );
        let insert = format!(
            "INSERT INTO {t} (`key`, value, doc, etag, expires_at) VALUES (:key, :value, :doc, 1, :exp)"
        );
        let p = w.params();
        vec![
            step(self.stmt(&purge, &p), Expect::Any, w.key),
            step(self.stmt(&insert, &p), Expect::Inserted, w.key),
        ]
    }

    fn last_write(&self, t: &Tables, w: &Write<'_>) -> Step {
        // `etag` is assigned before `expires_at` so it sees the old expiry.
        let sql = format!(
            "INSERT INTO {} (`key`, value, doc, etag, expires_at) VALUES (:key, :value, :doc, 1, :exp)
             ON DUPLICATE KEY UPDATE
               etag = IF(expires_at IS NOT NULL AND expires_at <= :now, 1, etag + 1),
               value = VALUES(value), doc = VALUES(doc), expires_at = VALUES(expires_at)",
            t.table
        );
        step(self.stmt(&sql, &w.params()), Expect::Any, w.key)
    }

    fn query_select(&self, t: &Tables, args: &mut Vec<Arg>, prefix: &str, now: i64) -> String {
        args.extend([
            Arg::Str(prefix.into()),
            Arg::Str(prefix.into()),
            Arg::Int(now),
        ]);
        format!(
            "SELECT `key`, value, etag FROM {} WHERE LEFT(`key`, CHAR_LENGTH(?)) = ? AND (expires_at IS NULL OR expires_at > ?) AND doc IS NOT NULL",
            t.table
        )
    }

    /// Typed: strings compare byte-wise, numbers as doubles, booleans as
    /// words; `null` equals only `null`.
    fn compare(&self, args: &mut Vec<Arg>, key: &str, op: &str, v: &Value) -> String {
        let path = json_path(key);
        match v {
            Value::String(s) => {
                args.extend([Arg::Str(path.clone()), Arg::Str(path), Arg::Str(s.clone())]);
                format!("(JSON_TYPE({EXTRACT}) = 'STRING' AND JSON_UNQUOTE({EXTRACT}) COLLATE utf8mb4_bin {op} CAST(? AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin)")
            }
            Value::Number(n) => {
                args.extend([
                    Arg::Str(path.clone()),
                    Arg::Str(path),
                    Arg::Float(n.as_f64().unwrap_or(0.0)),
                ]);
                format!(
                    "(JSON_TYPE({EXTRACT}) IN {NUMBER_TYPES} AND CAST({EXTRACT} AS DOUBLE) {op} ?)"
                )
            }
            Value::Bool(b) => {
                args.extend([
                    Arg::Str(path.clone()),
                    Arg::Str(path),
                    Arg::Str(b.to_string()),
                ]);
                format!("(JSON_TYPE({EXTRACT}) = 'BOOLEAN' AND JSON_UNQUOTE({EXTRACT}) {op} ?)")
            }
            _ => {
                args.push(Arg::Str(path));
                format!("(JSON_TYPE({EXTRACT}) = 'NULL' AND '{op}' IN ('=', '>=', '<='))")
            }
        }
    }

    fn not_equal(&self, args: &mut Vec<Arg>, key: &str, v: &Value) -> String {
        args.push(Arg::Str(json_path(key)));
        let eq = self.compare(args, key, "=", v);
        format!("({EXTRACT} IS NOT NULL AND NOT {eq})")
    }

    /// Missing last; numbers numerically; strings byte-wise.
    fn sort(&self, args: &mut Vec<Arg>, key: &str, desc: bool) -> String {
        let p = json_path(key);
        args.extend((0..4).map(|_| Arg::Str(p.clone())));
        let dir = if desc { "DESC" } else { "ASC" };
        format!(
            "{EXTRACT} IS NULL, CASE WHEN JSON_TYPE({EXTRACT}) IN {NUMBER_TYPES} THEN CAST({EXTRACT} AS DOUBLE) END {dir}, JSON_UNQUOTE({EXTRACT}) COLLATE utf8mb4_bin {dir}"
        )
    }

    fn page(&self, args: &mut Vec<Arg>, limit: Option<i64>, offset: i64) -> String {
        match limit {
            Some(l) => {
                args.extend([Arg::Int(l), Arg::Int(offset)]);
                " LIMIT ? OFFSET ?".into()
            }
            None if offset > 0 => {
                args.push(Arg::Int(offset));
                " LIMIT 18446744073709551615 OFFSET ?".into()
            }
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn placeholders_match_args() {
        let d = My {
            pools: crate::sql::mysql::pools(
                crate::sql::mysql::connect_options("root:@tcp(127.0.0.1:3306)/").unwrap(),
                1,
                Duration::from_secs(1),
            ),
        };
        let s = super::super::sql_store::tests::query_for(
            d,
            r#"{"filter":{"OR":[{"EQ":{"a-b.c":"x"}},{"NEQ":{"n":1}},{"IN":{"f":[true,null]}}]},"sort":[{"key":"n"}],"page":{"limit":3}}"#,
        );
        assert_eq!(s.sql.matches('?').count(), s.args.len(), "{}", s.sql);
        assert!(
            s.sql.contains("JSON_EXTRACT") && !s.sql.contains("a-b"),
            "{}",
            s.sql
        );
        assert_eq!(json_path("a-b.c"), "$.\"a-b\".\"c\"");
    }
}
