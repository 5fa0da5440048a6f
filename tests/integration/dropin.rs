//! spar where the Dapr CLI puts daprd: started with the argv `dapr run`
//! builds, on the files `dapr init` writes, with every daprd flag; daprd's
//! rules for failing components; the flags that change behaviour (CORS,
//! Unix domain sockets, the public port, blocked shutdown, init endpoints,
//! log file, metrics address, `--wait`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::json;
use spar_tests::{free_port, get_json, http_status, spar_bin, unique};

/// A sidecar started from an argv of our choosing, killed on drop.
struct Started {
    child: Child,
    log: PathBuf,
}

impl Started {
    fn spawn(mut cmd: Command, log: PathBuf) -> Started {
        cmd.stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        Started {
            child: cmd.spawn().expect("spawn spar"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET /v1.0/healthz` on `port` answers 204.
    fn healthy(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("spar exited ({st}): {}", self.log());
            }
            if http_status(port, "GET", "/v1.0/healthz") == Some(204) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("spar not healthy: {}", self.log());
    }

    /// Waits for the process to exit; its code.
    fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn signal(&self, sig: i32) {
        Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET path` once the listener answers (each listener
/// comes up on a thread of its own), within 10 s.
fn eventually_status(port: u16, path: &str) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = http_status(port, "GET", path);
        if s.is_some() || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `~/.dapr` as `dapr init` leaves it (Redis on localhost), with spar
/// installed as `~/.dapr/bin/daprd`.
fn dapr_home(dir: &Path) -> PathBuf {
    let dapr = dir.join(".dapr");
    std::fs::create_dir_all(dapr.join("components")).unwrap();
    std::fs::create_dir_all(dapr.join("bin")).unwrap();
    std::os::unix::fs::symlink(spar_bin(), dapr.join("bin").join("daprd")).unwrap();
    // Go's YAML encoder output, as the CLI writes it.
    std::fs::write(
        dapr.join("config.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\nspec:\n  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: http://localhost:9411/api/v2/spans\n",
    )
    .unwrap();
    std::fs::write(
        dapr.join("components").join("statestore.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword\n    value: \"\"\n  - name: actorStateStore\n    value: \"true\"\n",
    )
    .unwrap();
    std::fs::write(
        dapr.join("components").join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword\n    value: \"\"\n",
    )
    .unwrap();
    dapr
}

/// The exact argv `dapr run --app-id … -- app` gives daprd in self-hosted
/// mode (dapr/cli pkg/standalone/run.go `getArgs`, field order), with no
/// app port and profiling off.
fn cli_argv(
    app_id: &str,
    dapr: &Path,
    http: u16,
    grpc: u16,
    metrics: u16,
    internal: u16,
) -> Vec<String> {
    [
        "--app-id",
        app_id,
        "--app-port",
        "0",
        "--dapr-http-port",
        &http.to_string(),
        "--dapr-grpc-port",
        &grpc.to_string(),
        "--profile-port",
        "-1",
        "--metrics-port",
        &metrics.to_string(),
        "--dapr-internal-grpc-port",
        &internal.to_string(),
        "--config",
        &dapr.join("config.yaml").display().to_string(),
        "--app-protocol",
        "http",
        "--placement-host-address",
        "localhost:50005",
        "--app-max-concurrency",
        "-1",
        "--resources-path",
        &dapr.join("components").display().to_string(),
        "--max-body-size",
        "4Mi",
        "--read-buffer-size",
        "4Ki",
        "--scheduler-host-address",
        "localhost:50006",
        "--log-as-json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test]
async fn starts_as_the_dapr_cli_starts_daprd_on_dapr_init_files() {
    let home = tempfile::tempdir().unwrap();
    let dapr = dapr_home(home.path());
    let daprd = dapr.join("bin").join("daprd");

    // The CLI reads the runtime version first, and compares it as semver.
    let v = Command::new(&daprd).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&v.stdout).trim().to_string();
    assert!(v.status.success());
    assert!(version.starts_with("1.18.0-spar."), "{version}");

    let (http, grpc, metrics, internal) = (free_port(), free_port(), free_port(), free_port());
    let app_id = unique("cli");
    let mut cmd = Command::new(&daprd);
    cmd.args(cli_argv(&app_id, &dapr, http, grpc, metrics, internal))
        .env("HOME", home.path());
    let mut sc = Started::spawn(cmd, home.path().join("daprd.log"));
    sc.healthy(http);

    let (c, base) = (Client::new(), format!("http://127.0.0.1:{http}"));
    let key = unique("k");
    let r = c
        .post(format!("{base}/v1.0/state/statestore"))
        .json(&json!([{"key": key, "value": {"hello": "world"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_json(&c, format!("{base}/v1.0/state/statestore/{key}")).await,
        json!({"hello": "world"})
    );
    // daprd's Redis layout: a hash under `{app id}||{key}`.
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let data: String = redis::cmd("HGET")
        .arg(format!("{app_id}||{key}"))
        .arg("data")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(data, r#"{"hello":"world"}"#);
    let _: () = redis::cmd("DEL")
        .arg(format!("{app_id}||{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = c
        .post(format!("{base}/v1.0/publish/pubsub/{}", unique("t")))
        .json(&json!({"id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let md = get_json(&c, format!("{base}/v1.0/metadata")).await;
    assert_eq!(md["id"], app_id.as_str());
    assert_eq!(md["runtimeVersion"], version.as_str());
    let names: Vec<&str> = md["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"statestore") && names.contains(&"pubsub"),
        "{md}"
    );
    // No app: `--app-port 0` is daprd's "no app".
    assert!(
        md["appConnectionProperties"]
            .get("port")
            .is_none_or(|p| p == 0),
        "{md}"
    );
    // Control-plane flags whose blocks come later are accepted and said so.
    let log = sc.log();
    assert!(
        log.contains("placement-host-address") && log.contains("accepted"),
        "{log}"
    );
}

/// Every flag of daprd v1.18 (cmd/daprd/options, the logger's and the
/// metrics' flags), in the spellings Go's flag packages accept.
#[test]
fn takes_every_daprd_flag() {
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("res");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(
        res.join("mem.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n",
    )
    .unwrap();
    let sock = dir.path().join("sock");
    std::fs::create_dir_all(&sock).unwrap();
    let (http, public, metrics) = (free_port(), free_port(), free_port());
    let s = |p: u16| p.to_string();
    let args: Vec<String> = [
        "-mode",
        "standalone",
        "--dapr-http-port",
        &s(http),
        "--dapr-listen-addresses=127.0.0.1",
        "--dapr-public-port",
        &s(public),
        "--dapr-public-listen-address",
        "127.0.0.1",
        "--dapr-grpc-port",
        &s(free_port()),
        "--dapr-internal-grpc-port",
        "0",
        "--dapr-internal-grpc-listen-address",
        "127.0.0.1",
        "--app-port",
        "",
        "--profile-port",
        "7777",
        "--app-protocol",
        "http",
        "--components-path",
        &res.display().to_string(),
        "--resources-path",
        &res.display().to_string(),
        "--app-id",
        "every-flag",
        "--control-plane-address",
        "localhost:6500",
        "--sentry-address",
        "localhost:50001",
        "--control-plane-trust-domain",
        "cluster.local",
        "--control-plane-namespace",
        "dapr-system",
        "--sentry-request-jwt-audiences",
        "a,b",
        "--allowed-origins",
        "*",
        "--enable-profiling=false",
        "--app-max-concurrency",
        "-1",
        "--enable-mtls=false",
        "--app-ssl=false",
        "--dapr-http-max-request-size",
        "4",
        "--max-body-size",
        "4Mi",
        "--dapr-http-read-buffer-size",
        "4",
        "--read-buffer-size",
        "4Ki",
        "--dapr-graceful-shutdown-seconds",
        "5",
        "--dapr-block-shutdown-duration",
        "0s",
        "--enable-api-logging",
        "--disable-builtin-k8s-secret-store",
        "--enable-app-health-check=false",
        "--app-health-check-path",
        "/healthz",
        "--app-health-probe-interval",
        "5",
        "--app-health-probe-timeout",
        "500",
        "--app-health-threshold",
        "3",
        "--app-channel-address",
        "127.0.0.1",
        "--disable-init-endpoints",
        "config,subscribe",
        "--placement-host-address",
        "localhost:50005",
        "--scheduler-host-address",
        "localhost:50006",
        "--scheduler-job-streams",
        "3",
        "--actors-disseminate-timeout",
        "30s",
        "--hot-reload-reconcile-interval",
        "30s",
        "--app-binding-options-timeout",
        "3s",
        "--reminders-service",
        "x",
        "--actors-service",
        "y",
        "-log-level",
        "debug",
        "--log-as-json=false",
        "--metrics-port",
        &s(metrics),
        "--metrics-listen-address",
        "127.0.0.1",
        "--enable-metrics=true",
        "--data-dir",
        &dir.path().join("data").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cmd = Command::new(spar_bin());
    cmd.arg("run").args(&args);
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    sc.healthy(public);
    assert_eq!(eventually_status(metrics, "/metrics"), Some(200));

    // The one-shot flags.
    let out = Command::new(spar_bin())
        .args(["run", "--build-info"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Version: 1.18.0-spar."),
        "{text}"
    );
    let help = Command::new(spar_bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for f in [
        "--placement-host-address",
        "--scheduler-host-address",
        "--enable-profiling",
        "--unix-domain-socket",
        "--read-buffer-size",
    ] {
        assert!(help.contains(f), "{f} missing in --help");
    }
    // What daprd refuses, spar refuses, naming the flag.
    for bad in [
        &["--disable-init-endpoints", "nope"][..],
        &["--app-protocol", "ftp"],
        &["--max-body-size", "12Xi"],
        &["--actors-disseminate-timeout", "0s"],
    ] {
        let out = Command::new(spar_bin())
            .arg("run")
            .args(bad)
            .output()
            .unwrap();
        assert!(out.status.code().is_some_and(|c| c != 0), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(bad[0].trim_start_matches('-')),
            "{bad:?}: {err}"
        );
    }
}

/// An in-memory state store named `mem`, with no version (daprd's v1).
const MEM: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n";

fn component_dir(dir: &Path, docs: &[(&str, &str)]) -> PathBuf {
    let res = dir.join("res");
    std::fs::create_dir_all(&res).unwrap();
    for (name, text) in docs {
        std::fs::write(res.join(name), text).unwrap();
    }
    res
}

fn run_with(dir: &Path, res: &Path, extra: &[&str]) -> (Command, u16) {
    let http = free_port();
    let mut cmd = Command::new(spar_bin());
    cmd.args([
        "run",
        "--app-id",
        "comp",
        "--dapr-listen-addresses",
        "127.0.0.1",
    ])
    .args(["--dapr-http-port", &http.to_string()])
    .args(["--dapr-grpc-port", &free_port().to_string()])
    .args(["--metrics-port", &free_port().to_string()])
    .args(["--data-dir", &dir.join("data").display().to_string()])
    .arg("--resources-path")
    .arg(res)
    .args(extra);
    (cmd, http)
}

/// A component spar does not know, or one that fails to start, stops the
/// sidecar at start-up with its file and the reason, as daprd does.
#[test]
fn failing_components_fail_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(
        dir.path(),
        &[(
            "lock.yaml",
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: lockstore\nspec:\n  type: lock.nosuchthing\n  version: v1\n",
        )],
    );
    let (mut cmd, _) = run_with(dir.path(), &res, &[]);
    let out = cmd.output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lockstore") && err.contains("lock.yaml") && err.contains("lock.nosuchthing"),
        "{err}"
    );

    // A Redis nobody answers on: init fails, naming the component.
    let dead = free_port();
    let res = component_dir(
        dir.path(),
        &[(
            "lock.yaml",
            &format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: lockstore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{dead}\n  - name: maxRetries\n    value: \"0\"\n"),
        )],
    );
    let out = run_with(dir.path(), &res, &[]).0.output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lockstore") && err.contains("state.redis/v1"),
        "{err}"
    );

    // Brokers nobody answers for: each broker's init fails the start.
    for (ty, meta) in [
        (
            "pubsub.redis",
            format!("redisHost\n    value: 127.0.0.1:{dead}"),
        ),
        (
            "pubsub.jetstream",
            format!("natsURL\n    value: nats://127.0.0.1:{dead}"),
        ),
        (
            "pubsub.rabbitmq",
            format!("connectionString\n    value: amqp://guest:guest@127.0.0.1:{dead}"),
        ),
        (
            "pubsub.mqtt3",
            format!("url\n    value: tcp://127.0.0.1:{dead}"),
        ),
    ] {
        let res = component_dir(
            dir.path(),
            &[(
                "lock.yaml",
                &format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: broker\nspec:\n  type: {ty}\n  initTimeout: 2s\n  metadata:\n  - name: {meta}\n"),
            )],
        );
        let out = run_with(dir.path(), &res, &[]).0.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{ty}: {err}");
        assert!(err.contains("broker") && err.contains(ty), "{ty}: {err}");
    }

    // An unknown version of a known type.
    let res = component_dir(
        dir.path(),
        &[(
            "lock.yaml",
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: lockstore\nspec:\n  type: state.in-memory\n  version: v2\n",
        )],
    );
    let out = run_with(dir.path(), &res, &[]).0.output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("v2"));
}

/// `spec.initTimeout` bounds a component's start: a Redis that accepts and
/// never answers fails the start after it, not after the default 5 s.
#[test]
fn init_timeout_bounds_component_start() {
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let res = component_dir(
        dir.path(),
        &[(
            "slow.yaml",
            &format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: slow\nspec:\n  type: state.redis\n  version: v1\n  initTimeout: 1s\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{port}\n  - name: readTimeout\n    value: 30s\n"),
        )],
    );
    let started = Instant::now();
    let out = run_with(dir.path(), &res, &[]).0.output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slow") && err.contains("initTimeout"), "{err}");
    // Informational bound, far from the 30 s read timeout.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// With `ignoreErrors: true` the failure is logged, listed in the metadata
/// API, and the sidecar serves the rest.
#[tokio::test]
async fn ignore_errors_keeps_the_sidecar_up() {
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(
        dir.path(),
        &[
            (
                "a.yaml",
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: conf\nspec:\n  type: configuration.redis\n  version: v1\n  ignoreErrors: true\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n",
            ),
            (
                "b.yaml",
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n",
            ),
        ],
    );
    let (cmd, http) = run_with(dir.path(), &res, &[]);
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    let md = get_json(
        &Client::new(),
        format!("http://127.0.0.1:{http}/v1.0/metadata"),
    )
    .await;
    let err = md["extended"]["componentError.conf"]
        .as_str()
        .unwrap_or_default();
    assert!(err.contains("configuration.redis"), "{md}");
    let names: Vec<&str> = md["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mem"], "{md}");
    assert!(sc.log().contains("ignoreErrors"), "{}", sc.log());
}

/// Component files as Dapr's docs print them: no `spec.version`, optional
/// fields left empty, names Kubernetes would refuse, `envRef`.
#[tokio::test]
async fn docs_component_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"redisPass": ""}"#).unwrap();
    let docs = [
        ("redis.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: Redis_Store\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword # Optional.\n    value:\n  - name: enableTLS\n    value: # Optional\n  - name: maxRetries\n    value: # Optional\n  - name: actorStateStore\n    value: \"false\"\n".to_string()),
        ("pg.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"host=localhost user=postgres password=example port=5432 connect_timeout=10 database=postgres\"\n  - name: timeout\n    value: \"20\"\n  - name: tableName\n    value: \"\"\n  - name: cleanupInterval\n    value: \"3600\"\n".to_string()),
        ("ps.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: redis-pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    envRef: SPAR_DOCS_REDIS_HOST\n  - name: redisPassword\n    value: \"\"\n  - name: consumerID\n    value: \"{appID}\"\n".to_string()),
        ("sec.yaml", format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: local-secret-store\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: {}\n  - name: nestedSeparator\n    value: \":\"\n", secrets.display())),
        ("env.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: envvar-secret-store\nspec:\n  type: secretstores.local.env\n  version: v1\n  metadata:\n".to_string()),
        ("mysql.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mysql\nspec:\n  type: state.mysql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"root:@tcp(127.0.0.1:3306)/?allowNativePasswords=true\"\n  - name: schemaName\n    value: \"dapr_docs\"\n  - name: tableName\n    value: \"state\"\n  - name: timeoutInSeconds\n    value: \"30\"\n".to_string()),
        ("sqlite.yaml", format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: sqlite\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: timeout\n    value: \"20s\"\n  - name: cleanupInterval\n    value: \"1h\"\n", dir.path().join("docs.db").display())),
        ("memory.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: inmem\nspec:\n  type: state.in-memory\n  version: v1\n  metadata: []\n".to_string()),
        ("jetstream.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: jetstream-pubsub\nspec:\n  type: pubsub.jetstream\n  version: v1\n  metadata:\n  - name: natsURL\n    value: \"nats://localhost:4222\"\n  - name: name\n    value: \"my-conn-name\"\n  - name: durableName\n    value: \"my-durable-subscription\"\n  - name: ackWait\n    value: 10s\n  - name: maxDeliver\n    value: 5\n  - name: maxAckPending\n    value: 5000\n  - name: memoryStorage\n    value: false\n  - name: deliverPolicy\n    value: all\n".to_string()),
        ("rabbitmq.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: rabbitmq-pubsub\nspec:\n  type: pubsub.rabbitmq\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"amqp://guest:guest@localhost:5672\"\n  - name: consumerID\n    value: channel1\n  - name: durable\n    value: false\n  - name: deletedWhenUnused\n    value: false\n  - name: autoAck\n    value: false\n  - name: deliveryMode\n    value: 0\n  - name: requeueInFailure\n    value: false\n  - name: prefetchCount\n    value: 0\n  - name: reconnectWait\n    value: 0\n  - name: concurrencyMode\n    value: parallel\n  - name: publisherConfirm\n    value: false\n  - name: enableDeadLetter\n    value: true\n  - name: maxLen\n    value: 3000\n  - name: maxLenBytes\n    value: 10485760\n  - name: exchangeKind\n    value: fanout\n  - name: saslExternal\n    value: false\n  - name: ttlInSeconds\n    value: 60\n  - name: heartBeat\n    value: 10s\n".to_string()),
        ("mqtt.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mqtt-pubsub\nspec:\n  type: pubsub.mqtt3\n  version: v1\n  metadata:\n    - name: url\n      value: \"tcp://localhost:1883\"\n    # Optional\n    - name: retain\n      value: \"false\"\n    - name: cleanSession\n      value: \"false\"\n    - name: qos\n      value: \"1\"\n    - name: consumerID\n      value: \"{appID}-{uuid}\"\n".to_string()),
    ];
    let docs: Vec<(&str, &str)> = docs.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let res = component_dir(dir.path(), &docs);
    let (mut cmd, http) = run_with(dir.path(), &res, &[]);
    cmd.env("SPAR_DOCS_REDIS_HOST", "localhost:6379");
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    let c = Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let md = get_json(&c, format!("{base}/v1.0/metadata")).await;
    assert_eq!(md["components"].as_array().unwrap().len(), 11, "{md}");
    let key = unique("docs");
    for store in ["Redis_Store", "pg", "mysql", "sqlite", "inmem"] {
        let r = c
            .post(format!("{base}/v1.0/state/{store}"))
            .json(&json!([{"key": key, "value": 1}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{store}");
        let r = c
            .delete(format!("{base}/v1.0/state/{store}/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{store}");
    }
}

/// `--allowed-origins`: preflights answered by the sidecar before the token
/// check, answers carrying the grant, for API routes and invocations alike.
#[tokio::test]
async fn cors_from_allowed_origins() {
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = app.local_addr().unwrap().port();
    tokio::spawn(async move {
        let router = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" }));
        axum::serve(app, router).await.unwrap();
    });
    let (mut cmd, http) = run_with(
        dir.path(),
        &res,
        &[
            "--allowed-origins",
            "https://app.test,https://*.example.com",
            "--app-port",
            &app_port.to_string(),
        ],
    );
    cmd.env("DAPR_API_TOKEN", "sekret");
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    let c = Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let pre = c
        .request(reqwest::Method::OPTIONS, format!("{base}/v1.0/state/mem"))
        .header("origin", "https://x.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, dapr-api-token",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::OK);
    let h = |r: &reqwest::Response, n: &str| {
        r.headers().get(n).map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        h(&pre, "access-control-allow-origin").as_deref(),
        Some("https://x.example.com")
    );
    assert_eq!(
        h(&pre, "access-control-allow-methods").as_deref(),
        Some("POST")
    );
    assert_eq!(
        h(&pre, "access-control-allow-headers").as_deref(),
        Some("content-type, dapr-api-token")
    );
    // An API call from an allowed origin.
    let r = c
        .get(format!("{base}/v1.0/metadata"))
        .header("origin", "https://app.test")
        .header("dapr-api-token", "sekret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    assert_eq!(h(&r, "vary").as_deref(), Some("Origin"));
    // An invocation of the app: the app's answer gets the grant too.
    let r = c
        .get(format!("{base}/v1.0/invoke/comp/method/hello"))
        .header("origin", "https://app.test")
        .header("dapr-api-token", "sekret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    assert_eq!(r.text().await.unwrap(), "hi");
    // Not an allowed origin: no grant.
    let r = c
        .get(format!("{base}/v1.0/metadata"))
        .header("origin", "https://evil.test")
        .header("dapr-api-token", "sekret")
        .send()
        .await
        .unwrap();
    assert!(h(&r, "access-control-allow-origin").is_none());
    // Without the flag, no CORS headers at all.
    let res2 = dir.path().join("res");
    let (cmd, http2) = run_with(dir.path(), &res2, &[]);
    let mut plain = Started::spawn(cmd, dir.path().join("plain.log"));
    plain.healthy(http2);
    let r = c
        .get(format!("http://127.0.0.1:{http2}/v1.0/metadata"))
        .header("origin", "https://app.test")
        .send()
        .await
        .unwrap();
    assert!(h(&r, "access-control-allow-origin").is_none() && h(&r, "vary").is_none());
}

/// `--unix-domain-socket DIR`: both APIs on daprd's socket names, no TCP.
#[tokio::test]
async fn unix_domain_sockets() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let sock = dir.path().join("sockets");
    std::fs::create_dir_all(&sock).unwrap();
    let (cmd, http) = run_with(
        dir.path(),
        &res,
        &["--unix-domain-socket", &sock.display().to_string()],
    );
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    let http_sock = sock.join("dapr-comp-http.socket");
    let grpc_sock = sock.join("dapr-comp-grpc.socket");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(http_sock.exists() && grpc_sock.exists()) {
        assert!(Instant::now() < deadline, "no sockets: {}", sc.log());
        assert!(sc.child.try_wait().unwrap().is_none(), "{}", sc.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // HTTP over the socket.
    let mut s = tokio::net::UnixStream::connect(&http_sock).await.unwrap();
    let body = r#"[{"key":"k","value":"over a socket"}]"#;
    s.write_all(
        format!("POST /v1.0/state/mem HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    // gRPC over the socket.
    let path = grpc_sock.clone();
    let channel = tonic::transport::Endpoint::from_static("http://uds")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let mut client = spar_proto::runtime::dapr_client::DaprClient::new(channel);
    let got = client
        .get_state(spar_proto::runtime::GetStateRequest {
            store_name: "mem".into(),
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.data, br#""over a socket""#);
    // No TCP listener on the HTTP port.
    assert_eq!(http_status(http, "GET", "/v1.0/healthz"), None);
    sc.signal(15);
    assert_eq!(sc.exit_code(Duration::from_secs(15)), Some(0));
    assert!(!http_sock.exists() && !grpc_sock.exists());
}

/// `--dapr-public-port`: health and metadata without the API token, nothing
/// else; the API port still wants the token.
#[tokio::test]
async fn public_port_serves_health_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let public = free_port();
    let (mut cmd, http) = run_with(
        dir.path(),
        &res,
        &[
            "--dapr-public-port",
            &public.to_string(),
            "--dapr-public-listen-address",
            "127.0.0.1",
        ],
    );
    cmd.env("DAPR_API_TOKEN", "sekret");
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    // Each listener comes up on its own thread.
    sc.healthy(public);
    let c = Client::new();
    let status = |url: String| {
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    let p = format!("http://127.0.0.1:{public}");
    assert_eq!(status(format!("{p}/v1.0/healthz")).await, 204);
    assert_eq!(status(format!("{p}/v1.0/healthz/outbound")).await, 204);
    assert_eq!(
        get_json(&c, format!("{p}/v1.0/metadata")).await["id"],
        "comp"
    );
    assert_eq!(status(format!("{p}/v1.0/state/mem/k")).await, 404);
    assert_eq!(status(format!("{p}/v1.0/invoke/comp/method/x")).await, 404);
    assert_eq!(
        status(format!("http://127.0.0.1:{http}/v1.0/metadata")).await,
        401
    );
}

/// `--dapr-block-shutdown-duration`: after SIGTERM the API keeps serving
/// for the duration, then the sidecar exits.
#[test]
fn block_shutdown_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let (cmd, http) = run_with(dir.path(), &res, &["--dapr-block-shutdown-duration", "3s"]);
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    let t = Instant::now();
    sc.signal(15);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        http_status(http, "GET", "/v1.0/metadata"),
        Some(200),
        "{}",
        sc.log()
    );
    assert_eq!(
        sc.exit_code(Duration::from_secs(20)),
        Some(0),
        "{}",
        sc.log()
    );
    assert!(t.elapsed() >= Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        sc.log().contains("Blocking graceful shutdown"),
        "{}",
        sc.log()
    );
}

/// `--disable-init-endpoints subscribe`: the app is never asked for its
/// subscriptions.
#[tokio::test]
async fn disabled_init_endpoints_are_not_called() {
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = app.local_addr().unwrap().port();
    let n = asked.clone();
    tokio::spawn(async move {
        let router = axum::Router::new().route(
            "/dapr/subscribe",
            axum::routing::get(move || {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { axum::Json(json!([{"pubsubname": "ps", "topic": "t", "route": "/t"}])) }
            }),
        );
        axum::serve(app, router).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(
        dir.path(),
        &[("ps.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.in-memory\n")],
    );
    let (cmd, http) = run_with(
        dir.path(),
        &res,
        &[
            "--app-port",
            &app_port.to_string(),
            "--disable-init-endpoints",
            "subscribe",
        ],
    );
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let md = get_json(
        &Client::new(),
        format!("http://127.0.0.1:{http}/v1.0/metadata"),
    )
    .await;
    assert_eq!(md["subscriptions"], json!([]), "{md}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// `--log-file`, `--metrics-listen-address`, and `--wait` for a sidecar
/// that is up.
#[test]
fn log_file_metrics_address_and_wait() {
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let logf = dir.path().join("daprd.log");
    let metrics = free_port();
    let (cmd, http) = run_with(
        dir.path(),
        &res,
        &[
            "--log-file",
            &logf.display().to_string(),
            "--metrics-port",
            &metrics.to_string(),
            "--metrics-listen-address",
            "127.0.0.1",
        ],
    );
    let mut sc = Started::spawn(cmd, dir.path().join("stderr.log"));
    sc.healthy(http);
    let wait = Command::new(spar_bin())
        .args(["run", "--wait", "--dapr-http-port", &http.to_string()])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(wait.status.success());
    assert!(String::from_utf8_lossy(&wait.stdout).contains("outbound ready!"));
    assert!(std::fs::read_to_string(&logf)
        .unwrap()
        .contains("spar is ready"));
    assert_eq!(eventually_status(metrics, "/metrics"), Some(200));
}

/// Several `--config` files merge in order (daprd's rule), with `$VAR`s.
#[tokio::test]
async fn config_files_merge() {
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: a\nspec:\n  features:\n  - name: One\n    enabled: true\n").unwrap();
    std::fs::write(
        &b,
        "spec:\n  features:\n  - name: ${SPAR_FEATURE}\n    enabled: true\n",
    )
    .unwrap();
    let (mut cmd, http) = run_with(
        dir.path(),
        &res,
        &[
            "--config",
            &a.display().to_string(),
            "--config",
            &b.display().to_string(),
        ],
    );
    cmd.env("SPAR_FEATURE", "Two");
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    let md = get_json(
        &Client::new(),
        format!("http://127.0.0.1:{http}/v1.0/metadata"),
    )
    .await;
    assert_eq!(md["enabledFeatures"], json!(["Two"]), "{md}");
}

/// The HTTP API answers HTTP/2 with prior knowledge (h2c) too, as daprd's
/// does, API routes and invocations alike.
#[tokio::test]
async fn http_api_speaks_h2c() {
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = app.local_addr().unwrap().port();
    tokio::spawn(async move {
        let router = axum::Router::new().route(
            "/hello",
            axum::routing::post(|b: String| async move { format!("hi {b}") }),
        );
        axum::serve(app, router).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let (cmd, http) = run_with(dir.path(), &res, &["--app-port", &app_port.to_string()]);
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    let c = Client::builder().http2_prior_knowledge().build().unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let r = c
        .post(format!("{base}/v1.0/state/mem"))
        .json(&json!([{"key": "k", "value": "over h2c"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status()),
        (reqwest::Version::HTTP_2, StatusCode::NO_CONTENT)
    );
    assert_eq!(
        get_json(&c, format!("{base}/v1.0/state/mem/k")).await,
        json!("over h2c")
    );
    let r = c
        .post(format!("{base}/v1.0/invoke/comp/method/hello"))
        .body("there")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "hi there");
}

/// `--read-buffer-size`: a request head longer than it (plus the 4 KiB Go's
/// server tolerates, as daprd) is answered 431 and the connection closed;
/// one within it is served.
#[test]
fn read_buffer_size_bounds_request_heads() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let res = component_dir(dir.path(), &[("m.yaml", MEM)]);
    let (cmd, http) = run_with(dir.path(), &res, &["--read-buffer-size", "2Ki"]);
    let mut sc = Started::spawn(cmd, dir.path().join("spar.log"));
    sc.healthy(http);
    let ask = |header_bytes: usize| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!(
            "GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(header_bytes)
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let small = ask(5000);
    assert!(small.starts_with("HTTP/1.1 200"), "{small}");
    let big = ask(7000);
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    assert!(
        big.contains("ERR_HEADERS_TOO_LARGE")
            && big.to_ascii_lowercase().contains("connection: close"),
        "{big}"
    );
}
