//! Command line: `spar run` takes every daprd flag with daprd's syntax and
//! defaults; `spar validate` checks YAML. Started as `daprd`, the binary
//! behaves as `spar run`.
//!
//! daprd parses flags with Go's pflag: `--flag value`, `--flag=value`, a
//! single dash (`-app-id x`, rewritten by [`go_style_args`]), booleans as
//! `--flag` or `--flag=false`, and a value may start with `-`
//! (`--profile-port -1`, which `dapr run` passes).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Arg, ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// What `--version` prints: a semantic version the Dapr CLI compares as
/// the Dapr release spar serves (it reads `daprd --version` to choose the
/// flags it passes), that still says it is spar.
pub fn runtime_version() -> &'static str {
    spar_filters::runtime::RUNTIME_VERSION
}

#[derive(Debug, Parser)]
#[command(
    name = "spar",
    version,
    about = "A Dapr-compatible sidecar on an L7 filter chain",
    // As with Go's flags, a flag given twice takes the last value (lists
    // such as --resources-path append).
    args_override_self = true
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
    /// Run a scheduler node: jobs for the Jobs API, replicated with Raft.
    Scheduler(Box<spar_scheduler::SchedulerArgs>),
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

/// Parses the command line as daprd would: Go's single dash and boolean
/// spellings included.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let cmd = Cli::command().mut_subcommand("run", |run| run.mut_args(go_bool));
    let matches = cmd.try_get_matches_from(go_style_args(argv))?;
    Cli::from_arg_matches(&matches)
}

/// The one-shot flags stay plain switches.
const SWITCHES: [&str; 3] = ["version", "build_info", "wait"];

/// A boolean flag as Go's flag package reads it: `--flag`, `--flag=false`
/// (true/false, 1/0, t/f, yes/no…); `--flag false` would be a stray value.
fn go_bool(a: Arg) -> Arg {
    if !matches!(a.get_action(), ArgAction::SetTrue) || SWITCHES.contains(&a.get_id().as_str()) {
        return a;
    }
    let default = if a.get_default_values().iter().any(|v| v == "true") {
        "true"
    } else {
        "false"
    };
    a.action(ArgAction::Set)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .default_value(default)
        .value_parser(BoolishValueParser::new())
}

