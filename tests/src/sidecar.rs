//! A `spar run` child process on free ports with its resources directory,
//! waited for until healthy and killed on drop; small HTTP helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, spar_bin, unique};

pub struct Options {
    pub app_id: String,
    /// The one address the sidecar listens on (`--dapr-listen-addresses`).
    pub listen_host: String,
    /// Component and other resource YAML documents, written to one file.
    pub resources: Vec<String>,
    /// Run without `--resources-path` (the embedded default).
    pub no_resources: bool,
    pub config: Option<String>,
    pub env: Vec<(String, String)>,
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            app_id: unique("app"),
            listen_host: "127.0.0.1".into(),
            resources: vec![],
            no_resources: false,
            config: None,
            env: vec![],
            extra_args: vec![],
        }
    }
}

pub struct Sidecar {
    pub child: Child,
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub app_id: String,
    pub dir: tempfile::TempDir,
    pub started: Instant,
    pub ready_after: Duration,
    /// The sidecar's stderr.
    pub log: PathBuf,
}

/// A `state.sqlite` component stored in the sidecar's temporary directory
/// (`{dir}` is replaced by [`Sidecar::start`]).
pub fn sqlite_component(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{{dir}}/{name}.db\"\n"
    )
}

pub fn memory_component(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.in-memory\n  version: v1\n"
    )
}

impl Sidecar {
    pub fn start(opts: Options) -> Sidecar {
        Self::start_with_files(opts, &[])
    }

    /// Like [`Sidecar::start`], with extra files (name, content) written into
    /// the sidecar's directory first (`{dir}` in resources points there).
    pub fn start_with_files(opts: Options, files: &[(&str, &str)]) -> Sidecar {
        let mut dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let res_dir = dir.path().join("resources");
        std::fs::create_dir_all(&res_dir).unwrap();
        let yaml = opts
            .resources
            .join("\n---\n")
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(res_dir.join("components.yaml"), yaml).unwrap();
        let config = opts.config.as_ref().map(|c| {
            let p = dir.path().join("config.yaml");
            std::fs::write(&p, c).unwrap();
            p
        });
        // A port picked free can be taken by a parallel test before spar binds
        // it; spar then exits with "cannot listen" and we try other ports.
        for attempt in 1..=5 {
            let (http_port, grpc_port, metrics_port) = (free_port(), free_port(), free_port());
            let log = dir.path().join(format!("spar-{attempt}.log"));
            let mut cmd = Command::new(spar_bin());
            cmd.arg("run")
                .args(["--app-id", &opts.app_id])
                .args(["--dapr-http-port", &http_port.to_string()])
                .args(["--dapr-grpc-port", &grpc_port.to_string()])
                .args(["--metrics-port", &metrics_port.to_string()])
                .args(["--dapr-listen-addresses", &opts.listen_host])
                .args(["--data-dir", &dir.path().join("data").display().to_string()]);
            if !opts.no_resources {
                cmd.args(["--resources-path", &res_dir.display().to_string()]);
            }
            if let Some(p) = &config {
                cmd.args(["--config", &p.display().to_string()]);
            }
            // stderr goes to a file: a pipe nobody drains could block spar.
            cmd.args(&opts.extra_args)
                .env_remove("DAPR_API_TOKEN")
                .envs(opts.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"));
            let started = Instant::now();
            let child = cmd.spawn().expect("spawn spar");
            let mut sc = Sidecar {
                child,
                host: opts.listen_host.clone(),
                http_port,
                grpc_port,
                metrics_port,
                app_id: opts.app_id.clone(),
                dir,
                started,
                ready_after: Duration::ZERO,
                log,
            };
            match sc.wait_healthy(Duration::from_secs(20)) {
                Ok(()) => return sc,
                Err(e) if e.contains("cannot listen") && attempt < 5 => dir = sc.take_dir(),
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("spar exited early ({st}): {}", self.stderr()));
            }
            if http_status_at(&self.host, self.http_port, "GET", "/v1.0/healthz") == Some(204) {
                self.ready_after = self.started.elapsed();
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!(
                    "spar not healthy after {limit:?}: {}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The local ports of this sidecar's established TCP connections to
    /// `port` (read from /proc: its socket inodes, matched in net/tcp{,6}).
    pub fn connections_to(&self, port: u16) -> Vec<u16> {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.child.id()));
        let inodes: std::collections::HashSet<String> = fds
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect();
        let hex_port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let established = f.get(3) == Some(&"01");
                (established && hex_port(f.get(2)?) == Some(port) && inodes.contains(*f.get(9)?))
                    .then(|| hex_port(f[1]))?
            })
            .collect()
    }

    /// A `key=value` field of the "spar is ready" log line.
    pub fn ready_field(&self, key: &str) -> Option<String> {
        let log = self.stderr();
        let line = log.lines().find(|l| l.contains("spar is ready"))?;
        let rest = &line[line.find(&format!(" {key}="))? + key.len() + 2..];
        Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
    }

    /// What the sidecar has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn http(&self) -> String {
        format!("http://{}:{}", self.host, self.http_port)
    }

    pub fn grpc(&self) -> String {
        format!("http://{}:{}", self.host, self.grpc_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A bare-bones HTTP/1.1 request with std only (used while waiting for
/// start-up, where an async client would be overkill). Returns the status.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    http_status_at("127.0.0.1", port, method, path)
}

pub fn http_status_at(host: &str, port: u16, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// GET a URL and parse the body as JSON (panics with the URL on failure).
pub async fn get_json(c: &reqwest::Client, url: String) -> serde_json::Value {
    let r = c
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// `spar run` on free loopback ports with its own data dir; returns the
/// command (add more args, then the app after `--`) and the HTTP port.
pub fn run_command(data_dir: &Path, app_id: &str) -> (Command, u16) {
    let http = free_port();
    let mut cmd = Command::new(spar_bin());
    cmd.args([
        "run",
        "--app-id",
        app_id,
        "--dapr-listen-addresses",
        "127.0.0.1",
    ])
    .args(["--dapr-http-port", &http.to_string()])
    .args(["--dapr-grpc-port", &free_port().to_string()])
    .args(["--metrics-port", &free_port().to_string()])
    .args(["--data-dir", &data_dir.display().to_string()]);
    (cmd, http)
}
