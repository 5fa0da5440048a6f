//! Test support: start the real `spar` binary on free ports with a resources
//! directory, wait until it is healthy, and clean up on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `spar` binary: `$SPAR_BIN`, else `target/debug/spar` of this workspace.
pub fn spar_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPAR_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("spar");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A unique name for keys, stores and topics, so tests never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

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

/// A private `redis-server` on a free port (never the shared one on 6379),
/// killed on drop. `extra` adds flags such as `--requirepass`.
pub struct PrivateRedis {
    pub port: u16,
    child: Child,
    extra: Vec<String>,
}

impl PrivateRedis {
    pub fn start(extra: &[&str]) -> PrivateRedis {
        let port = free_port();
        let mut r = PrivateRedis {
            port,
            child: Self::spawn(port, extra),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.wait_up();
        r
    }

    fn spawn(port: u16, extra: &[impl AsRef<std::ffi::OsStr>]) -> Child {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)")
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, &self.extra);
        self.wait_up();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private PostgreSQL cluster on a free port (never the shared one on
/// 5432), in a temporary directory, trust auth, user `postgres`. Runs the
/// server as the `postgres` system user (PostgreSQL refuses root).
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (Debian package postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("initdb/postgres under /usr/lib/postgresql/*/bin")
}

/// Runs `bin` directly as the `postgres` user (no wrapper process, so
/// signals reach the server itself).
fn as_postgres(bin: PathBuf) -> Command {
    use std::os::unix::process::CommandExt;
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("postgres user")
    };
    let mut c = Command::new(bin);
    c.uid(id("-u")).gid(id("-g"));
    c
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // The postgres user must own the directory.
        let st = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "chown failed");
        let out = as_postgres(pg_bin("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut p = PrivatePostgres {
            port: free_port(),
            dir,
            child: None,
        };
        p.restart();
        p
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let child = as_postgres(pg_bin("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Accepting TCP is not yet accepting queries; give recovery a moment.
        std::thread::sleep(Duration::from_millis(300));
    }

    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

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
}

impl Drop for Sentry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes the Redis keys matching `pattern` (a test's streams or keys).
pub async fn delete_redis_keys(pattern: &str) {
    let Ok(client) = redis::Client::open("redis://127.0.0.1:6379") else {
        return;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for k in keys {
        let _: Result<i64, _> = redis::cmd("DEL").arg(k).query_async(&mut c).await;
    }
}

/// Deletes the JetStream streams whose name contains `part` (streams are
/// named after their topic, with `.` as `_`).
pub async fn delete_jetstream_streams(part: &str) {
    use futures::StreamExt;
    let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let part = part.replace(['.', '*', '>', ' '], "_");
    let mut names = js.stream_names();
    let mut ours = Vec::new();
    while let Some(Ok(n)) = names.next().await {
        if n.contains(&part) {
            ours.push(n);
        }
    }
    for n in ours {
        let _ = js.delete_stream(&n).await;
    }
}

/// Deletes the RabbitMQ queues and exchanges whose name contains `part`
/// (listed with `rabbitmqctl`, deleted over AMQP).
pub async fn delete_rabbitmq(part: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let list = |what: &str| -> Vec<String> {
        Command::new("rabbitmqctl")
            .args([what, "-q", "--no-table-headers", "name"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|n| n.contains(part))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (queues, exchanges) = (list("list_queues"), list("list_exchanges"));
    let Ok(conn) = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672",
        lapin::ConnectionProperties::default(),
    )
    .await
    else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    for q in queues {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in exchanges {
        let _ = ch
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// Ends the MQTT sessions of these client ids (the consumer connection of
/// `pubsub.mqtt3` for group G on this host is `G-{hostname}`): a clean
/// session connect discards the broker's session and its subscriptions.
pub async fn clear_mqtt_sessions(groups: &[&str]) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    for g in groups {
        let mut o = rumqttc::MqttOptions::new(format!("{g}-{host}"), "127.0.0.1", 1883);
        o.set_clean_session(true);
        let (client, mut ev) = rumqttc::AsyncClient::new(o, 10);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(e) = ev.poll().await {
                if matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) {
                    break;
                }
            }
        })
        .await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), ev.poll()).await;
    }
}
