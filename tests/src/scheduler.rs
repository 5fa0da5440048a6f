//! `spar scheduler` child processes: one node, or a cluster of several on
//! loopback, each with its own data directory; restartable in place (same
//! id, port and directory) after a `kill -9`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, spar_bin};

pub struct SchedulerNode {
    pub id: u64,
    pub port: u16,
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    peers: Vec<String>,
    starts: u32,
    /// Further flags and environment (`--tls-enabled`, …).
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl SchedulerNode {
    fn spawn(&mut self) {
        self.starts += 1;
        let log = self.log_path(self.starts);
        let mut cmd = Command::new(spar_bin());
        cmd.arg("scheduler")
            .args([
                "--port",
                &self.port.to_string(),
                "--listen-address",
                "127.0.0.1",
            ])
            .args([
                "--data-dir",
                &self.dir.path().join("data").display().to_string(),
            ])
            .args(["--id", &self.id.to_string()])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if !self.peers.is_empty() {
            cmd.args(["--peers", &self.peers.join(",")]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn spar scheduler");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "scheduler did not start: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("scheduler-{n}.log"))
    }

    /// Every run's log, oldest first.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The current run's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, whatever was not on disk is gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether this run of the node says it leads and has not said since
    /// that it stopped.
    pub fn leads(&self) -> bool {
        let log = self.log();
        let lead = log.rfind("leads: triggering jobs");
        let lost = log.rfind("no longer leads");
        self.is_running() && matches!((lead, lost), (Some(a), b) if b.is_none_or(|b| b < a))
    }
}

impl Drop for SchedulerNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One node (zero configuration) or several (`--peers`).
pub struct SchedulerCluster {
    pub nodes: Vec<SchedulerNode>,
}

impl SchedulerCluster {
    pub fn start(n: usize) -> SchedulerCluster {
        SchedulerCluster::start_with(n, &[], &[])
    }

    /// As `start`, every node with `args` and `env` besides.
    pub fn start_with(n: usize, args: &[String], env: &[(String, String)]) -> SchedulerCluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers: Vec<String> = if n == 1 {
            Vec::new()
        } else {
            ports
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
                .collect()
        };
        let mut nodes = Vec::new();
        for (i, port) in ports.into_iter().enumerate() {
            let mut node = SchedulerNode {
                id: i as u64 + 1,
                port,
                child: None,
                dir: tempfile::tempdir().expect("tempdir"),
                peers: peers.clone(),
                starts: 0,
                extra_args: args.to_vec(),
                env: env.to_vec(),
            };
            node.spawn();
            nodes.push(node);
        }
        SchedulerCluster { nodes }
    }

    /// `--scheduler-host-address` for a sidecar: every node.
    pub fn host_addresses(&self) -> String {
        self.nodes
            .iter()
            .map(SchedulerNode::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node that leads, waiting up to `limit` for one.
    pub fn leader(&self, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.nodes.iter().position(SchedulerNode::leads) {
                return Some(i);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.id, n.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
