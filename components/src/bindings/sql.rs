//! `bindings.postgresql` and `bindings.mysql`: output bindings running the
//! statement in the call's `sql` metadata with the JSON array in `params`
//! bound to its placeholders (`$1` / `?`), as daprd's: `exec` (answers
//! metadata with `rows-affected`), `query` (answers the rows as JSON:
//! arrays for PostgreSQL, objects by column for MySQL), `close` (drops
//! this thread's pool; the next call reconnects). Connections, pools and
//! bounds are the shared `sql/` layer's; only the dialect differs here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::{Binding, BindingError, InvokeRequest, InvokeResponse};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::per_thread::PerThread;
use crate::sql::rows::{self, bind_all};

const EXEC: &str = "exec";
const QUERY: &str = "query";
const CLOSE: &str = "close";

enum Pools {
    Pg(PerThread<sqlx::PgPool>),
    My(PerThread<sqlx::MySqlPool>),
}

pub struct SqlBinding {
    pools: Pools,
    backend: &'static str,
    timeout: Duration,
}

fn common(c: &spar_config::Component) -> Result<(String, u32, Duration), BuildError> {
    let m = Meta::new(c);
    Ok((
        m.required("connectionString")?,
        m.int("maxConns", 4u32)?,
        m.duration("timeout", Duration::from_secs(20))?,
    ))
}

pub fn build_postgres(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let (conn, max, timeout) = common(c)?;
    let opts = crate::sql::postgres::connect_options(&conn)
        .map_err(|e| Meta::new(c).error("connectionString", e))?;
    Ok(Arc::new(SqlBinding {
        pools: Pools::Pg(crate::sql::postgres::pools(opts, max, timeout)),
        backend: "postgresql",
        timeout,
    }))
}

pub fn build_mysql(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let (conn, max, timeout) = common(c)?;
    let opts = crate::sql::mysql::connect_options(&conn)
        .map_err(|e| Meta::new(c).error("connectionString", e))?;
    Ok(Arc::new(SqlBinding {
        pools: Pools::My(crate::sql::mysql::pools(opts, max, timeout)),
        backend: "mysql",
        timeout,
    }))
}

/// `2026-12-05T10:00:00.123456789Z`, as daprd's metadata times.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = spar_config::schedule::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_nanos()
    )
}

impl SqlBinding {
    /// Runs `sql` with `params`: rows for `query`, rows affected for `exec`.
    async fn run(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        query: bool,
    ) -> Result<(Option<serde_json::Value>, u64), String> {
        match &self.pools {
            Pools::Pg(p) => {
                let pool = p.get();
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), params);
                if query {
                    let rows =
                        crate::sql::bounded(self.backend, self.timeout, q.fetch_all(&pool)).await?;
                    Ok((Some(rows::pg_rows(&rows)), rows.len() as u64))
                } else {
                    let r =
                        crate::sql::bounded(self.backend, self.timeout, q.execute(&pool)).await?;
                    Ok((None, r.rows_affected()))
                }
            }
            Pools::My(p) => {
                let pool = p.get();
                let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), params);
                if query {
                    let rows =
                        crate::sql::bounded(self.backend, self.timeout, q.fetch_all(&pool)).await?;
                    Ok((Some(rows::mysql_rows(&rows)), rows.len() as u64))
                } else {
                    let r =
                        crate::sql::bounded(self.backend, self.timeout, q.execute(&pool)).await?;
                    Ok((None, r.rows_affected()))
                }
            }
        }
    }
}

#[async_trait]
impl Binding for SqlBinding {
    async fn init(&self) -> Result<(), BindingError> {
        self.run("SELECT 1", &[], false)
            .await
            .map(|_| ())
            .map_err(BindingError::Backend)
    }

    fn operations(&self) -> &[&'static str] {
        &[EXEC, QUERY, CLOSE]
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let op = req.operation.as_str();
        if op == CLOSE {
            match &self.pools {
                Pools::Pg(p) => p.get().close().await,
                Pools::My(p) => p.get().close().await,
            }
            return Ok(None);
        }
        if op != EXEC && op != QUERY {
            return Err(BindingError::Unsupported(format!(
                "invalid operation type: {op}. Expected exec, query or close"
            )));
        }
        let sql = req
            .metadata
            .get("sql")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| BindingError::BadRequest("required metadata not set: sql".into()))?;
        let params = rows::params(req.metadata.get("params")).map_err(BindingError::BadRequest)?;
        let (start, started) = (SystemTime::now(), Instant::now());
        let (rows, affected) = self
            .run(sql, &params, op == QUERY)
            .await
            .map_err(BindingError::Backend)?;
        let mut metadata = HashMap::from([
            ("operation".to_string(), op.to_string()),
            ("sql".to_string(), sql.clone()),
            ("start-time".to_string(), rfc3339(start)),
            ("end-time".to_string(), rfc3339(SystemTime::now())),
            ("duration".to_string(), format!("{:?}", started.elapsed())),
        ]);
        if op == EXEC {
            metadata.insert("rows-affected".to_string(), affected.to_string());
        }
        Ok(Some(InvokeResponse {
            data: rows
                .map(|r| serde_json::to_vec(&r).unwrap_or_default())
                .unwrap_or_default(),
            metadata,
        }))
    }
}
