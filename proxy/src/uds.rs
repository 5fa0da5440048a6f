//! `--unix-domain-socket DIR`: the HTTP and gRPC APIs on Unix domain
//! sockets named as daprd names them (`dapr-{app-id}-http.socket`,
//! `dapr-{app-id}-grpc.socket`), so SDKs pointed at them find them.

use std::path::{Path, PathBuf};

pub struct Sockets {
    pub http: PathBuf,
    pub grpc: PathBuf,
}

impl Sockets {
    pub fn new(dir: &Path, app_id: &str) -> Self {
        Sockets {
            http: dir.join(format!("dapr-{app_id}-http.socket")),
            grpc: dir.join(format!("dapr-{app_id}-grpc.socket")),
        }
    }

    /// The gRPC API's listener. A socket file left by a sidecar that died
    /// is replaced; one another process still serves is an error.
    pub fn bind_grpc(&self) -> Result<crate::grpc::Listener, String> {
        clear(&self.grpc)?;
        let l = std::os::unix::net::UnixListener::bind(&self.grpc)
            .map_err(|e| format!("gRPC API cannot listen on {}: {e}", self.grpc.display()))?;
        Ok(crate::grpc::Listener::Unix(l))
    }

    /// Checks the HTTP socket's path is free (pingora binds it).
    pub fn prepare_http(&self) -> Result<(), String> {
        clear(&self.http)
    }

    /// Removes both socket files (at shutdown).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.http);
        let _ = std::fs::remove_file(&self.grpc);
    }
}

/// Removes a stale socket file; fails when a live process answers on it.
fn clear(p: &Path) -> Result<(), String> {
    if let Some(dir) = p.parent() {
        if !dir.is_dir() {
            return Err(format!(
                "--unix-domain-socket: {} is not a directory",
                dir.display()
            ));
        }
    }
    if !p.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(p).is_ok() {
        return Err(format!("{} is in use by another process", p.display()));
    }
    std::fs::remove_file(p).map_err(|e| format!("cannot remove stale {}: {e}", p.display()))
}
