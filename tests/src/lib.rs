//! Test support: start the real `spar` binary on free ports with a resources
//! directory, wait until it is healthy, and clean up on drop.
//!
//! `sidecar` runs `spar run`, `sentry` runs `spar sentry`, `scheduler` runs
//! `spar scheduler` nodes, `services` starts
//! private Redis/PostgreSQL servers, `cleanup` clears the shared brokers.

mod cleanup;
mod configuration;
mod scheduler;
mod sentry;
mod services;
mod sidecar;

pub use cleanup::*;
pub use configuration::*;
pub use scheduler::*;
pub use sentry::*;
pub use services::*;
pub use sidecar::*;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The `spar` binary: `$SPAR_BIN`, else `target/debug/spar` of this workspace.
pub fn spar_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPAR_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("spar");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    // The kernel may hand the same port out again once its listener is
    // closed (a sidecar once got one port for HTTP and gRPC): never give
    // one out twice in a test process.
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A unique name for keys, stores and topics, so tests never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