/// `-flag` → `--flag` before `--` (Go's flag syntax, as daprd accepts it).
/// Only a dash followed by a letter is rewritten, so negative numbers
/// (`--app-max-concurrency -1`) stay values.
pub fn go_style_args(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    let mut rest = false;
    for a in argv {
        if !rest {
            if a == "--" {
                rest = true;
            } else if let Some(s) = a.to_str() {
                let b = s.as_bytes();
                if b.len() > 2 && b[0] == b'-' && b[1].is_ascii_alphabetic() {
                    out.push(OsString::from(format!("-{s}")));
                    continue;
                }
            }
        }
        out.push(a);
    }
    out
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    // ---------------------------------------------------------------- app
    /// Unique id of the app, used for service discovery, state key prefixes and metrics.
    #[arg(
        long = "app-id",
        env = "APP_ID",
        default_value = "",
        allow_hyphen_values = true,
        help_heading = "App"
    )]
    pub app_id: String,
    /// Port the app listens on (0: no app).
    #[arg(
        long = "app-port",
        value_name = "PORT",
        allow_hyphen_values = true,
        help_heading = "App"
    )]
    pub app_port_flag: Option<String>,
    /// Protocol of the app: http, grpc, h2c, https, grpcs.
    #[arg(long = "app-protocol", default_value = "http", value_parser = app_protocol,
          help_heading = "App")]
    pub app_protocol: String,
    /// Deprecated: TLS to the app (`--app-protocol https`, or grpcs with grpc).
    #[arg(long = "app-ssl", help_heading = "App")]
    pub app_ssl: bool,
    /// Address the app listens on.
    #[arg(
        long = "app-channel-address",
        default_value = "127.0.0.1",
        help_heading = "App"
    )]
    pub app_channel_address: String,
    /// Most requests in flight to the app at once (-1: no limit).
    #[arg(long = "app-max-concurrency", default_value_t = -1, allow_negative_numbers = true,
          help_heading = "App")]
    pub app_max_concurrency: i32,
    /// Probe the app's health (HTTP GET of the path, or gRPC HealthCheck).
    #[arg(long = "enable-app-health-check", help_heading = "App")]
    pub enable_app_health_check: bool,
    #[arg(
        long = "app-health-check-path",
        default_value = "/healthz",
        help_heading = "App"
    )]
    pub app_health_check_path: String,
    /// Seconds between app health probes.
    #[arg(
        long = "app-health-probe-interval",
        default_value_t = 5,
        allow_negative_numbers = true,
        help_heading = "App"
    )]
    pub app_health_probe_interval: i64,
    /// Milliseconds before an app health probe fails.
    #[arg(
        long = "app-health-probe-timeout",
        default_value_t = 500,
        allow_negative_numbers = true,
        help_heading = "App"
    )]
    pub app_health_probe_timeout: i64,
    /// Consecutive failures before the app counts as unhealthy.
    #[arg(
        long = "app-health-threshold",
        default_value_t = 3,
        allow_negative_numbers = true,
        help_heading = "App"
    )]
    pub app_health_threshold: i64,
    /// Init endpoints not to call on the app: `subscribe` (GET /dapr/subscribe), `config` (GET /dapr/config).
    #[arg(
        long = "disable-init-endpoints",
        value_delimiter = ',',
        help_heading = "App"
    )]
    pub disable_init_endpoints: Vec<String>,
    /// Timeout of the input-binding discovery call to the app (accepted; spar uses daprd's default, 3 s).
    #[arg(
        long = "app-binding-options-timeout",
        default_value = "3s",
        help_heading = "App"
    )]
    pub app_binding_options_timeout: String,

    // ---------------------------------------------------------- listeners
    #[arg(
        long = "dapr-http-port",
        default_value_t = 3500,
        help_heading = "Listeners"
    )]
    pub dapr_http_port: u16,
    #[arg(
        long = "dapr-grpc-port",
        default_value_t = 50001,
        help_heading = "Listeners"
    )]
    pub dapr_grpc_port: u16,
    /// Comma-separated addresses for the API listeners (empty: all interfaces, as daprd).
    #[arg(
        long = "dapr-listen-addresses",
        default_value = "",
        help_heading = "Listeners"
    )]
    pub dapr_listen_addresses: String,
    /// A port serving only health and metadata, without the API token (as daprd's public port).
    #[arg(long = "dapr-public-port", help_heading = "Listeners")]
    pub dapr_public_port: Option<u16>,
    /// Address of the public port (empty: all interfaces).
    #[arg(
        long = "dapr-public-listen-address",
        default_value = "",
        help_heading = "Listeners"
    )]
    pub dapr_public_listen_address: String,
    /// Port for sidecar-to-sidecar traffic (0 or omitted: a free port).
    #[arg(long = "dapr-internal-grpc-port", help_heading = "Listeners")]
    pub dapr_internal_grpc_port: Option<u16>,
    /// Address of the internal listener (default: the API listen addresses).
    #[arg(long = "dapr-internal-grpc-listen-address", help_heading = "Listeners")]
    pub dapr_internal_grpc_listen_address: Option<String>,
    /// Directory for Unix domain sockets: the HTTP and gRPC APIs listen on
    /// `dapr-{app-id}-http.socket` and `dapr-{app-id}-grpc.socket` there instead of TCP.
    #[arg(long = "unix-domain-socket", help_heading = "Listeners")]
    pub unix_domain_socket: Option<PathBuf>,
    /// Origins allowed to call the HTTP API from a browser (CORS): comma-separated, `*` for all; empty: no CORS headers.
    #[arg(
        long = "allowed-origins",
        default_value = "",
        help_heading = "Listeners"
    )]
    pub allowed_origins: String,
    /// Max request body as a quantity (`4Mi`, `512Ki`, `1048576`; 0: no limit).
    #[arg(
        long = "max-body-size",
        allow_hyphen_values = true,
        help_heading = "Listeners"
    )]
    pub max_body_size: Option<String>,
    /// Deprecated: max request body in MB (use --max-body-size).
    #[arg(
        long = "dapr-http-max-request-size",
        allow_negative_numbers = true,
        help_heading = "Listeners"
    )]
    pub dapr_http_max_request_size: Option<i64>,
    /// Max size of a request's headers, as a quantity (`4Ki`); as Go's server, 4 KiB more is tolerated.
    #[arg(
        long = "read-buffer-size",
        allow_hyphen_values = true,
        help_heading = "Listeners"
    )]
    pub read_buffer_size: Option<String>,
    /// Deprecated: the header size limit in KB (use --read-buffer-size).
    #[arg(
        long = "dapr-http-read-buffer-size",
        allow_negative_numbers = true,
        help_heading = "Listeners"
    )]
    pub dapr_http_read_buffer_size: Option<i64>,

    // ---------------------------------------------------------- resources
    /// Resource directories (repeatable or comma-separated).
    #[arg(
        long = "resources-path",
        value_delimiter = ',',
        help_heading = "Resources"
    )]
    pub resources_path: Vec<PathBuf>,
    /// Deprecated name of --resources-path (one directory; used only when
    /// --resources-path is not given, as daprd).
    #[arg(long = "components-path", help_heading = "Resources")]
    pub components_path: Option<PathBuf>,
    /// Configuration files (repeatable or comma-separated; merged in order, as daprd).
    #[arg(long = "config", value_delimiter = ',', help_heading = "Resources")]
    pub config: Vec<PathBuf>,
    /// Where embedded components keep data (default store: SQLite file here).
    #[arg(long = "data-dir", env = "SPAR_DATA_DIR", help_heading = "Resources")]
    pub data_dir: Option<PathBuf>,
    /// How often resources are re-read for hot reload (0: spar's default, 2s).
    #[arg(
        long = "hot-reload-reconcile-interval",
        default_value = "0",
        help_heading = "Resources"
    )]
    pub hot_reload_reconcile_interval: String,
    /// Kubernetes only (no built-in Kubernetes secret store in standalone mode): accepted.
    #[arg(long = "disable-builtin-k8s-secret-store", help_heading = "Resources")]
    pub disable_builtin_k8s_secret_store: bool,
    /// Runtime mode: standalone (kubernetes is accepted and runs as standalone).
    #[arg(long = "mode", default_value = "standalone", value_parser = ["standalone", "kubernetes"],
          help_heading = "Resources")]
    pub mode: String,

    // ---------------------------------------------------- logs and metrics
    #[arg(long = "log-level", default_value = "info",
          value_parser = ["debug", "info", "warn", "error", "fatal"],
          help_heading = "Logs and metrics")]
    pub log_level: String,
    #[arg(long = "log-as-json", help_heading = "Logs and metrics")]
    pub log_as_json: bool,
    /// Write logs to this file (appended) instead of the standard error.
    #[arg(long = "log-file", help_heading = "Logs and metrics")]
    pub log_file: Option<PathBuf>,
    /// Log every API call ("HTTP/gRPC API Called").
    #[arg(long = "enable-api-logging", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), help_heading = "Logs and metrics")]
    pub enable_api_logging_flag: Option<bool>,
    #[arg(
        long = "metrics-port",
        default_value_t = 9090,
        help_heading = "Logs and metrics"
    )]
    pub metrics_port: u16,
    #[arg(
        long = "metrics-listen-address",
        default_value = "0.0.0.0",
        help_heading = "Logs and metrics"
    )]
    pub metrics_listen_address: String,
    #[arg(
        long = "enable-metrics",
        default_value = "true",
        help_heading = "Logs and metrics"
    )]
    pub enable_metrics: bool,
    /// Go's pprof server: no Go runtime to profile; accepted (use perf on spar).
    #[arg(long = "enable-profiling", help_heading = "Logs and metrics")]
    pub enable_profiling: bool,
    /// Port of the profiling server (see --enable-profiling): accepted.
    #[arg(
        long = "profile-port",
        default_value_t = 7777,
        allow_negative_numbers = true,
        help_heading = "Logs and metrics"
    )]
    pub profile_port: i64,

    // ---------------------------------------------------------- shutdown
    #[arg(
        long = "dapr-graceful-shutdown-seconds",
        default_value_t = 5,
        allow_negative_numbers = true,
        help_heading = "Shutdown"
    )]
    pub dapr_graceful_shutdown_seconds: i64,
    /// On SIGTERM, keep serving for this long (or until the app is unhealthy)
    /// before shutting down; subscriptions stop at once (Go duration, e.g. 10s).
    #[arg(long = "dapr-block-shutdown-duration", help_heading = "Shutdown")]
    pub dapr_block_shutdown_duration: Option<String>,

    // ------------------------------------------------------------- mTLS
    /// Encrypt and authenticate sidecar-to-sidecar traffic with certificates from sentry.
    #[arg(long = "enable-mtls", help_heading = "Security")]
    pub enable_mtls: bool,
    /// Address of the certificate authority (`spar sentry`), host:port.
    #[arg(long = "sentry-address", help_heading = "Security")]
    pub sentry_address: Option<String>,
    /// PEM trust anchors (else the DAPR_TRUST_ANCHORS environment variable).
    #[arg(long = "trust-anchors-file", help_heading = "Security")]
    pub trust_anchors_file: Option<PathBuf>,
    /// Trust domain of sentry's identity.
    #[arg(
        long = "control-plane-trust-domain",
        env = "DAPR_CONTROLPLANE_TRUST_DOMAIN",
        default_value = "localhost",
        help_heading = "Security"
    )]
    pub control_plane_trust_domain: String,
    /// Namespace of sentry's identity.
    #[arg(
        long = "control-plane-namespace",
        env = "DAPR_CONTROLPLANE_NAMESPACE",
        default_value = "default",
        help_heading = "Security"
    )]
    pub control_plane_namespace: String,
    /// JWT audiences for certificate requests (sentry's JWT validator): accepted; spar's sentry validates as daprd's self-hosted one.
    #[arg(
        long = "sentry-request-jwt-audiences",
        value_delimiter = ',',
        help_heading = "Security"
    )]
    pub sentry_request_jwt_audiences: Vec<String>,
    /// Kubernetes operator address: accepted (standalone mode reads resources from disk).
    #[arg(long = "control-plane-address", help_heading = "Security")]
    pub control_plane_address: Option<String>,

    // ---------------------------------------------- actors and scheduler
    /// Placement service addresses: accepted; actors are not enabled yet.
    #[arg(long = "placement-host-address", help_heading = "Actors and scheduler")]
    pub placement_host_address: Option<String>,
    /// Scheduler addresses (host:port, comma-separated): the Jobs API and job delivery.
    #[arg(
        long = "scheduler-host-address",
        value_delimiter = ',',
        env = "DAPR_SCHEDULER_HOST_ADDRESS_DNS_A",
        help_heading = "Actors and scheduler"
    )]
    pub scheduler_host_address: Vec<String>,
    /// Job streams to the scheduler: accepted; spar opens one per scheduler node.
    #[arg(
        long = "scheduler-job-streams",
        default_value_t = 3,
        help_heading = "Actors and scheduler"
    )]
    pub scheduler_job_streams: u32,
    /// Placement dissemination timeout: accepted; actors are not enabled yet.
    #[arg(
        long = "actors-disseminate-timeout",
        default_value = "30s",
        help_heading = "Actors and scheduler"
    )]
    pub actors_disseminate_timeout: String,
    /// Deprecated in daprd, without effect there either.
    #[arg(long = "actors-service", hide = true)]
    pub actors_service: Option<String>,
    /// Deprecated in daprd, without effect there either.
    #[arg(long = "reminders-service", hide = true)]
    pub reminders_service: Option<String>,

    // ---------------------------------------------------- one-shot commands
    /// Print the Dapr runtime version spar serves and exit.
    #[arg(long = "version", action = ArgAction::SetTrue, help_heading = "Commands")]
    pub version: bool,
    /// Print the build information and exit.
    #[arg(long = "build-info", action = ArgAction::SetTrue, help_heading = "Commands")]
    pub build_info: bool,
    /// Wait until the sidecar on --dapr-http-port is outbound-ready (60 s at most), then exit.
    #[arg(long = "wait", action = ArgAction::SetTrue, help_heading = "Commands")]
    pub wait: bool,

    /// The app to launch, with its arguments (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

