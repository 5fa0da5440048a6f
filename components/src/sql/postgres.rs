//! PostgreSQL connections: libpq's `key=value` strings (what Dapr's docs
//! show) or `postgres://` URLs, and lazy pools, one per calling thread.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::per_thread::PerThread;

/// Connection options from a component's `connectionString`.
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

/// Pools of at most `max_conns` connections, made lazily (the sidecar
/// starts while the server is down; connections open on demand, bounded by
/// `timeout`), one per calling thread (`per_thread.rs`): a connection's
/// socket answers on the runtime that opened it.
pub fn pools(opts: PgConnectOptions, max_conns: u32, timeout: Duration) -> PerThread<PgPool> {
    let make = move || {
        PgPoolOptions::new()
            .max_connections(max_conns.max(1))
            .acquire_timeout(timeout)
            .connect_lazy_with(opts.clone())
    };
    super::per_thread(make)
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
}
