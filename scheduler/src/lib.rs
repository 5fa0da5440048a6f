//! `spar scheduler`: Dapr's job scheduler for spar sidecars. Jobs are
//! replicated with openraft (log and state machine in one SQLite file per
//! node); the leader fires due jobs on the sidecars' `WatchJobs` streams.
//!
//! - `model.rs` the jobs and the commands the log carries
//! - `schedule.rs` cron / `@every` / dueTime / ttl / repeats arithmetic
//! - `jobs.rs` applied jobs in memory, indexed by next tick
//! - `store.rs` openraft's log and state-machine storage on SQLite
//! - `network.rs` Raft messages between nodes (gRPC)
//! - `service.rs` the Scheduler gRPC service; `streams.rs` sidecars' streams
//! - `trigger.rs` the leader's trigger loop; `node.rs` start-up
//! - `tls.rs` the TLS listener under `--tls-enabled` (the identity itself
//!   comes from the `spar` binary: `Tls`)

// openraft's StorageError is large by design; every storage call returns it.
#![allow(clippy::result_large_err)]

// The raft type macro names `Cursor` (its default snapshot data type).
use std::io::Cursor;
use std::path::PathBuf;

mod error;
mod jobs;
mod model;
mod network;
mod node;
mod schedule;
mod service;
mod store;
mod streams;
mod tls;
mod trigger;

pub use error::SchedError;
pub use schedule::{check_name, go_duration};
pub use tls::{Connect, Tls, TlsSetup};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The scheduler's Raft types: commands in, outcomes out.
    pub TypeConfig:
        D = model::Command,
        R = model::Outcome,
);

pub type SchedRaft = openraft::Raft<TypeConfig>;

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// gRPC port for sidecars and for the other nodes (Dapr's default).
    #[arg(long, default_value_t = 50006)]
    pub port: u16,
    #[arg(long = "listen-address", default_value = "0.0.0.0")]
    pub listen_address: String,
    /// Where this node keeps its log and jobs (`scheduler.db`).
    #[arg(
        long = "data-dir",
        visible_alias = "etcd-data-dir",
        default_value = "./data/scheduler"
    )]
    pub data_dir: PathBuf,
    /// This node's id among --peers.
    #[arg(long, default_value_t = 1)]
    pub id: NodeId,
    /// Every member as id=host:port (comma list or repeated), this node
    /// included. Empty: a single node on 127.0.0.1:PORT.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// mTLS on the node's port: a certificate from sentry
    /// (`spiffe://{trust-domain}/ns/{NAMESPACE}/dapr-scheduler`), client
    /// certificates from the trust anchors required.
    #[arg(long = "tls-enabled", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_enabled: bool,
    /// Trust domain of the control plane (this node's and sentry's identity).
    #[arg(long = "trust-domain", default_value = "localhost")]
    pub trust_domain: String,
    /// PEM trust anchors (else the DAPR_TRUST_ANCHORS environment variable).
    #[arg(long = "trust-anchors-file")]
    pub trust_anchors_file: Option<PathBuf>,
    /// Address of `spar sentry`, host:port.
    #[arg(long = "sentry-address")]
    pub sentry_address: Option<String>,
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    #[arg(long = "log-as-json", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_as_json: bool,
}

/// Runs a node until SIGINT/SIGTERM; the process's exit code.
/// `tls`: the node's identity under `--tls-enabled`, awaited first.
pub fn run(args: SchedulerArgs, tls: Option<TlsSetup>) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spar scheduler: {e}");
            return 1;
        }
    };
    match rt.block_on(node::serve(args, tls)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("scheduler: {e}");
            eprintln!("spar scheduler: {e}");
            1
        }
    }
}