fn app_protocol(s: &str) -> Result<String, String> {
    let p = s.to_ascii_lowercase();
    match p.as_str() {
        "" => Ok("http".into()),
        "http" | "grpc" | "h2c" | "https" | "grpcs" => Ok(p),
        _ => Err(format!(
            "invalid value for 'app-protocol': {s} (http, grpc, h2c, https, grpcs)"
        )),
    }
}

/// daprd's default request body limit (4 MiB).
const DEFAULT_MAX_BODY: usize = 4 << 20;
/// daprd's default read buffer (4 KiB).
const DEFAULT_READ_BUFFER: usize = 4 << 10;

impl RunArgs {
    /// `--app-port`, with daprd's reading of 0 (and the CLI's negative
    /// "unset") as no app.
    pub fn app_port(&self) -> Option<u16> {
        self.app_port_flag
            .as_deref()
            .and_then(|p| p.trim().parse::<i64>().ok())
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
    }

    /// The effective app protocol: `--app-ssl` turns http into https and
    /// grpc into grpcs, as daprd does.
    pub fn effective_app_protocol(&self) -> String {
        match (self.app_protocol.as_str(), self.app_ssl) {
            ("http", true) => "https".into(),
            ("grpc", true) => "grpcs".into(),
            (p, _) => p.into(),
        }
    }

