//! The sidecar's side of the scheduler (`--scheduler-host-address`): the
//! Jobs API's calls (`client.rs`, the `JobsBackend` the jobs handler uses),
//! the `WatchJobs` streams that bring due jobs (`watch.rs`), and their
//! delivery to the app (`deliver.rs`).

mod client;
mod deliver;
mod watch;

pub use client::SchedulerClient;
pub use watch::spawn_watchers;
