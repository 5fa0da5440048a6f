//! Command line: `spar run` takes daprd's flags with daprd's defaults;
//! `spar validate` checks YAML. Started as `daprd`, the binary behaves as
//! `spar run`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spar",
    version,
    about = "A Dapr-compatible sidecar on an L7 filter chain"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar (daprd's flags); anything after `--` is the app to launch.
    Run(Box<RunArgs>),
    /// Validate resource and configuration YAML, then exit.
    Validate(ValidateArgs),
    /// Run the certificate authority that issues sidecars' mTLS certificates.
    Sentry(Box<crate::security::sentry::SentryArgs>),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Resource directories (repeatable).
    #[arg(
        long = "resources-path",
        visible_alias = "components-path",
        required = true
    )]
    pub resources_path: Vec<PathBuf>,
    /// Configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Unique id of the app, used for service discovery, state key prefixes and metrics.
    #[arg(long = "app-id", env = "APP_ID", default_value = "")]
    pub app_id: String,
    /// Port the app listens on.
    #[arg(long = "app-port")]
    pub app_port: Option<u16>,
    /// Protocol of the app: http, grpc, h2c, https, grpcs.
    #[arg(long = "app-protocol", default_value = "http", value_parser = ["http", "grpc", "h2c", "https", "grpcs"])]
    pub app_protocol: String,
    /// Address the app listens on.
    #[arg(long = "app-channel-address", default_value = "127.0.0.1")]
    pub app_channel_address: String,
    #[arg(long = "dapr-http-port", default_value_t = 3500)]
    pub dapr_http_port: u16,
    #[arg(long = "dapr-grpc-port", default_value_t = 50001)]
    pub dapr_grpc_port: u16,
    /// Port for sidecar-to-sidecar traffic (a free port when omitted).
    #[arg(long = "dapr-internal-grpc-port")]
    pub dapr_internal_grpc_port: Option<u16>,
    #[arg(long = "metrics-port", default_value_t = 9090)]
    pub metrics_port: u16,
    #[arg(long = "enable-metrics", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_metrics: bool,
    /// Resource directories (repeatable; `--components-path` is the old name).
    #[arg(
        long = "resources-path",
        visible_alias = "components-path",
        value_delimiter = ','
    )]
    pub resources_path: Vec<PathBuf>,
    /// Configuration file.
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
    #[arg(long = "log-level", default_value = "info", value_parser = ["debug", "info", "warn", "error", "fatal"])]
    pub log_level: String,
    #[arg(long = "log-as-json", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_as_json: bool,
    /// Comma-separated addresses for the API listeners (empty: all interfaces, as daprd).
    #[arg(long = "dapr-listen-addresses", default_value = "")]
    pub dapr_listen_addresses: String,
    /// Max request body in MB (deprecated in daprd in favour of --max-body-size).
    #[arg(long = "dapr-http-max-request-size")]
    pub dapr_http_max_request_size: Option<usize>,
    /// Max request body as a quantity (`4Mi`, `512Ki`, `1048576`).
    #[arg(long = "max-body-size")]
    pub max_body_size: Option<String>,
    #[arg(long = "app-health-check-path", default_value = "/healthz")]
    pub app_health_check_path: String,
    #[arg(long = "enable-app-health-check", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_app_health_check: bool,
    /// Seconds between app health probes.
    #[arg(long = "app-health-probe-interval", default_value_t = 5)]
    pub app_health_probe_interval: u64,
    /// Milliseconds before an app health probe fails.
    #[arg(long = "app-health-probe-timeout", default_value_t = 500)]
    pub app_health_probe_timeout: u64,
    /// Consecutive failures before the app counts as unhealthy.
    #[arg(long = "app-health-threshold", default_value_t = 3)]
    pub app_health_threshold: u32,
    #[arg(long = "app-max-concurrency", default_value_t = -1, allow_negative_numbers = true)]
    pub app_max_concurrency: i32,
    #[arg(long = "dapr-graceful-shutdown-seconds", default_value_t = 5)]
    pub dapr_graceful_shutdown_seconds: u64,
    #[arg(long = "enable-api-logging", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_api_logging: bool,
    /// Where embedded components keep data (default store: SQLite file here).
    #[arg(long = "data-dir", env = "SPAR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// daprd flags accepted for compatibility; not used by spar yet.
    #[arg(long = "mode", default_value = "standalone", hide = true)]
    pub mode: String,
    /// Encrypt and authenticate sidecar-to-sidecar traffic with certificates from sentry.
    #[arg(long = "enable-mtls", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_mtls: bool,
    /// Address of the certificate authority (`spar sentry`), host:port.
    #[arg(long = "sentry-address")]
    pub sentry_address: Option<String>,
    /// PEM trust anchors (else the DAPR_TRUST_ANCHORS environment variable).
    #[arg(long = "trust-anchors-file")]
    pub trust_anchors_file: Option<PathBuf>,
    /// Trust domain of sentry's identity.
    #[arg(long = "control-plane-trust-domain", default_value = "localhost")]
    pub control_plane_trust_domain: String,
    /// Namespace of sentry's identity.
    #[arg(long = "control-plane-namespace", default_value = "default")]
    pub control_plane_namespace: String,
    #[arg(long = "placement-host-address", hide = true)]
    pub placement_host_address: Option<String>,
    #[arg(long = "scheduler-host-address", hide = true)]
    pub scheduler_host_address: Option<String>,
    #[arg(long = "enable-profiling", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true", hide = true)]
    pub enable_profiling: bool,
    #[arg(long = "profile-port", hide = true)]
    pub profile_port: Option<u16>,
    #[arg(long = "control-plane-address", hide = true)]
    pub control_plane_address: Option<String>,
    /// The app to launch, with its arguments (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The body limit in bytes: `--max-body-size` wins over the MB flag; 4 MiB by default.
    pub fn max_body_bytes(&self) -> Result<usize, String> {
        if let Some(q) = &self.max_body_size {
            return parse_quantity(q).map_err(|e| format!("--max-body-size: {e}"));
        }
        Ok(self.dapr_http_max_request_size.unwrap_or(4) << 20)
    }

    /// Addresses to bind the API listeners to.
    pub fn listen_hosts(&self) -> Vec<String> {
        let hosts: Vec<String> = self
            .dapr_listen_addresses
            .split(',')
            .map(|s| {
                s.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .collect();
        if hosts.is_empty() {
            vec!["0.0.0.0".into()]
        } else {
            hosts
        }
    }
}

/// Kubernetes-style quantities as daprd's `--max-body-size` takes them.
pub fn parse_quantity(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("invalid quantity {s:?}"))?;
    let mul: usize = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        _ => return Err(format!("invalid quantity unit in {s:?}")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("quantity {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunArgs {
        let mut v = vec!["spar", "run"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Run(r) => *r,
            _ => panic!("not run"),
        }
    }

    #[test]
    fn daprd_defaults() {
        let r = run(&[]);
        assert_eq!(r.dapr_http_port, 3500);
        assert_eq!(r.dapr_grpc_port, 50001);
        assert_eq!(r.metrics_port, 9090);
        assert!(r.enable_metrics);
        assert_eq!(r.app_protocol, "http");
        assert_eq!(r.app_channel_address, "127.0.0.1");
        assert_eq!(r.app_health_check_path, "/healthz");
        assert_eq!(r.max_body_bytes().unwrap(), 4 << 20);
        assert_eq!(r.listen_hosts(), vec!["0.0.0.0"]);
    }

    #[test]
    fn go_style_bools_and_aliases() {
        let r = run(&[
            "--enable-metrics=false",
            "--log-as-json",
            "--components-path",
            "a",
            "--resources-path",
            "b",
            "--dapr-listen-addresses",
            "127.0.0.1,[::1]",
            "--",
            "sh",
            "-c",
            "exit 3",
        ]);
        assert!(!r.enable_metrics);
        assert!(r.log_as_json);
        assert_eq!(
            r.resources_path,
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        assert_eq!(r.listen_hosts(), vec!["127.0.0.1", "::1"]);
        assert_eq!(r.command, vec!["sh", "-c", "exit 3"]);
    }

    #[test]
    fn body_size_flags() {
        assert_eq!(
            run(&["--dapr-http-max-request-size", "1"])
                .max_body_bytes()
                .unwrap(),
            1 << 20
        );
        assert_eq!(
            run(&["--max-body-size", "512Ki"]).max_body_bytes().unwrap(),
            512 << 10
        );
        assert!(run(&["--max-body-size", "12Xi"]).max_body_bytes().is_err());
    }
}