    /// `--dapr-internal-grpc-port` with 0 meaning "pick one".
    pub fn internal_port(&self) -> Option<u16> {
        self.dapr_internal_grpc_port.filter(|p| *p != 0)
    }

    /// The body limit in bytes: `--max-body-size` wins over the MB flag;
    /// 4 MiB by default, -1 the default, 0 no limit (as daprd).
    pub fn max_body_bytes(&self) -> Result<usize, String> {
        let bytes = if let Some(q) = &self.max_body_size {
            parse_quantity(q)
                .map_err(|e| format!("invalid value for 'max-body-size' option: {e}"))?
        } else if let Some(mb) = self.dapr_http_max_request_size {
            if mb > 0 {
                mb.saturating_mul(1 << 20)
            } else {
                mb
            }
        } else {
            return Ok(DEFAULT_MAX_BODY);
        };
        Ok(match bytes {
            0 => usize::MAX,
            b if b < 0 => DEFAULT_MAX_BODY,
            b => usize::try_from(b).unwrap_or(usize::MAX),
        })
    }

    /// The read buffer in bytes (`--read-buffer-size` over the KB flag;
    /// -1 the default, 4 KiB).
    pub fn read_buffer_bytes(&self) -> Result<usize, String> {
        let bytes = if let Some(q) = &self.read_buffer_size {
            parse_quantity(q)
                .map_err(|e| format!("invalid value for 'read-buffer-size' option: {e}"))?
        } else if let Some(kb) = self.dapr_http_read_buffer_size {
            if kb > 0 {
                kb.saturating_mul(1 << 10)
            } else {
                kb
            }
        } else {
            return Ok(DEFAULT_READ_BUFFER);
        };
        Ok(match bytes {
            b if b <= 0 => DEFAULT_READ_BUFFER,
            b => usize::try_from(b).unwrap_or(usize::MAX),
        })
    }

