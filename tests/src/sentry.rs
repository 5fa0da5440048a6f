//! A `spar sentry` child process: the certificate authority of mTLS tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, spar_bin};

/// A running `spar sentry` (the mTLS certificate authority) with its own
/// issuer-credentials directory.
pub struct Sentry {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Sentry {
    /// Starts sentry; `config` is an optional Configuration (e.g. `spec.mtls.workloadCertTTL`).
    pub fn start(config: Option<&str>) -> Sentry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("sentry.log");
        let mut cmd = Command::new(spar_bin());
        cmd.arg("sentry")
            .args([
                "--issuer-credentials",
                &dir.path().join("certs").display().to_string(),
            ])
            .args(["--port", &port.to_string(), "--listen-address", "127.0.0.1"]);
        if let Some(c) = config {
            let p = dir.path().join("sentry-config.yaml");
            std::fs::write(&p, c).unwrap();
            cmd.args(["--config", &p.display().to_string()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn spar sentry");
        let s = Sentry {
            child,
            port,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sentry did not start: {}",
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The root certificate (trust anchor), PEM.
    pub fn trust_anchors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("certs").join("ca.crt")).unwrap()
    }

    /// `spar run` flags and environment for a sidecar using this sentry.
    pub fn sidecar_args(&self) -> (Vec<String>, Vec<(String, String)>) {
        (
            vec![
                "--enable-mtls".into(),
                "--sentry-address".into(),
                self.address(),
            ],
            vec![("DAPR_TRUST_ANCHORS".into(), self.trust_anchors())],
        )
    }

    /// `spar scheduler` flags and environment for a node using this sentry
    /// (`--tls-enabled`).
    pub fn scheduler_args(&self) -> (Vec<String>, Vec<(String, String)>) {
        (
            vec![
                "--tls-enabled".into(),
                "--sentry-address".into(),
                self.address(),
            ],
            vec![("DAPR_TRUST_ANCHORS".into(), self.trust_anchors())],
        )
    }
}

impl Drop for Sentry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
