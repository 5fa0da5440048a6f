//! SIGINT/SIGTERM: forwarded to a launched app (which then exits and stops
//! the sidecar), or stop the sidecar directly when there is no app.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::launcher;

pub async fn watch_signals(app_pid: Option<u32>, stop: watch::Sender<bool>, grace: Duration) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let sig = tokio::select! {
        _ = int.recv() => libc::SIGINT,
        _ = term.recv() => libc::SIGTERM,
    };
    tracing::info!(signal = sig, "shutdown signal received");
    match app_pid {
        Some(pid) => {
            launcher::signal(pid, sig);
            // The app normally exits and the supervisor stops the sidecar;
            // if it doesn't, stop anyway after the grace period.
            tokio::time::sleep(grace).await;
            stop.send_replace(true);
        }
        None => {
            stop.send_replace(true);
        }
    }
}

/// Resolves once the stop switch is on. The `Ref` guard `wait_for` returns
/// is dropped right here, so callers' futures stay `Send`.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Tells pingora to shut down when the stop flag turns true.
pub struct StopSignal(pub watch::Receiver<bool>);

#[async_trait::async_trait]
impl pingora::server::ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        stopped(&mut self.0.clone()).await;
        pingora::server::ShutdownSignal::GracefulTerminate
    }
}

/// Resolves on the first SIGINT or SIGTERM (for processes without an app).
pub async fn terminated() {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
