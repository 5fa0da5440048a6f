//! What every SQL component shares, whatever its building block (state
//! stores now; bindings and configuration stores next): connection strings
//! in Dapr's forms, pools made per calling thread, identifiers checked
//! before they are quoted into statements, and a bound on every call.

pub mod mysql;
pub mod postgres;
pub mod rows;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// An SQL identifier (table, schema) that can be quoted safely: letters,
/// digits and `_`, not starting with a digit, at most 63 characters.
pub fn valid_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && s.len() <= 63
}

/// Pools made by `make`, one per calling thread (`per_thread.rs`): a
/// connection's socket answers on the runtime that opened it. A pool
/// spawns its maintenance task where it is made, so only inside a runtime.
pub(crate) fn per_thread<P: Clone + 'static>(
    make: impl Fn() -> P + Send + Sync + 'static,
) -> crate::per_thread::PerThread<P> {
    let first = make();
    crate::per_thread::PerThread::new(first, move || {
        tokio::runtime::Handle::try_current().ok()?;
        Some(make())
    })
}

/// Runs one database call within `timeout`: a slow or unreachable server
/// becomes a prompt error naming the backend, never a hang.
pub async fn bounded<T, E: Display>(
    backend: &str,
    timeout: Duration,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(|e| format!("{backend}: {e}")),
        Err(_) => Err(format!("{backend}: no answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(valid_ident("state_1"));
        assert!(valid_ident("_x"));
        assert!(!valid_ident("1state"));
        assert!(!valid_ident("a\"; drop"));
        assert!(!valid_ident("a-b"));
        assert!(!valid_ident(&"a".repeat(64)));
    }
}
