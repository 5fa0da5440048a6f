//! SIGINT/SIGTERM: forwarded to a launched app (which then exits and stops
//! the sidecar), or stop the sidecar directly when there is no app.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::launcher;

/// `--dapr-block-shutdown-duration`: what holds shutdown back after a signal.
pub struct Block {
    pub duration: Duration,
    /// Flipped at the signal: subscriptions stop, nothing new is delivered.
    pub quiet: watch::Sender<bool>,
    pub rt: std::sync::Arc<spar_filters::Runtime>,
}

impl Block {
    /// Keeps serving for `duration`, or until the app reports unhealthy
    /// (with app health checks on), or the sidecar is stopped otherwise.
    async fn hold(&self, stop: &watch::Sender<bool>) {
        tracing::info!(
            "Blocking graceful shutdown for {:?} or until app reports unhealthy...",
            self.duration
        );
        self.quiet.send_replace(true);
        let mut stopped = stop.subscribe();
        let unhealthy = async {
            loop {
                if self.rt.app_health() == spar_filters::runtime::AppHealth::Unhealthy {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(self.duration) => {
                tracing::info!("Block shutdown period expired, entering shutdown...");
            }
            _ = unhealthy => tracing::info!("App reported unhealthy, entering shutdown..."),
            _ = crate::signals::stopped(&mut stopped) => {}
        }
    }
}

pub async fn watch_signals(
    app_pid: Option<u32>,
    stop: watch::Sender<bool>,
    grace: Duration,
    block: Option<Block>,
) {
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
            // The app hears at once: it may go on using the sidecar while
            // it winds down, and its exit stops the sidecar.
            launcher::signal(pid, sig);
            if let Some(b) = &block {
                b.hold(&stop).await;
            }
            // The app normally exits and the supervisor stops the sidecar;
            // if it doesn't, stop anyway after the grace period.
            tokio::time::sleep(grace).await;
            stop.send_replace(true);
        }
        None => {
            if let Some(b) = &block {
                b.hold(&stop).await;
            }
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