    /// The largest request head the HTTP listener reads: the read buffer
    /// plus the 4 KiB Go's server tolerates beyond `MaxHeaderBytes`.
    pub fn max_head_bytes(&self) -> Result<usize, String> {
        Ok(self.read_buffer_bytes()?.saturating_add(4096))
    }

    /// `--dapr-graceful-shutdown-seconds`; a negative value is daprd's default, 5 s.
    pub fn grace(&self) -> Duration {
        match u64::try_from(self.dapr_graceful_shutdown_seconds) {
            Ok(s) => Duration::from_secs(s),
            Err(_) => Duration::from_secs(5),
        }
    }

    /// `--dapr-block-shutdown-duration`, when set.
    pub fn block_shutdown(&self) -> Result<Option<Duration>, String> {
        self.dapr_block_shutdown_duration
            .as_deref()
            .map(|d| {
                spar_config::parse_duration(d)
                    .map_err(|e| format!("invalid value for 'dapr-block-shutdown-duration': {e}"))
            })
            .transpose()
    }

    /// API logging: the flag when given, else the Configuration decides.
    pub fn enable_api_logging(&self) -> Option<bool> {
        self.enable_api_logging_flag
    }

    /// The app health probe settings with daprd's defaults for values ≤ 0.
    pub fn health_probe(&self) -> Result<(Duration, Duration, u32), String> {
        let interval = u64::try_from(self.app_health_probe_interval)
            .ok()
            .filter(|s| *s > 0)
            .map_or(Duration::from_secs(5), Duration::from_secs);
        let timeout = u64::try_from(self.app_health_probe_timeout)
            .ok()
            .filter(|s| *s > 0)
            .map_or(Duration::from_millis(500), Duration::from_millis);
        if timeout > interval {
            return Err(
                "value for 'health-probe-timeout' must be smaller than 'health-probe-interval'"
                    .into(),
            );
        }
        let threshold = u32::try_from(self.app_health_threshold)
            .ok()
            .filter(|t| *t > 0)
            .unwrap_or(3);
        Ok((interval, timeout, threshold))
    }

    /// Addresses to bind the API listeners to.
    pub fn listen_hosts(&self) -> Vec<String> {
        hosts(&self.dapr_listen_addresses)
    }

    /// Addresses of the internal listener.
    pub fn internal_hosts(&self) -> Vec<String> {
        match &self.dapr_internal_grpc_listen_address {
            Some(a) if !a.trim().is_empty() => hosts(a),
            _ => self.listen_hosts(),
        }
    }

