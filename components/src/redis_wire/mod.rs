//! spar's own Redis client for the state store's calls (and the blocking
//! reads of Redis Streams subscriptions, on [`Dedicated`] connections):
//! RESP2 over pooled connections (plain or TLS), each call written and read
//! by the calling task itself. The `redis` crate's multiplexed connection puts a driver
//! task and two channel hops between a call and its socket; on loopback
//! that hop cost as much as spar's whole HTTP handling of a state GET
//! (bench/README.md, "Redis GET").
//!
//! Connections are pooled per thread (`per_thread.rs`): a tokio socket is
//! served by the reactor of the runtime that opened it, and a call from
//! another runtime's thread would cross threads on every wake-up.

mod conn;
mod metadata;
pub mod resp;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::per_thread::PerThread;
use conn::Conn;
pub use metadata::{connection_url, endpoint, limits};
pub use resp::{Commands, Reply};

/// Where and how to connect, from Dapr's component metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`.
    pub host: String,
    pub tls: bool,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connecting, TLS and the AUTH/SELECT exchange.
    pub dial: Duration,
    /// One call's round trip.
    pub read: Duration,
    /// Extra attempts on a fresh connection (see [`Wire::query`]).
    pub retries: usize,
    pub max_backoff: Duration,
}

#[derive(Debug, Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Malformed(#[from] resp::Malformed),
    #[error("connection closed by the server")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server refused the connection's set-up (AUTH, SELECT).
    #[error("{0}")]
    Refused(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl WireError {
    /// A failure of the connection rather than of the call: worth another
    /// attempt on a fresh one.
    fn of_connection(&self) -> bool {
        matches!(self, WireError::Io(_) | WireError::Closed)
    }
}

/// Idle connections kept per thread; more are closed after their call.
const IDLE_PER_THREAD: usize = 16;

#[derive(Default)]
struct Pool(Mutex<Vec<Conn>>);

impl Pool {
    /// An idle connection the server has not closed meanwhile.
    fn take(&self) -> Option<Conn> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.looks_closed() {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, c: Conn) {
        if !c.is_clean() {
            return;
        }
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_PER_THREAD {
            idle.push(c);
        }
    }
}

pub struct Wire {
    endpoint: Endpoint,
    limits: Limits,
    /// AUTH and SELECT, sent once per new connection.
    hello: Commands,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    pools: PerThread<Arc<Pool>>,
}

impl Wire {
    pub fn new(endpoint: Endpoint, limits: Limits) -> Result<Wire, String> {
        let mut hello = Commands::default();
        match (&endpoint.username, &endpoint.password) {
            (Some(u), Some(p)) if !u.is_empty() => {
                hello.push(&["AUTH", u, p]);
            }
            (_, Some(p)) if !p.is_empty() => {
                hello.push(&["AUTH", p]);
            }
            _ => {}
        }
        if endpoint.db != 0 {
            hello.push(&["SELECT".to_string(), endpoint.db.to_string()]);
        }
        let tls = if endpoint.tls {
            Some(tls_connector(&endpoint.host)?)
        } else {
            None
        };
        Ok(Wire {
            endpoint,
            limits,
            hello,
            tls,
            pools: PerThread::new(Arc::default(), || Some(Arc::default())),
        })
    }

    /// Sends `commands` in one write and returns one reply per command (a
    /// server error is a [`Reply::Error`] among them, not a failure).
    ///
    /// Connecting is retried up to `retries` times with backoff — nothing
    /// has been sent yet. A call that fails on its connection after being
    /// sent is retried on a fresh connection only when `idempotent`: a write
    /// may have been applied before the connection broke.
    pub async fn query(
        &self,
        commands: &Commands,
        idempotent: bool,
    ) -> Result<Vec<Reply>, WireError> {
        let pool = self.pools.get();
        let mut attempt = 0;
        loop {
            let conn = match pool.take() {
                Some(c) => Ok(c),
                None => self.connect().await,
            };
            let failed = match conn {
                Ok(mut c) => {
                    let call = c.exchange(commands.bytes(), commands.count());
                    match tokio::time::timeout(self.limits.read, call).await {
                        Ok(Ok(replies)) => {
                            pool.give_back(c);
                            return Ok(replies);
                        }
                        Ok(Err(e)) if idempotent && e.of_connection() => e,
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Err(WireError::Timeout(self.limits.read)),
                    }
                }
                Err(e) if e.of_connection() => e,
                Err(e) => return Err(e),
            };
            if attempt >= self.limits.retries {
                return Err(failed);
            }
            attempt += 1;
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// Dapr's Redis client backs off from 8 ms, doubling, up to the maximum.
    fn backoff(&self, attempt: usize) -> Duration {
        let d = Duration::from_millis(8u64 << attempt.min(16));
        d.min(self.limits.max_backoff)
    }

    async fn connect(&self) -> Result<Conn, WireError> {
        let dial = self.limits.dial;
        match tokio::time::timeout(dial, self.open()).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Timeout(dial)),
        }
    }

    async fn open(&self) -> Result<Conn, WireError> {
        let tcp = TcpStream::connect(&self.endpoint.host).await?;
        tcp.set_nodelay(true)?;
        let mut conn = match &self.tls {
            None => Conn::plain(tcp),
            Some((connector, name)) => Conn::tls(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| WireError::Tls(e.to_string()))?,
            ),
        };
        if self.hello.count() > 0 {
            for r in conn
                .exchange(self.hello.bytes(), self.hello.count())
                .await?
            {
                if let Reply::Error(e) = r {
                    return Err(WireError::Refused(e));
                }
            }
        }
        Ok(conn)
    }
}

/// A connection of its own, outside the pools, for blocking commands
/// (`XREADGROUP … BLOCK`). The caller decides how long to wait for each
/// reply, so no client-side timeout shorter than the server's block can
/// abandon a read the server still completes (and whose entries it then
/// counts as delivered).
pub struct Dedicated(Conn);

impl Wire {
    /// Opens a connection (AUTH and SELECT done) that is never pooled.
    pub async fn dedicated(&self) -> Result<Dedicated, WireError> {
        self.connect().await.map(Dedicated)
    }
}

impl Dedicated {
    /// Sends `commands` and reads one reply per command, waiting as long as
    /// it takes. A call dropped before it returns leaves the connection in
    /// an unknown state: drop the connection with it.
    pub async fn exchange(&mut self, commands: &Commands) -> Result<Vec<Reply>, WireError> {
        self.0.exchange(commands.bytes(), commands.count()).await
    }
}

/// TLS with the system's trusted roots (as Dapr's Redis client), named for
/// the host part of `host:port`.
fn tls_connector(
    host: &str,
) -> Result<(TlsConnector, rustls::pki_types::ServerName<'static>), String> {
    let name = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is not a TLS server name: {e}"))?;
    let config = system_roots_config()?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// A TLS client trusting the system's roots (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` honoured); also the OTLP exporter's.
pub fn system_roots_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
