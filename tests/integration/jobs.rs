//! The Jobs API end to end with real processes: `spar scheduler` (one node,
//! then three), a sidecar with `--scheduler-host-address`, and an HTTP app
//! counting `POST /job/{name}`. Rates are asserted in generous windows;
//! duplicates after a fail-over are counted and printed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{unique, Options, SchedulerCluster, Sidecar};

/// What the app received: per job name, the bodies in arrival order.
type Deliveries = HashMap<String, Vec<(Instant, Vec<u8>)>>;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Deliveries>>);

impl Seen {
    fn count(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).map_or(0, Vec::len)
    }
    fn times(&self, name: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map(|v| v.iter().map(|(t, _)| *t).collect())
            .unwrap_or_default()
    }
    fn bodies(&self, name: &str) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map(|v| v.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default()
    }
}

/// An HTTP app: 200 for every job, 500 for jobs named `fail-…`.
async fn job_app() -> (u16, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/job/{name}",
            axum::routing::post(
                |State(s): State<Seen>, Path(name): Path<String>, body: axum::body::Bytes| async move {
                    s.0.lock()
                        .unwrap()
                        .entry(name.clone())
                        .or_default()
                        .push((Instant::now(), body.to_vec()));
                    if name.starts_with("fail-") {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, seen)
}

fn sidecar(app_port: u16, schedulers: &str) -> Sidecar {
    sidecar_of(&unique("jobs"), app_port, schedulers)
}

fn sidecar_of(app_id: &str, app_port: u16, schedulers: &str) -> Sidecar {
    Sidecar::start(Options {
        app_id: app_id.to_string(),
        extra_args: vec![
            "--app-port".into(),
            app_port.to_string(),
            "--scheduler-host-address".into(),
            schedulers.to_string(),
        ],
        ..Default::default()
    })
}

async fn schedule(c: &Client, sc: &Sidecar, name: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(format!("{}/v1.0-alpha1/jobs/{name}", sc.http()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &Client, sc: &Sidecar, name: &str) -> (u16, Value) {
    let r = c
        .get(format!("{}/v1.0-alpha1/jobs/{name}", sc.http()))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until `f` holds, up to `limit`.
async fn until(limit: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_every_second_one_shot_retries_and_bad_input() {
    let cluster = SchedulerCluster::start(1);
    let (port, seen) = job_app().await;
    let sc = sidecar(port, &cluster.host_addresses());
    let c = Client::new();

    // @every 1s fires at that rate.
    let (s, b) = schedule(
        &c,
        &sc,
        "tick",
        json!({"schedule": "@every 1s", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(s, 204, "{b}");
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let n = seen.count("tick");
    assert!((3..=7).contains(&n), "@every 1s fired {n} times in 5.5 s");
    assert_eq!(seen.bodies("tick")[0], br#"{"n":1}"#);
    // How far apart the ticks arrived: 1 s each, give or take.
    let t = seen.times("tick");
    let off: Vec<i64> = t
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as i64 - 1000)
        .collect();
    println!("@every 1s: intervals off by {off:?} ms");
    assert!(off.iter().all(|o| o.abs() < 500), "{off:?}");
    let (s, job) = get(&c, &sc, "tick").await;
    assert_eq!(s, 200, "{job}");
    assert_eq!(job["name"], "tick");
    assert_eq!(job["schedule"], "@every 1s");
    assert_eq!(job["data"]["value"], json!({"n": 1}));

    // A one-shot job fires once, then is gone.
    let (s, b) = schedule(&c, &sc, "once", json!({"dueTime": "1s", "data": "x"})).await;
    assert_eq!(s, 204, "{b}");
    assert!(until(Duration::from_secs(5), || seen.count("once") == 1).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(seen.count("once"), 1);
    assert_eq!(seen.bodies("once")[0], br#""x""#);
    let (s, e) = get(&c, &sc, "once").await;
    assert_eq!(s, 500, "{e}");
    assert_eq!(e["errorCode"], "DAPR_SCHEDULER_GET_JOB");

    // A failing app gets the retries its policy allows: 1 + 2.
    let (s, b) = schedule(
        &c,
        &sc,
        "fail-x",
        json!({"dueTime": "0s", "failurePolicy": {"constant": {"interval": "0.3s", "maxRetries": 2}}}),
    )
    .await;
    assert_eq!(s, 204, "{b}");
    assert!(
        until(Duration::from_secs(5), || seen.count("fail-x") == 3).await,
        "{}",
        seen.count("fail-x")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.count("fail-x"), 3);
    // `drop`: once.
    let (s, _) = schedule(
        &c,
        &sc,
        "fail-drop",
        json!({"dueTime": "0s", "failurePolicy": {"drop": {}}}),
    )
    .await;
    assert_eq!(s, 204);
    assert!(until(Duration::from_secs(5), || seen.count("fail-drop") == 1).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.count("fail-drop"), 1);

    // An existing name without overwrite: 409; with it: replaced.
    let (s, e) = schedule(&c, &sc, "tick", json!({"schedule": "@every 1s"})).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["errorCode"], "DAPR_SCHEDULER_SCHEDULE_JOB");
    let (s, _) = schedule(
        &c,
        &sc,
        "tick",
        json!({"schedule": "@every 2s", "overwrite": true}),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(get(&c, &sc, "tick").await.1["schedule"], "@every 2s");

    // Bad input: a clear error, nothing stored.
    for (name, body, code) in [
        (
            "bad-cron",
            json!({"schedule": "not a cron"}),
            "DAPR_SCHEDULER_SCHEDULE_JOB",
        ),
        (
            "bad-cron5",
            json!({"schedule": "* * * * *"}),
            "DAPR_SCHEDULER_SCHEDULE_JOB",
        ),
        (
            "bad-due",
            json!({"dueTime": "tomorrow"}),
            "DAPR_SCHEDULER_SCHEDULE_JOB",
        ),
        (
            "bad-repeats",
            json!({"schedule": "@every 1s", "repeats": -1}),
            "ERR_MALFORMED_REQUEST",
        ),
        ("bad-empty", json!({}), "DAPR_SCHEDULER_SCHEDULE_EMPTY"),
        (
            "a..b",
            json!({"schedule": "@every 1s"}),
            "DAPR_SCHEDULER_SCHEDULE_JOB",
        ),
        (
            "a%2Fb",
            json!({"schedule": "@every 1s"}),
            "DAPR_SCHEDULER_SCHEDULE_JOB",
        ),
        (
            "bad-name-in-body",
            json!({"name": "x", "schedule": "@every 1s"}),
            "DAPR_SCHEDULER_JOB_NAME",
        ),
    ] {
        let (s, e) = schedule(&c, &sc, name, body).await;
        assert_eq!(s, 400, "{name}: {e}");
        assert_eq!(e["errorCode"], code, "{name}: {e}");
        let (s, _) = get(&c, &sc, name).await;
        assert_eq!(s, 500, "{name} was stored");
    }
    // Oversize data: 413 from the sidecar (which may close the connection
    // before reading the rest of the body).
    let big = "x".repeat(5 << 20);
    let r = c
        .post(format!("{}/v1.0-alpha1/jobs/big", sc.http()))
        .json(&json!({"dueTime": "1h", "data": big}))
        .send()
        .await;
    if let Ok(r) = r {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert_eq!(
        get(&c, &sc, "big").await.0,
        500,
        "the oversize job was stored"
    );

    // gRPC, with the official Rust crate's client (the Alpha1 names too,
    // which SDKs fall back to).
    grpc_jobs(&sc).await;

    // Delete: the job stops.
    let r = c
        .delete(format!("{}/v1.0-alpha1/jobs/tick", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = seen.count("tick");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(seen.count("tick"), n, "a deleted job fired");
    delete_all(&sc).await;
}

// The Alpha1 RPCs (deprecated in the crate) are what older SDKs call.
#[allow(deprecated)]
async fn delete_all(sc: &Sidecar) {
    use dapr::dapr::proto::runtime::v1 as pb;
    let mut g = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    g.delete_jobs_by_prefix_alpha1(pb::DeleteJobsByPrefixRequestAlpha1 { name_prefix: None })
        .await
        .unwrap();
    let left = g
        .list_jobs(pb::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(left.is_empty(), "{left:?}");
}

// The Alpha1 RPCs (deprecated in the crate) are what older SDKs call.
#[allow(deprecated)]
async fn grpc_jobs(sc: &Sidecar) {
    use dapr::dapr::proto::runtime::v1 as pb;
    let mut g = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    g.schedule_job(pb::ScheduleJobRequest {
        job: Some(pb::Job {
            name: "grpc-job".into(),
            due_time: Some("1h".into()),
            data: Some(prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
                value: vec![10, 2, b'h', b'i'],
            }),
            ..Default::default()
        }),
        overwrite: false,
    })
    .await
    .unwrap();
    let got = g
        .get_job_alpha1(pb::GetJobRequest {
            name: "grpc-job".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(got.due_time.as_deref(), Some("1h"));
    assert_eq!(got.data.unwrap().value, vec![10, 2, b'h', b'i']);
    let e = g
        .schedule_job_alpha1(pb::ScheduleJobRequest {
            job: Some(pb::Job {
                name: "grpc-bad".into(),
                schedule: Some("61 * * * * *".into()),
                ..Default::default()
            }),
            overwrite: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let listed = g
        .list_jobs_alpha1(pb::ListJobsRequestAlpha1 {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let names: Vec<_> = listed.iter().map(|j| j.name.as_str()).collect();
    assert!(
        names.contains(&"grpc-job") && names.contains(&"tick"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_scheduler_kill9() {
    let mut cluster = SchedulerCluster::start(1);
    let (port, seen) = job_app().await;
    let sc = sidecar(port, &cluster.host_addresses());
    let c = Client::new();
    let (s, b) = schedule(&c, &sc, "durable", json!({"schedule": "@every 1s"})).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = schedule(&c, &sc, "later", json!({"dueTime": "6s"})).await;
    assert_eq!(s, 204, "{b}");
    assert!(until(Duration::from_secs(5), || seen.count("durable") >= 2).await);

    cluster.nodes[0].kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes[0].restart();
    let before = seen.count("durable");
    // The sidecar reconnects on its own; the jobs were on disk.
    assert!(
        until(Duration::from_secs(10), || seen.count("durable")
            >= before + 2)
        .await,
        "no ticks after the restart: {}",
        cluster.logs()
    );
    assert!(until(Duration::from_secs(10), || seen.count("later") == 1).await);
    let (s, job) = get(&c, &sc, "durable").await;
    assert_eq!(s, 200, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_three_nodes_leader_kill9() {
    let mut cluster = SchedulerCluster::start(3);
    let leader = cluster.leader(Duration::from_secs(10)).expect("no leader");
    let (port, seen) = job_app().await;
    let sc = sidecar(port, &cluster.host_addresses());
    let c = Client::new();
    // A stream of due jobs across the fail-over: one-shots every 250 ms
    // from 2 s to 8 s, and one @every 1s.
    let mut names = Vec::new();
    for i in 0..24 {
        let name = format!("shot-{i}");
        let due = format!("{}ms", 2000 + i * 250);
        let (s, b) = schedule(&c, &sc, &name, json!({"dueTime": due})).await;
        assert_eq!(s, 204, "{b}");
        names.push(name);
    }
    let (s, _) = schedule(&c, &sc, "beat", json!({"schedule": "@every 1s"})).await;
    assert_eq!(s, 204);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let killed_at = Instant::now();
    cluster.nodes[leader].kill9();
    let new_leader = cluster.leader(Duration::from_secs(10));
    let took = killed_at.elapsed();
    let new_leader = new_leader.unwrap_or_else(|| panic!("no new leader: {}", cluster.logs()));
    assert_ne!(new_leader, leader);
    assert!(took < Duration::from_secs(3), "new leader after {took:?}");

    // Everything due fires, at least once.
    let all = || names.iter().all(|n| seen.count(n) >= 1);
    assert!(
        until(Duration::from_secs(15), all).await,
        "lost: {:?}\n{}",
        names
            .iter()
            .filter(|n| seen.count(n) == 0)
            .collect::<Vec<_>>(),
        cluster.logs()
    );
    let beats = seen.count("beat");
    assert!(until(Duration::from_secs(5), || seen.count("beat") >= beats + 2).await);
    let dups: usize = names.iter().map(|n| seen.count(n) - 1).sum();
    println!(
        "fail-over: new leader (node {}) in {took:?}; {} one-shot jobs, {dups} duplicate deliveries",
        cluster.nodes[new_leader].id,
        names.len()
    );
    assert!(dups <= names.len(), "{dups} duplicates");
    // Writes go on through any node.
    let (s, b) = schedule(&c, &sc, "after", json!({"dueTime": "0s"})).await;
    assert_eq!(s, 204, "{b}");
    assert!(until(Duration::from_secs(5), || seen.count("after") == 1).await);
}

fn signal(node: &spar_tests::SchedulerNode, sig: &str) {
    let pid = node.child.as_ref().expect("running").id().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A leader stopped with SIGSTOP (a node cut off) loses its lease: another
/// is elected and fires, and the old one, resumed, fires no stale ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_stopped_leader_does_not_fire() {
    let cluster = SchedulerCluster::start(3);
    let leader = cluster.leader(Duration::from_secs(10)).expect("no leader");
    let (port, seen) = job_app().await;
    let sc = sidecar(port, &cluster.host_addresses());
    let c = Client::new();
    let (s, _) = schedule(&c, &sc, "beat", json!({"schedule": "@every 1s"})).await;
    assert_eq!(s, 204);
    let mut names = Vec::new();
    for i in 0..8 {
        let name = format!("paused-{i}");
        let (s, _) = schedule(
            &c,
            &sc,
            &name,
            json!({"dueTime": format!("{}ms", 2500 + i * 250)}),
        )
        .await;
        assert_eq!(s, 204);
        names.push(name);
    }
    assert!(until(Duration::from_secs(5), || seen.count("beat") >= 1).await);
    signal(&cluster.nodes[leader], "-STOP");
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let other = cluster
        .nodes
        .iter()
        .enumerate()
        .find(|(i, n)| *i != leader && n.leads())
        .map(|(i, _)| i);
    assert!(
        other.is_some(),
        "no new leader while node {} was stopped: {}",
        leader + 1,
        cluster.logs()
    );
    // The new leader fired what came due meanwhile.
    assert!(
        until(Duration::from_secs(5), || names
            .iter()
            .all(|n| seen.count(n) >= 1))
        .await,
        "{}",
        cluster.logs()
    );
    let beats = seen.count("beat");
    let paused = stopped_at.elapsed();
    signal(&cluster.nodes[leader], "-CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dups: usize = names.iter().map(|n| seen.count(n) - 1).sum();
    let beats_after = seen.count("beat") - beats;
    println!(
        "SIGSTOP of the leader for {paused:?}: {dups} duplicate one-shot deliveries, {beats_after} beats in the 3 s after SIGCONT"
    );
    assert_eq!(dups, 0, "the resumed old leader fired stale ticks");
    assert!(beats_after <= 5, "{beats_after} beats in 3 s");
}

/// Jobs live in the scheduler: a sidecar restarted (same app id) gets the
/// ticks that came due while it was down, and the schedule goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_restart_loses_nothing() {
    let cluster = SchedulerCluster::start(1);
    let (port, seen) = job_app().await;
    let app_id = unique("jobs");
    let sc = sidecar_of(&app_id, port, &cluster.host_addresses());
    let c = Client::new();
    let (s, _) = schedule(&c, &sc, "steady", json!({"schedule": "@every 1s"})).await;
    assert_eq!(s, 204);
    let (s, _) = schedule(&c, &sc, "while-down", json!({"dueTime": "3s"})).await;
    assert_eq!(s, 204);
    assert!(until(Duration::from_secs(5), || seen.count("steady") >= 1).await);
    drop(sc);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(seen.count("while-down"), 0, "delivered with no sidecar");
    let steady = seen.count("steady");
    let sc = sidecar_of(&app_id, port, &cluster.host_addresses());
    assert!(until(Duration::from_secs(5), || seen.count("while-down") == 1).await);
    assert!(
        until(Duration::from_secs(5), || seen.count("steady")
            >= steady + 2)
        .await
    );
    assert_eq!(get(&c, &sc, "steady").await.0, 200);
}

/// Figures, not a gate (`--run-ignored only`): schedule rate through the
/// sidecar, and trigger lateness of 2,000 one-shot jobs due over two
/// seconds (1,000 due jobs a second), debug build, one scheduler node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn job_lateness_figures() {
    use std::time::SystemTime;
    let cluster = SchedulerCluster::start(1);
    let (port, seen) = job_app().await;
    let sc = sidecar(port, &cluster.host_addresses());
    let c = Client::new();
    let n = 2000usize;
    let start = SystemTime::now() + Duration::from_secs(15);
    let due = |i: usize| start + Duration::from_millis((i as u64 * 2000) / n as u64);
    let rfc = |t: SystemTime| {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        chrono_like(d)
    };
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (c, url, body) = (
            c.clone(),
            format!("{}/v1.0-alpha1/jobs/late-{i}", sc.http()),
            json!({"dueTime": rfc(due(i))}),
        );
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            drop(permit);
            r.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    let took = t0.elapsed();
    println!(
        "scheduled {n} jobs in {took:?}: {:.0}/s",
        n as f64 / took.as_secs_f64()
    );
    assert!(
        SystemTime::now() < start,
        "scheduling took longer than the lead time"
    );
    let all = || (0..n).all(|i| seen.count(&format!("late-{i}")) >= 1);
    assert!(until(Duration::from_secs(40), all).await);
    // Arrival instants against due times, on one clock: Instant ↔ SystemTime
    // offset taken once.
    let (now_i, now_s) = (Instant::now(), SystemTime::now());
    let mut late: Vec<i64> = (0..n)
        .map(|i| {
            let at = seen.times(&format!("late-{i}"))[0];
            let at_sys = now_s - (now_i - at);
            match at_sys.duration_since(due(i)) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            }
        })
        .collect();
    late.sort();
    let p = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    println!(
        "lateness of {n} jobs due at 1000/s: p50 {} ms, p99 {} ms, max {} ms, min {} ms",
        p(0.5),
        p(0.99),
        late[late.len() - 1],
        late[0]
    );
}

/// RFC 3339 (UTC, milliseconds) without a date crate in the tests.
fn chrono_like(d: Duration) -> String {
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// No scheduler answering: daprd's 30 s budget, then 503 (schedule) and
/// 500 (get) with daprd's codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_scheduler_unreachable() {
    let (port, _) = job_app().await;
    let closed = spar_tests::free_port();
    let sc = sidecar(port, &format!("127.0.0.1:{closed}"));
    let c = Client::new();
    // Both at once: each waits out the budget.
    let ((s, e), (gs, ge)) = tokio::join!(
        schedule(&c, &sc, "nowhere", json!({"dueTime": "1s"})),
        get(&c, &sc, "nowhere")
    );
    assert_eq!(s, 503, "{e}");
    assert_eq!(e["errorCode"], "DAPR_SCHEDULER_SCHEDULE_JOB");
    assert_eq!(gs, 500, "{ge}");
    assert_eq!(ge["errorCode"], "DAPR_SCHEDULER_GET_JOB");
}

/// Every node of a three-node cluster killed with SIGKILL and started
/// again: the cluster elects a leader from what was on disk and the jobs
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_three_nodes_all_restarted() {
    let mut cluster = SchedulerCluster::start(3);
    cluster.leader(Duration::from_secs(10)).expect("no leader");
    let (port, seen) = job_app().await;
    let sc = sidecar(port, &cluster.host_addresses());
    let c = Client::new();
    let (s, b) = schedule(&c, &sc, "kept", json!({"schedule": "@every 1s"})).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = schedule(&c, &sc, "kept-once", json!({"dueTime": "8s"})).await;
    assert_eq!(s, 204, "{b}");
    assert!(until(Duration::from_secs(5), || seen.count("kept") >= 1).await);
    for n in &mut cluster.nodes {
        n.kill9();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in &mut cluster.nodes {
        n.restart();
    }
    cluster
        .leader(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no leader after restarting all: {}", cluster.logs()));
    let kept = seen.count("kept");
    assert!(
        until(Duration::from_secs(10), || seen.count("kept") >= kept + 2).await,
        "{}",
        cluster.logs()
    );
    assert!(until(Duration::from_secs(10), || seen.count("kept-once") == 1).await);
    assert_eq!(get(&c, &sc, "kept").await.0, 200);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Figures, not a gate (`--run-ignored only`): writes per second straight
/// to one scheduler node (Dapr's Scheduler gRPC service, 64 in flight) and
/// the node's resident memory per stored job (no data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scheduler_memory_figures() {
    use spar_proto::scheduler as sp;
    let mut cluster = SchedulerCluster::start(1);
    let node = &cluster.nodes[0];
    let pid = node.child.as_ref().unwrap().id();
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", node.address()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let before = rss_kib(pid);
    let n = 10_000usize;
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut c = sp::scheduler_client::SchedulerClient::new(ch.clone());
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let r = c
                .schedule_job(sp::ScheduleJobRequest {
                    name: format!("mem-{i:06}"),
                    job: Some(sp::Job {
                        due_time: Some("24h".into()),
                        ..Default::default()
                    }),
                    metadata: Some(sp::JobMetadata {
                        app_id: "memapp".into(),
                        namespace: "default".into(),
                        target: Some(sp::JobTargetMetadata {
                            r#type: Some(sp::job_target_metadata::Type::Job(sp::TargetJob {})),
                        }),
                        concurrency_key: None,
                    }),
                    overwrite: false,
                })
                .await;
            drop(permit);
            r.is_ok()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    // Started again: the jobs are loaded from disk, and nothing else of
    // the writes' transient memory is resident.
    cluster.nodes[0].restart();
    let pid = cluster.nodes[0].child.as_ref().unwrap().id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reloaded = rss_kib(pid);
    println!(
        "{n} jobs written in {took:?} ({:.0}/s); scheduler RSS {before} KiB → {after} KiB after the writes, {reloaded} KiB restarted with them: {} bytes per job",
        n as f64 / took.as_secs_f64(),
        (reloaded.saturating_sub(before)) * 1024 / n as u64
    );
}

/// mTLS (issue 23): `spar sentry`, a three-node `spar scheduler
/// --tls-enabled` (Raft and forwarding between nodes over mTLS too) and a
/// sidecar with `--enable-mtls`: jobs are scheduled and fire into the app.
/// A client without a certificate from the trust anchors is refused by the
/// scheduler: plain gRPC, and a sidecar whose certificate comes from
/// another sentry (it trusts both CAs, so only the scheduler can refuse).
/// Certificates renew (6 s) without interrupting jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_mtls() {
    // Six-second certificates: the scheduler's and the sidecar's renew
    // during the test.
    let sentry = spar_tests::Sentry::start(Some(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\nspec:\n  mtls:\n    enabled: true\n    workloadCertTTL: 6s\n    allowedClockSkew: 1m\n",
    ));
    let other = spar_tests::Sentry::start(None);
    let (args, env) = sentry.scheduler_args();
    let cluster = SchedulerCluster::start_with(3, &args, &env);
    assert!(
        cluster.leader(Duration::from_secs(20)).is_some(),
        "{}",
        cluster.logs()
    );
    let (port, seen) = job_app().await;
    let (mut sc_args, sc_env) = sentry.sidecar_args();
    sc_args.extend([
        "--app-port".to_string(),
        port.to_string(),
        "--scheduler-host-address".into(),
        cluster.host_addresses(),
    ]);
    let sc = Sidecar::start(Options {
        app_id: unique("jobs-mtls"),
        extra_args: sc_args,
        env: sc_env,
        ..Default::default()
    });
    let c = Client::new();
    let (s, e) = schedule(&c, &sc, "secure", json!({"dueTime": "1s", "data": "x"})).await;
    assert_eq!(s, 204, "{e}\n{}", cluster.logs());
    let (s, j) = get(&c, &sc, "secure").await;
    assert_eq!(s, 200, "{j}");
    assert!(
        until(Duration::from_secs(15), || seen.count("secure") == 1).await,
        "not delivered\n{}\n{}",
        sc.stderr(),
        cluster.logs()
    );
    assert!(cluster.logs().contains("with mTLS"), "{}", cluster.logs());

    // Plain gRPC (no TLS): refused at once.
    let addr = cluster.nodes[0].address();
    let plain = async {
        let mut g = spar_proto::scheduler::scheduler_client::SchedulerClient::connect(format!(
            "http://{addr}"
        ))
        .await?;
        g.list_jobs(spar_proto::scheduler::ListJobsRequest { metadata: None })
            .await
            .map_err(|s| s.to_string().into())
            .map(|_| ())
    };
    let r: Result<(), Box<dyn std::error::Error + Send + Sync>> =
        tokio::time::timeout(Duration::from_secs(10), plain)
            .await
            .expect("plain client hung");
    assert!(r.is_err(), "a plain client was served");

    // A certificate from another CA: the scheduler's client check refuses it.
    let both = other.dir.path().join("both.pem");
    std::fs::write(
        &both,
        format!("{}{}", sentry.trust_anchors(), other.trust_anchors()),
    )
    .unwrap();
    let intruder = Sidecar::start(Options {
        app_id: unique("jobs-intruder"),
        extra_args: vec![
            "--enable-mtls".into(),
            "--sentry-address".into(),
            other.address(),
            "--trust-anchors-file".into(),
            both.display().to_string(),
            "--scheduler-host-address".into(),
            cluster.host_addresses(),
        ],
        ..Default::default()
    });
    let url = format!("{}/v1.0-alpha1/jobs/intruded", intruder.http());
    let call = tokio::spawn(async move {
        Client::new()
            .post(url)
            .json(&json!({"dueTime": "1s"}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let refused = until(Duration::from_secs(15), || {
        cluster.logs().contains("TLS handshake refused")
            && cluster.logs().contains("invalid peer certificate")
    })
    .await;
    assert!(refused, "{}", cluster.logs());
    // Whatever the intruder's call comes to, it did not schedule anything.
    if call.is_finished() {
        let status = call.await.unwrap().unwrap();
        assert_ne!(status, 204);
    } else {
        call.abort();
    }
    let _ = &intruder;

    // Both certificates renewed (every node's, the sidecar's): jobs go on.
    let renewed = until(Duration::from_secs(20), || {
        cluster
            .nodes
            .iter()
            .all(|n| n.logs().contains("workload certificate renewed"))
            && sc.stderr().contains("workload certificate renewed")
    })
    .await;
    assert!(renewed, "{}\n{}", sc.stderr(), cluster.logs());
    let (s, e) = schedule(&c, &sc, "after-renewal", json!({"dueTime": "1s"})).await;
    assert_eq!(s, 204, "{e}\n{}", cluster.logs());
    assert!(
        until(Duration::from_secs(15), || seen.count("after-renewal") == 1).await,
        "not delivered after renewal\n{}\n{}",
        sc.stderr(),
        cluster.logs()
    );
}