    /// daprd's reading of the two resource flags: `--components-path` only
    /// when `--resources-path` is absent; a directory named twice is read once.
    pub fn settle_resource_paths(&mut self) {
        if self.resources_path.is_empty() {
            if let Some(c) = self.components_path.take() {
                self.resources_path.push(c);
            }
        }
        let mut seen = std::collections::HashSet::new();
        self.resources_path.retain(|p| seen.insert(p.clone()));
    }

    /// Checks what daprd checks before starting (values clap can't).
    pub fn check(&self) -> Result<(), String> {
        if let Some(p) = self
            .app_port_flag
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            p.parse::<i64>()
                .ok()
                .filter(|n| *n < 65536)
                .ok_or_else(|| format!("error parsing app-port: {p:?} is not a port"))?;
        }
        self.max_body_bytes()?;
        self.read_buffer_bytes()?;
        self.block_shutdown()?;
        self.health_probe()?;
        for e in &self.disable_init_endpoints {
            let e = e.trim().to_ascii_lowercase();
            if !e.is_empty() && e != "config" && e != "subscribe" {
                return Err(format!(
                    "invalid value for 'disable-init-endpoints': {e} (config, subscribe)"
                ));
            }
        }
        match spar_config::parse_duration(&self.actors_disseminate_timeout) {
            Ok(d) if !d.is_zero() => {}
            _ => {
                return Err(format!(
                "invalid value for 'actors-disseminate-timeout' option: must be positive, got {}",
                self.actors_disseminate_timeout
            ))
            }
        }
        for (flag, v) in [
            (
                "hot-reload-reconcile-interval",
                &self.hot_reload_reconcile_interval,
            ),
            (
                "app-binding-options-timeout",
                &self.app_binding_options_timeout,
            ),
        ] {
            if v != "0" {
                spar_config::parse_duration(v)
                    .map_err(|e| format!("invalid value for '{flag}': {e}"))?;
            }
        }
        if let Some(p) = self.app_port() {
            if p == self.dapr_http_port {
                return Err(format!(
                    "the 'dapr-http-port' argument value {p} conflicts with 'app-port'"
                ));
            }
            if p == self.dapr_grpc_port {
                return Err(format!(
                    "the 'dapr-grpc-port' argument value {p} conflicts with 'app-port'"
                ));
            }
        }
        Ok(())
    }

    /// How often hot reload looks at the files: the reconcile interval
    /// when given, else once a second.
    pub fn reload_poll(&self) -> Duration {
        match self.hot_reload_reconcile_interval.as_str() {
            "0" | "" => Duration::from_secs(1),
            v => spar_config::parse_duration(v)
                .ok()
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(1)),
        }
    }

    /// Whether the app's `GET /dapr/subscribe` is called.
    pub fn programmatic_subscriptions(&self) -> bool {
        !self
            .disable_init_endpoints
            .iter()
            .any(|e| e.trim().eq_ignore_ascii_case("subscribe"))
    }

    /// Flags spar accepts for compatibility whose building block is not
    /// there yet, or that have no meaning outside daprd: one line each at
    /// start, so nobody wonders what they did.
    pub fn accepted_only(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.placement_host_address {
            if !p.trim().is_empty() {
                out.push(format!(
                    "--placement-host-address {p}: accepted; actors are not enabled yet"
                ));
            }
        }

        if self.enable_profiling {
            out.push(format!(
                "--enable-profiling (profile port {}): accepted; spar has no Go profiler (use perf)",
                self.profile_port
            ));
        }
        if self.mode == "kubernetes" {
            out.push(
                "--mode kubernetes: accepted; spar reads resources from disk as in standalone mode"
                    .into(),
            );
        }
        if let Some(a) = &self.control_plane_address {
            out.push(format!(
                "--control-plane-address {a}: accepted; there is no operator in standalone mode"
            ));
        }
        if !self.sentry_request_jwt_audiences.is_empty() {
            out.push("--sentry-request-jwt-audiences: accepted; spar sentry validates requests as daprd's self-hosted sentry".into());
        }
        if self.actors_service.is_some() || self.reminders_service.is_some() {
            out.push(
                "--actors-service / --reminders-service: deprecated in daprd, no effect".into(),
            );
        }
        if self
            .disable_init_endpoints
            .iter()
            .any(|e| e.trim().eq_ignore_ascii_case("config"))
        {
            out.push("--disable-init-endpoints config: accepted; spar does not call GET /dapr/config (no actors yet)".into());
        }
        out
    }
}

