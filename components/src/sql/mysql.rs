//! MySQL and MariaDB connections: Dapr's Go DSN
//! (`user:pass@tcp(host:port)/db?params`) or a `mysql://` URL, and lazy
//! pools, one per calling thread, whose sessions run at READ COMMITTED.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::Executor;

use crate::per_thread::PerThread;

/// Connection options from a component's `connectionString`.
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

/// Lazy pools (start while the server is down; reconnect on demand), one
/// per calling thread. Sessions run at READ COMMITTED: no gap locks, so
/// concurrent first-writes can't deadlock on them.
pub fn pools(opts: MySqlConnectOptions, max_conns: u32, timeout: Duration) -> PerThread<MySqlPool> {
    let make = move || {
        MySqlPoolOptions::new()
            .max_connections(max_conns.max(1))
            .acquire_timeout(timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts.clone())
    };
    super::per_thread(make)
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
}
