//! The command line: exit codes, `validate`, the `daprd` name, the embedded default.

use std::process::Command;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{free_port, get_json, run_command, spar_bin, unique, Options, Sidecar};

fn run_app(cmd: &[&str]) -> std::process::Output {
    let data = tempfile::tempdir().unwrap();
    let (mut c, _) = run_command(data.path(), "exit-test");
    c.arg("--").args(cmd).output().unwrap()
}

#[test]
fn run_exits_with_the_apps_code() {
    assert_eq!(run_app(&["sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(run_app(&["true"]).status.code(), Some(0));
}

#[test]
fn app_sees_the_sidecar_ports() {
    let out = run_app(&["sh", "-c", "test -n \"$DAPR_HTTP_PORT\" && test -n \"$DAPR_GRPC_PORT\" && test \"$APP_ID\" = exit-test"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn launch_failure_is_reported() {
    let out = run_app(&["/definitely/not/a/program"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot launch"));
}

#[test]
fn validate_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: good\nspec:\n  type: state.in-memory\n  version: v1\n",
    )
    .unwrap();
    let ok = Command::new(spar_bin())
        .args(["validate", "--resources-path"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bad\nspec:\n  version: v1\n",
    )
    .unwrap();
    let out = Command::new(spar_bin())
        .args(["validate", "--resources-path"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yaml"), "{err}");
    assert!(err.contains("spec.type"), "{err}");
    assert!(err.contains("bad"), "{err}");
}

/// `spar validate` knows the component types and versions start-up
/// builds, and the middleware the pipeline names.
#[test]
fn validate_checks_types_versions_and_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |extra: &[&str]| {
        let out = Command::new(spar_bin())
            .args(["validate", "--resources-path"])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("a.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: typo\nspec:\n  type: state.typo\n  version: v1\n");
    let (code, err) = validate(&[]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("a.yaml")
            && err.contains("Component/typo")
            && err.contains("state.typo")
            && err.contains("state.redis"),
        "{err}"
    );
    write("a.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: v2\nspec:\n  type: state.redis\n  version: v2\n");
    let (code, err) = validate(&[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("v2"), "{err}");
    // Ignored failures are warnings.
    write("a.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: lock\nspec:\n  type: lock.nosuch\n  version: v1\n  ignoreErrors: true\n");
    let (code, err) = validate(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning") && err.contains("lock.nosuch"),
        "{err}"
    );
    // Middleware: unknown types, and a pipeline naming no component.
    write("a.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mw\nspec:\n  type: middleware.http.nosuch\n  version: v1\n");
    let (code, err) = validate(&[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("middleware.http.nosuch"), "{err}");
    write("a.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: rl\nspec:\n  type: middleware.http.ratelimit\n  version: v1\n  metadata:\n  - name: maxRequestsPerSecond\n    value: 10\n");
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  httpPipeline:\n    handlers:\n    - name: other\n      type: middleware.http.ratelimit\n").unwrap();
    let (code, err) = validate(&["--config", &cfg.path().display().to_string()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("other"), "{err}");
}

#[test]
fn daprd_name_behaves_as_run() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("daprd");
    std::os::unix::fs::symlink(spar_bin(), &link).unwrap();
    let out = Command::new(&link).arg("--version").output().unwrap();
    assert!(out.status.success());
    let port = free_port();
    let out = Command::new(&link)
        .args(["--app-id", "d", "--dapr-listen-addresses", "127.0.0.1"])
        .args(["--dapr-http-port", &port.to_string()])
        .args(["--dapr-grpc-port", &free_port().to_string()])
        .args(["--metrics-port", &free_port().to_string()])
        .args(["--data-dir", &dir.path().display().to_string()])
        .args(["--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn embedded_default_store_needs_no_yaml() {
    let sc = Sidecar::start(Options {
        no_resources: true,
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());
    let key = unique("k");
    save(&c, &base, &key, json!("first")).await;
    let v: Value = get_json(&c, format!("{base}/v1.0/state/statestore/{key}")).await;
    assert_eq!(v, json!("first"));
    let md: Value = get_json(&c, format!("{base}/v1.0/metadata")).await;
    assert_eq!(md["components"][0]["type"], "state.sqlite");
    assert!(sc.dir.path().join("data").join("spar-state.db").exists());
    // Informational: how fast the sidecar became healthy (never asserted).
    eprintln!("start → healthz 204: {:?}", sc.ready_after);
    assert!(sc.ready_after < Duration::from_secs(20));
}

#[test]
fn port_clash_fails_fast_with_a_clear_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let out = Command::new(spar_bin())
        .args(["run", "--dapr-listen-addresses", "127.0.0.1"])
        .args(["--dapr-http-port", &port.to_string()])
        .args(["--dapr-grpc-port", &free_port().to_string()])
        .args(["--metrics-port", &free_port().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn logs_as_json() {
    let data = tempfile::tempdir().unwrap();
    let (mut c, _) = run_command(data.path(), "j");
    let out = c.args(["--log-as-json", "--", "true"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.get("level").is_some(), "{l}");
    }
}

#[tokio::test]
async fn http_pipeline_middleware_from_configuration() {
    let sc = Sidecar::start(Options {
        resources: vec![
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: limiter\nspec:\n  type: middleware.http.ratelimit\n  version: v1\n  metadata:\n  - name: maxRequestsPerSecond\n    value: 2\n".into(),
        ],
        config: Some(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: pipeline\nspec:\n  httpPipeline:\n    handlers:\n    - name: limiter\n      type: middleware.http.ratelimit\n".into(),
        ),
        ..Default::default()
    });
    let c = Client::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            c.get(format!("{}/v1.0/metadata", sc.http()))
                .send()
                .await
                .unwrap()
                .status(),
        );
    }
    assert!(statuses.contains(&StatusCode::OK));
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[test]
fn sigterm_is_forwarded_to_the_app_and_its_code_returned() {
    let data = tempfile::tempdir().unwrap();
    let (mut c, http) = run_command(data.path(), "sig");
    let mut child = c
        .args([
            "--",
            "sh",
            "-c",
            "trap 'exit 5' TERM; while true; do sleep 0.05; done",
        ])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while spar_tests::http_status(http, "GET", "/v1.0/healthz") != Some(204) {
        assert!(std::time::Instant::now() < deadline, "not healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The app's shell must have installed its trap before we signal.
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(5));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "spar did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An idle sidecar must not wake up on a clock: pingora's "fast timeout"
/// thread ticks every 10 ms for the life of the process once anything
/// starts it, so spar hands pingora's timeouts of a second or more (all it
/// sets by default) to tokio's timer instead (`proxy/src/run.rs`). Checked
/// after start-up and after calls through the API, the embedded store and
/// the invocation path.
#[tokio::test]
async fn no_periodic_clock_thread() {
    let sc = Sidecar::start(Options {
        no_resources: true,
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());
    save(&c, &base, &unique("idle"), json!(1)).await;
    let _: Value = get_json(&c, format!("{base}/v1.0/metadata")).await;
    // An invocation of this sidecar's own app id, which has no app: the
    // invocation path runs and answers with an error.
    let r = c
        .get(format!("{base}/v1.0/invoke/{}/method/x", sc.app_id))
        .send()
        .await
        .unwrap();
    assert!(!r.status().is_success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", sc.child.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    assert!(!names.is_empty());
    assert!(
        !names.iter().any(|n| n == "Timer thread"),
        "threads: {names:?}"
    );
}

/// Saves one key in the embedded default store (`statestore`).
async fn save(c: &Client, base: &str, key: &str, value: Value) {
    let r = c
        .post(format!("{base}/v1.0/state/statestore"))
        .json(&json!([{"key": key, "value": value}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