fn hosts(csv: &str) -> Vec<String> {
    let hosts: Vec<String> = csv
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

/// A Kubernetes resource quantity in bytes, as daprd's `--max-body-size`
/// and `--read-buffer-size` take them: an optional sign, a decimal number
/// (fraction and `e` exponent allowed), then a binary (`Ki`, `Mi`, `Gi`,
/// `Ti`, `Pi`, `Ei`) or decimal (`k`, `M`, `G`, `T`, `P`, `E`) suffix. The
/// result must be a whole number of bytes.
pub fn parse_quantity(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let bad = || format!("invalid quantity {s:?}");
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, mut unit) = body.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(bad());
    }
    // A decimal exponent: `1e3`, `5E-1`.
    let mut exp: i32 = 0;
    if let Some(rest) = unit.strip_prefix(['e', 'E']) {
        if !rest.is_empty()
            && rest
                .trim_start_matches(['+', '-'])
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            exp = rest.parse().map_err(|_| bad())?;
            unit = "";
        }
    }
    let (base, pow): (u32, u32) = match unit {
        "" => (10, 0),
        "k" => (10, 3),
        "M" => (10, 6),
        "G" => (10, 9),
        "T" => (10, 12),
        "P" => (10, 15),
        "E" => (10, 18),
        "Ki" => (2, 10),
        "Mi" => (2, 20),
        "Gi" => (2, 30),
        "Ti" => (2, 40),
        "Pi" => (2, 50),
        "Ei" => (2, 60),
        _ => return Err(format!("invalid quantity unit in {s:?}")),
    };
    // Exact arithmetic on the digits: value = digits × 10^(exp − fraction
    // digits) × base^pow.
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int}{frac}");
    let mut mantissa: i128 = digits.parse().map_err(|_| bad())?;
    let mut ten_pow = exp - frac.len() as i32;
    if base == 10 {
        ten_pow += pow as i32;
    } else {
        mantissa = mantissa
            .checked_mul(1i128 << pow)
            .ok_or_else(|| format!("quantity {s:?} too large"))?;
    }
    while ten_pow > 0 {
        mantissa = mantissa
            .checked_mul(10)
            .ok_or_else(|| format!("quantity {s:?} too large"))?;
        ten_pow -= 1;
    }
    while ten_pow < 0 {
        if mantissa % 10 != 0 {
            return Err(format!("quantity {s:?} is not a whole number of bytes"));
        }
        mantissa /= 10;
        ten_pow += 1;
    }
    let v = i64::try_from(mantissa).map_err(|_| format!("quantity {s:?} too large"))?;
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunArgs {
        let mut v: Vec<OsString> = vec!["spar".into(), "run".into()];
        v.extend(args.iter().map(OsString::from));
        match parse(v).unwrap().command {
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
        assert_eq!(r.read_buffer_bytes().unwrap(), 4 << 10);
        assert_eq!(r.listen_hosts(), vec!["0.0.0.0"]);
        assert_eq!(r.enable_api_logging(), None);
        assert!(r.check().is_ok());
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
            "-app-id",
            "x",
            "-enable-mtls=true",
            "--enable-api-logging=0",
            "--",
            "sh",
            "-c",
            "exit 3",
        ]);
        let mut r = r;
        r.settle_resource_paths();
        assert!(!r.enable_metrics);
        assert!(r.log_as_json);
        assert!(r.enable_mtls);
        assert_eq!(r.app_id, "x");
        assert_eq!(r.enable_api_logging(), Some(false));
        // daprd reads --components-path only without --resources-path.
        assert_eq!(r.resources_path, vec![PathBuf::from("b")]);
        assert_eq!(r.listen_hosts(), vec!["127.0.0.1", "::1"]);
        assert_eq!(r.command, vec!["sh", "-c", "exit 3"]);
    }

    /// The argv `dapr run` builds (pkg/standalone/run.go): a 0 app port,
    /// a -1 profile port and concurrency, quantities, control-plane hosts.
    #[test]
    fn dapr_cli_argv() {
        let r = run(&[
            "--app-id",
            "myapp",
            "--app-port",
            "0",
            "--dapr-http-port",
            "3501",
            "--dapr-grpc-port",
            "50002",
            "--profile-port",
            "-1",
            "--metrics-port",
            "9091",
            "--dapr-internal-grpc-port",
            "50100",
            "--config",
            "/home/u/.dapr/config.yaml",
            "--app-protocol",
            "http",
            "--placement-host-address",
            "localhost:50005",
            "--app-max-concurrency",
            "-1",
            "--resources-path",
            "/home/u/.dapr/components",
            "--max-body-size",
            "4Mi",
            "--read-buffer-size",
            "4Ki",
            "--scheduler-host-address",
            "localhost:50006",
            "--log-as-json",
        ]);
        assert_eq!(r.app_port(), None);
        assert_eq!(r.profile_port, -1);
        assert_eq!(r.app_max_concurrency, -1);
        assert_eq!(r.internal_port(), Some(50100));
        assert_eq!(r.max_body_bytes().unwrap(), 4 << 20);
        assert_eq!(r.read_buffer_bytes().unwrap(), 4 << 10);
        assert_eq!(r.scheduler_host_address, vec!["localhost:50006"]);
        assert!(r.check().is_ok());
        assert_eq!(r.accepted_only().len(), 1);
    }

    /// daprd's scheduler mTLS flags, Go style (`-tls-enabled=true`) too.
    #[test]
    fn scheduler_tls_flags_as_daprd() {
        for tls in ["--tls-enabled", "-tls-enabled=true", "--tls-enabled=true"] {
            let cli = parse(
                [
                    "spar",
                    "scheduler",
                    tls,
                    "--trust-domain",
                    "cluster.local",
                    "--trust-anchors-file",
                    "/tmp/ca.crt",
                    "--sentry-address",
                    "127.0.0.1:50001",
                ]
                .into_iter()
                .map(OsString::from)
                .collect(),
            )
            .unwrap();
            let Command::Scheduler(a) = cli.command else {
                panic!("not the scheduler")
            };
            assert!(a.tls_enabled, "{tls}");
            assert_eq!(a.trust_domain, "cluster.local");
            assert_eq!(a.sentry_address.as_deref(), Some("127.0.0.1:50001"));
            assert!(a.trust_anchors_file.is_some());
        }
        let cli = parse(vec!["spar".into(), "scheduler".into()]).unwrap();
        let Command::Scheduler(a) = cli.command else {
            panic!("not the scheduler")
        };
        assert!(!a.tls_enabled);
        assert_eq!(a.trust_domain, "localhost");
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
        assert_eq!(
            run(&["--max-body-size", "-1"]).max_body_bytes().unwrap(),
            4 << 20
        );
        assert_eq!(
            run(&["--max-body-size", "0"]).max_body_bytes().unwrap(),
            usize::MAX
        );
        assert!(run(&["--max-body-size", "12Xi"]).max_body_bytes().is_err());
        assert_eq!(
            run(&["--dapr-http-read-buffer-size", "16"])
                .read_buffer_bytes()
                .unwrap(),
            16 << 10
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("4Mi"), Ok(4 << 20));
        assert_eq!(parse_quantity("4M"), Ok(4_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Ok(1536));
        assert_eq!(parse_quantity("1e3"), Ok(1000));
        assert_eq!(parse_quantity("2k"), Ok(2000));
        assert_eq!(parse_quantity("-1"), Ok(-1));
        assert_eq!(parse_quantity("0"), Ok(0));
        assert!(parse_quantity("1.5").is_err());
        assert!(parse_quantity("Mi").is_err());
        assert!(parse_quantity("4 Mi").is_err());
        assert!(parse_quantity("1Ei").is_ok());
        assert!(parse_quantity("100Ei").is_err());
    }

    #[test]
    fn daprd_value_checks() {
        assert!(run(&["--disable-init-endpoints", "subscribe,config"])
            .check()
            .is_ok());
        assert!(run(&["--disable-init-endpoints", "nope"]).check().is_err());
        assert!(run(&["--actors-disseminate-timeout", "0s"])
            .check()
            .is_err());
        assert!(run(&["--app-port", "3500"]).check().is_err());
        assert!(run(&[
            "--app-health-probe-interval",
            "1",
            "--app-health-probe-timeout",
            "2000"
        ])
        .check()
        .is_err());
        assert_eq!(run(&["--app-protocol", "GRPC"]).app_protocol, "grpc");
        assert_eq!(
            run(&["--app-protocol", "grpc", "--app-ssl"]).effective_app_protocol(),
            "grpcs"
        );
        assert!(!run(&["--disable-init-endpoints", "subscribe"]).programmatic_subscriptions());
        // Given twice: the last wins; lists append.
        let r = run(&[
            "--metrics-port",
            "1",
            "--metrics-port",
            "2",
            "--config",
            "a",
            "--config",
            "b",
        ]);
        assert_eq!(r.metrics_port, 2);
        assert_eq!(r.config, vec![PathBuf::from("a"), PathBuf::from("b")]);
    }
}
