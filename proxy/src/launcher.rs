//! `spar run -- CMD ARGS…`: launches the app beside the sidecar, as
//! `dapr run` does, and ties their lifetimes together.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::cli::RunArgs;

/// Starts the app with the sidecar's ports in its environment.
pub fn spawn(args: &RunArgs, app_id: &str) -> std::io::Result<Child> {
    let (prog, rest) = args
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command to launch"))?;
    let mut cmd = Command::new(prog);
    cmd.args(rest)
        .env("DAPR_HTTP_PORT", args.dapr_http_port.to_string())
        .env("DAPR_GRPC_PORT", args.dapr_grpc_port.to_string())
        .env("DAPR_METRICS_PORT", args.metrics_port.to_string())
        .env("APP_ID", app_id)
        .kill_on_drop(true);
    if let Some(p) = args.app_port() {
        cmd.env("APP_PORT", p.to_string());
    }
    cmd.spawn()
}

/// The shell convention: the exit code, or 128 + the signal that killed it.
pub fn exit_code(s: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code()
        .or_else(|| s.signal().map(|sig| 128 + sig))
        .unwrap_or(1)
}

pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Waits for the app. If it exits first, the sidecar stops; if the sidecar
/// stops first, the app gets SIGTERM, then SIGKILL after `grace`. Returns the
/// app's exit code.
pub async fn supervise(
    mut child: Child,
    stop_tx: watch::Sender<bool>,
    mut stop_rx: watch::Receiver<bool>,
    grace: Duration,
) -> i32 {
    let pid = child.id();
    tokio::select! {
        st = child.wait() => {
            let code = st.map(exit_code).unwrap_or(1);
            tracing::info!(code, "app exited; stopping the sidecar");
            stop_tx.send_replace(true);
            code
        }
        _ = crate::signals::stopped(&mut stop_rx) => {
            if let Some(pid) = pid {
                signal(pid, libc::SIGTERM);
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(st) => st.map(exit_code).unwrap_or(1),
                Err(_) => {
                    tracing::warn!("app did not exit within {grace:?}; killing it");
                    let _ = child.kill().await;
                    child.wait().await.map(exit_code).unwrap_or(137)
                }
            }
        }
    }
}
