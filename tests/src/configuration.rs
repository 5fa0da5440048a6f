//! Configuration stores' backends as an operator edits them, from outside
//! the sidecar: Redis keys holding `value||version`, a PostgreSQL table in
//! daprd's documented layout with its `pg_notify` trigger, and a SQLite
//! file (what `sqlite3` does). Each is a conformance [`Writer`].

use async_trait::async_trait;
use spar_components::configuration::conformance::Writer;

/// Writes Redis keys as daprd's store reads them.
pub struct RedisWriter {
    conn: redis::aio::MultiplexedConnection,
}

impl RedisWriter {
    pub async fn connect(url: &str) -> RedisWriter {
        let client = redis::Client::open(url).expect("redis url");
        RedisWriter {
            conn: client
                .get_multiplexed_async_connection()
                .await
                .expect("redis connection"),
        }
    }
}

#[async_trait]
impl Writer for RedisWriter {
    async fn set(&self, key: &str, value: &str, version: &str) {
        let mut c = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(format!("{value}||{version}"))
            .query_async(&mut c)
            .await
            .expect("SET");
    }

    async fn delete(&self, key: &str) {
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut c)
            .await
            .expect("DEL");
    }
}

/// The table and trigger Dapr's documentation has users create for
/// `configuration.postgresql`, notifying on `channel`.
pub async fn create_pg_config_table(pool: &sqlx::PgPool, table: &str, channel: &str) {
    for sql in [
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (KEY VARCHAR NOT NULL, VALUE VARCHAR NOT NULL, VERSION VARCHAR NOT NULL, METADATA JSON)"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION {table}_notify() RETURNS TRIGGER AS $$
             DECLARE data json; notification json;
             BEGIN
               IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
               notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
               PERFORM pg_notify('{channel}', notification::text);
               RETURN NULL;
             END; $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER {table}_trigger AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE PROCEDURE {table}_notify()"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .expect("configuration table");
    }
}

/// Drops what [`create_pg_config_table`] made.
pub async fn drop_pg_config_table(pool: &sqlx::PgPool, table: &str) {
    for sql in [
        format!("DROP TABLE IF EXISTS {table}"),
        format!("DROP FUNCTION IF EXISTS {table}_notify()"),
    ] {
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await;
    }
}

/// Rows of a daprd-layout table: a key is updated in place, or inserted.
pub struct PgWriter {
    pub pool: sqlx::PgPool,
    pub table: String,
}

#[async_trait]
impl Writer for PgWriter {
    async fn set(&self, key: &str, value: &str, version: &str) {
        let t = &self.table;
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {t} SET VALUE = $2, VERSION = $3 WHERE KEY = $1"
        )))
        .bind(key)
        .bind(value)
        .bind(version)
        .execute(&self.pool)
        .await
        .expect("UPDATE");
        if updated.rows_affected() == 0 {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {t} (KEY, VALUE, VERSION, METADATA) VALUES ($1, $2, $3, '{{\"source\":\"test\"}}')"
            )))
            .bind(key)
            .bind(value)
            .bind(version)
            .execute(&self.pool)
            .await
            .expect("INSERT");
        }
    }

    async fn delete(&self, key: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {} WHERE KEY = $1",
            self.table
        )))
        .bind(key)
        .execute(&self.pool)
        .await
        .expect("DELETE");
    }
}

/// Writes a `configuration.sqlite` file as `sqlite3` would (its own
/// connection, one transaction per statement).
pub struct SqliteWriter {
    pub path: std::path::PathBuf,
    pub table: String,
}

impl SqliteWriter {
    fn run(&self, sql: &str, params: &[&str]) {
        let c = rusqlite::Connection::open(&self.path).expect("sqlite file");
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        c.execute(sql, rusqlite::params_from_iter(params.iter()))
            .expect("sqlite write");
    }
}

#[async_trait]
impl Writer for SqliteWriter {
    async fn set(&self, key: &str, value: &str, version: &str) {
        self.run(
            &format!(
                "INSERT OR REPLACE INTO {} (key, value, version) VALUES (?1, ?2, ?3)",
                self.table
            ),
            &[key, value, version],
        );
    }

    async fn delete(&self, key: &str) {
        self.run(
            &format!("DELETE FROM {} WHERE key = ?1", self.table),
            &[key],
        );
    }
}
