//! `lock.postgresql`: locks as rows of one table (`resource`, `owner`,
//! `expires_at`), expiry on the database server's clock so sidecars on
//! different hosts agree. Taking a lock is one statement — insert, or take
//! over a row whose expiry has passed — which PostgreSQL runs atomically
//! against concurrent takers; releasing deletes the row only for its
//! owner. Expired rows nobody took over are swept every `cleanupInterval`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row as _};

use super::{LockError, LockStore, UnlockStatus};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::per_thread::PerThread;
use crate::sql::bounded;

const NAME: &str = "postgresql";

pub struct PgLock {
    inner: Arc<Inner>,
}

struct Inner {
    pools: PerThread<PgPool>,
    /// `"schema"."table"`, checked identifiers.
    table: String,
    /// The bare names, for the creation lock and the index.
    raw_table: String,
    timeout: Duration,
    try_sql: String,
    release_sql: String,
    held_sql: String,
    sweep_sql: String,
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn LockStore>, BuildError> {
    let m = Meta::new(c);
    let opts = crate::sql::postgres::connect_options(&m.required("connectionString")?)
        .map_err(|e| m.error("connectionString", e))?;
    let timeout = m.duration("timeout", Duration::from_secs(20))?;
    let schema = m.str_or("schema", "public");
    let table = m.str_or("tableName", "dapr_lock");
    for (field, v) in [("schema", &schema), ("tableName", &table)] {
        if !crate::sql::valid_ident(v) {
            return Err(m.error(field, format!("{v:?} must be letters, digits and '_'")));
        }
    }
    let max_conns = m.int::<u32>("maxConns", 8)?;
    let cleanup = crate::sweep::cleanup_interval(c)?;
    let t = format!("\"{schema}\".\"{table}\"");
    let inner = Arc::new(Inner {
        pools: crate::sql::postgres::pools(opts, max_conns, timeout),
        try_sql: format!(
            "INSERT INTO {t} (resource, owner, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (resource) DO UPDATE
               SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
               WHERE {t}.expires_at <= now()"
        ),
        release_sql: format!(
            "DELETE FROM {t} WHERE resource = $1 AND owner = $2 AND expires_at > now()"
        ),
        held_sql: format!("SELECT owner FROM {t} WHERE resource = $1 AND expires_at > now()"),
        sweep_sql: format!("DELETE FROM {t} WHERE expires_at <= now()"),
        raw_table: format!("{schema}.{table}"),
        table: t,
        timeout,
    });
    if let Some(period) = cleanup {
        crate::sweep::every(Arc::downgrade(&inner), period, |i| async move {
            if let Err(e) = i.sweep().await {
                tracing::warn!("postgresql lock cleanup failed: {e}");
            }
        });
    }
    Ok(Arc::new(PgLock { inner }))
}

fn failed(e: String) -> LockError {
    LockError::Backend(e)
}

impl Inner {
    async fn sweep(&self) -> Result<(), String> {
        let pool = self.pools.get();
        bounded(
            NAME,
            self.timeout,
            sqlx::query(AssertSqlSafe(self.sweep_sql.as_str())).execute(&pool),
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl LockStore for PgLock {
    /// Reaches the server and creates the table, under an advisory lock so
    /// sidecars starting together do not race to create it.
    async fn init(&self) -> Result<(), LockError> {
        let i = &self.inner;
        let pool = i.pools.get();
        let t = &i.table;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                resource TEXT NOT NULL PRIMARY KEY,
                owner TEXT NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL
             )"
        );
        let mut tx = bounded(NAME, i.timeout, pool.begin())
            .await
            .map_err(failed)?;
        bounded(
            NAME,
            i.timeout,
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&i.raw_table)
                .execute(&mut *tx),
        )
        .await
        .map_err(failed)?;
        bounded(
            NAME,
            i.timeout,
            sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx),
        )
        .await
        .map_err(failed)?;
        bounded(NAME, i.timeout, tx.commit()).await.map_err(failed)
    }

    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expiry: Duration,
    ) -> Result<bool, LockError> {
        let i = &self.inner;
        let pool = i.pools.get();
        let r = bounded(
            NAME,
            i.timeout,
            sqlx::query(AssertSqlSafe(i.try_sql.as_str()))
                .bind(resource)
                .bind(owner)
                .bind(expiry.as_secs_f64())
                .execute(&pool),
        )
        .await
        .map_err(failed)?;
        Ok(r.rows_affected() == 1)
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let i = &self.inner;
        let pool = i.pools.get();
        let r = bounded(
            NAME,
            i.timeout,
            sqlx::query(AssertSqlSafe(i.release_sql.as_str()))
                .bind(resource)
                .bind(owner)
                .execute(&pool),
        )
        .await
        .map_err(failed)?;
        if r.rows_affected() == 1 {
            return Ok(UnlockStatus::Success);
        }
        // Not released: someone else's, or nobody's.
        let held = bounded(
            NAME,
            i.timeout,
            sqlx::query(AssertSqlSafe(i.held_sql.as_str()))
                .bind(resource)
                .fetch_optional(&pool),
        )
        .await
        .map_err(failed)?;
        Ok(match held {
            Some(row) if row.try_get::<String, _>(0).is_ok_and(|o| o != owner) => {
                UnlockStatus::LockBelongsToOthers
            }
            _ => UnlockStatus::LockDoesNotExist,
        })
    }
}
