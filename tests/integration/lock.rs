//! The distributed lock API against the real binary: HTTP and gRPC (the
//! Rust `dapr` crate's client), on Redis and the embedded SQLite default;
//! a race of 20 clients, expiry, unlock statuses, a holder killed with
//! SIGKILL, bad input with daprd's codes, resiliency and the metadata API.

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{get_json, unique, Options, PrivateRedis, Sidecar};

fn redis_lock(name: &str, host: &str, extra: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: lock.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{host}\"\n{extra}"
    )
}

async fn lock(c: &Client, sc: &Sidecar, store: &str, body: Value) -> (u16, Value) {
    post(c, format!("{}/v1.0-alpha1/lock/{store}", sc.http()), body).await
}

async fn unlock(c: &Client, sc: &Sidecar, store: &str, body: Value) -> (u16, Value) {
    post(c, format!("{}/v1.0-alpha1/unlock/{store}", sc.http()), body).await
}

async fn post(c: &Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(&url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn req(resource: &str, owner: &str, expiry: i32) -> Value {
    json!({"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry})
}

/// The behaviour every store must show through the API.
async fn lock_semantics(sc: &Sidecar, store: &str) {
    let c = Client::new();
    // 20 clients race for one resource: exactly one wins.
    let r = unique("race");
    let tries = (0..20).map(|i| {
        let (c, url, body) = (
            c.clone(),
            format!("{}/v1.0-alpha1/lock/{store}", sc.http()),
            req(&r, &format!("owner-{i}"), 60),
        );
        tokio::spawn(async move { post(&c, url, body).await })
    });
    let mut winners = vec![];
    for (i, t) in tries.enumerate() {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        if body["success"] == json!(true) {
            winners.push(i);
        } else {
            assert_eq!(body, json!({"success": false}));
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let owner = format!("owner-{}", winners[0]);

    // Unlock by a non-owner: 2; by the owner: 0; again: 1.
    let (s, b) = unlock(&c, sc, store, req(&r, "someone-else", 0)).await;
    assert_eq!((s, b), (200, json!({"status": 2})));
    let (s, b) = unlock(&c, sc, store, req(&r, &owner, 0)).await;
    assert_eq!((s, b), (200, json!({"status": 0})));
    let (s, b) = unlock(&c, sc, store, req(&r, &owner, 0)).await;
    assert_eq!((s, b), (200, json!({"status": 1})));

    // Expiry frees the lock, and not before.
    let r = unique("exp");
    let before = Instant::now();
    assert_eq!(
        lock(&c, sc, store, req(&r, "a", 2)).await.1["success"],
        true
    );
    assert_eq!(
        lock(&c, sc, store, req(&r, "b", 2)).await.1["success"],
        false
    );
    let freed = wait_free(&c, sc, store, &r, "b").await;
    assert!(
        freed >= before + Duration::from_secs(2),
        "free after {:?}, before its 2 s expiry",
        freed - before
    );
    let (_, b) = unlock(&c, sc, store, req(&r, "a", 0)).await;
    assert_eq!(b, json!({"status": 2}), "b holds it now");
}

/// Polls with try-lock as `owner` until it wins; returns when it did.
async fn wait_free(c: &Client, sc: &Sidecar, store: &str, r: &str, owner: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, b) = lock(c, sc, store, req(r, owner, 60)).await;
        if b["success"] == json!(true) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "lock {r} never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_over_http() {
    let sc = Sidecar::start(Options {
        resources: vec![redis_lock("redislock", "127.0.0.1:6379", "")],
        ..Default::default()
    });
    lock_semantics(&sc, "redislock").await;
}

/// daprd's key layout, so daprd and spar sidecars share locks on one
/// Redis: `lock||{appId}||{resourceId}`, the owner as the value. The
/// Redis address comes from a `secretKeyRef` (the environment's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_are_daprds() {
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: redislock\nspec:\n  type: lock.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    secretKeyRef:\n      name: SPARTEST_LOCK_REDIS\n      key: SPARTEST_LOCK_REDIS\n";
    let sc = Sidecar::start(Options {
        resources: vec![component.into()],
        env: vec![("SPARTEST_LOCK_REDIS".into(), "127.0.0.1:6379".into())],
        ..Default::default()
    });
    let c = Client::new();
    let r = unique("layout");
    assert_eq!(
        lock(&c, &sc, "redislock", req(&r, "me", 30)).await.1["success"],
        true
    );
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("lock||{}||{r}", sc.app_id);
    let owner: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(owner.as_deref(), Some("me"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_lockstore() {
    let sc = Sidecar::start(Options {
        no_resources: true,
        ..Default::default()
    });
    lock_semantics(&sc, "lockstore").await;
    let md = get_json(&Client::new(), format!("{}/v1.0/metadata", sc.http())).await;
    let comps = md["components"].as_array().unwrap();
    assert!(
        comps.iter().any(|c| c["name"] == "lockstore"
            && c["type"] == "lock.sqlite"
            && c["capabilities"] == json!([])),
        "{md}"
    );
}

/// The holder is a sidecar killed with SIGKILL while holding the lock: the
/// lock stays taken until its expiry, then is free. Done on Redis and on
/// the embedded default, which two sidecars on one machine share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_killed_loses_the_lock_at_expiry() {
    let app = unique("killed");
    let data = tempfile::tempdir().unwrap();
    let data_arg = vec!["--data-dir".to_string(), data.path().display().to_string()];
    for (store, resources, extra) in [
        (
            "redislock",
            vec![redis_lock("redislock", "127.0.0.1:6379", "")],
            vec![],
        ),
        ("lockstore", vec![], data_arg),
    ] {
        let opts = || Options {
            app_id: app.clone(),
            no_resources: resources.is_empty(),
            resources: resources.clone(),
            extra_args: extra.clone(),
            ..Default::default()
        };
        let mut holder = Sidecar::start(opts());
        let other = Sidecar::start(opts());
        let c = Client::new();
        let r = unique("held");
        let before = Instant::now();
        assert_eq!(
            lock(&c, &holder, store, req(&r, "holder", 3)).await.1["success"],
            true
        );
        holder.child.kill().unwrap(); // SIGKILL
        holder.child.wait().unwrap();
        assert_eq!(
            lock(&c, &other, store, req(&r, "other", 3)).await.1["success"],
            false,
            "{store}: still held right after the kill"
        );
        let freed = wait_free(&c, &other, store, &r, "other").await;
        assert!(
            freed >= before + Duration::from_secs(3),
            "{store}: freed after {:?}, before the 3 s expiry",
            freed - before
        );
    }
}

/// gRPC `TryLockAlpha1` / `UnlockAlpha1` with the Rust SDK's client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_the_rust_sdk() {
    use dapr::dapr::proto::runtime::v1 as pb;
    let sc = Sidecar::start(Options {
        resources: vec![redis_lock("redislock", "127.0.0.1:6379", "")],
        ..Default::default()
    });
    let mut client = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let r = unique("grpc");
    let try_lock = |owner: &str, expiry| pb::TryLockRequest {
        store_name: "redislock".into(),
        resource_id: r.clone(),
        lock_owner: owner.into(),
        expiry_in_seconds: expiry,
    };
    let unlock = |owner: &str| pb::UnlockRequest {
        store_name: "redislock".into(),
        resource_id: r.clone(),
        lock_owner: owner.into(),
    };
    assert!(
        client
            .try_lock_alpha1(try_lock("a", 30))
            .await
            .unwrap()
            .into_inner()
            .success
    );
    assert!(
        !client
            .try_lock_alpha1(try_lock("b", 30))
            .await
            .unwrap()
            .into_inner()
            .success
    );
    let status = |s: pb::unlock_response::Status| s as i32;
    assert_eq!(
        client
            .unlock_alpha1(unlock("b"))
            .await
            .unwrap()
            .into_inner()
            .status,
        status(pb::unlock_response::Status::LockBelongsToOthers)
    );
    assert_eq!(
        client
            .unlock_alpha1(unlock("a"))
            .await
            .unwrap()
            .into_inner()
            .status,
        status(pb::unlock_response::Status::Success)
    );
    assert_eq!(
        client
            .unlock_alpha1(unlock("a"))
            .await
            .unwrap()
            .into_inner()
            .status,
        status(pb::unlock_response::Status::LockDoesNotExist)
    );
    // Errors as gRPC status codes.
    let e = client.try_lock_alpha1(try_lock("a", 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("ExpiryInSeconds is not positive"),
        "{e}"
    );
    let mut nope = try_lock("a", 5);
    nope.store_name = "nope".into();
    let e = client.try_lock_alpha1(nope).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(e.message(), "lock store nope not found");
    let mut bad = unlock("a");
    bad.resource_id = "a||b".into();
    let e = client.unlock_alpha1(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
}

/// Every kind of bad input gets daprd's code and status, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_daprds_errors() {
    let sc = Sidecar::start(Options {
        resources: vec![redis_lock("redislock", "127.0.0.1:6379", "")],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    let raw = |path: &str, body: &'static str| {
        c.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: &[(&str, &'static str, u16, &str, &str)] = &[
        (
            "/v1.0-alpha1/lock/redislock",
            "",
            400,
            "ERR_MALFORMED_REQUEST",
            "ExpiryInSeconds is not positive in lock store redislock",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{"lockOwner":"o","expiryInSeconds":5}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "ResourceId is empty in lock store redislock",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{"resourceId":"r","expiryInSeconds":5}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "LockOwner is empty in lock store redislock",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":-1}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "ExpiryInSeconds is not positive",
        ),
        (
            "/v1.0-alpha1/lock/nope",
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":5}"#,
            400,
            "ERR_LOCK_STORE_NOT_FOUND",
            "lock store nope not found",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{"resourceId":5,"lockOwner":"o","expiryInSeconds":5}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":"soon"}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":1.5}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"[1,2]"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{not json"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/lock/redislock",
            r#"{"resourceId":"a||b","lockOwner":"o","expiryInSeconds":5}"#,
            500,
            "ERR_TRY_LOCK",
            "can't contain '||'",
        ),
        (
            "/v1.0-alpha1/unlock/redislock",
            "",
            400,
            "ERR_MALFORMED_REQUEST",
            "ResourceId is empty in lock store redislock",
        ),
        (
            "/v1.0-alpha1/unlock/redislock",
            r#"{"resourceId":"r"}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "LockOwner is empty",
        ),
        (
            "/v1.0-alpha1/unlock/nope",
            r#"{"resourceId":"r","lockOwner":"o"}"#,
            400,
            "ERR_LOCK_STORE_NOT_FOUND",
            "",
        ),
        (
            "/v1.0-alpha1/unlock/redislock",
            r#"{"resourceId":"a||b","lockOwner":"o"}"#,
            500,
            "ERR_UNLOCK",
            "failed to release lock",
        ),
        (
            "/v1.0-alpha1/unlock/redislock",
            r#"{"resourceId":["r"],"lockOwner":"o"}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
    ];
    for (path, body, status, code, msg) in cases {
        let r = raw(path, body).await.unwrap();
        assert_eq!(r.status().as_u16(), *status, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errorCode"], *code, "{path} {body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(msg),
            "{path} {body}: {v}"
        );
    }
    // Proto field names and numbers in strings are read as protojson does.
    let r = unique("proto-names");
    let (s, b) = post(
        &c,
        format!("{base}/v1.0-alpha1/lock/redislock"),
        json!({"resource_id": r, "lock_owner": "o", "expiry_in_seconds": "5"}),
    )
    .await;
    assert_eq!((s, b), (200, json!({"success": true})));
    // Another verb on a lock route.
    let r = c
        .get(format!("{base}/v1.0-alpha1/lock/redislock"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(sc.stderr().find("panicked").is_none());
}

/// A lock store added to the resources is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_by_hot_reload() {
    let sc = Sidecar::start(Options {
        resources: vec![spar_tests::memory_component("state")],
        ..Default::default()
    });
    std::fs::write(
        sc.dir.path().join("resources").join("components.yaml"),
        format!(
            "{}\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: later\nspec:\n  type: lock.in-memory\n  version: v1\n",
            spar_tests::memory_component("state")
        ),
    )
    .unwrap();
    let c = Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, b) = lock(&c, &sc, "later", req(&unique("r"), "o", 5)).await;
        if s == 200 {
            assert_eq!(b, json!({"success": true}));
            break;
        }
        assert!(Instant::now() < deadline, "the lock store never came: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No lock store for this app — the only one is scoped to another app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lock_store_configured() {
    let scoped = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: theirs\nspec:\n  type: lock.in-memory\n  version: v1\nscopes:\n- some-other-app\n";
    let sc = Sidecar::start(Options {
        resources: vec![spar_tests::memory_component("state"), scoped.into()],
        ..Default::default()
    });
    let c = Client::new();
    let (s, b) = lock(&c, &sc, "any", req("r", "o", 5)).await;
    assert_eq!(
        (s, b["errorCode"].as_str()),
        (500, Some("ERR_LOCK_STORE_NOT_CONFIGURED"))
    );
    assert_eq!(b["message"], "lock store is not configured");
    let (s, b) = unlock(&c, &sc, "any", req("r", "o", 0)).await;
    assert_eq!(
        (s, b["errorCode"].as_str()),
        (500, Some("ERR_LOCK_STORE_NOT_CONFIGURED"))
    );
}

/// `keyPrefix: name` shares locks between apps; a store whose Redis is
/// gone fails with ERR_TRY_LOCK and, under a resiliency policy, its
/// breaker opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_and_resiliency() {
    let mut redis = PrivateRedis::start(&[]);
    let host = format!("127.0.0.1:{}", redis.port);
    let extra = "  - name: keyPrefix\n    value: name\n  - name: dialTimeout\n    value: 200ms\n  - name: readTimeout\n    value: 200ms\n  - name: maxRetries\n    value: \"0\"\n";
    let policy = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  policies:\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 30s\n        trip: consecutiveFailures > 1\n  targets:\n    components:\n      shared:\n        outbound:\n          circuitBreaker: cb\n";
    let a = Sidecar::start(Options {
        resources: vec![redis_lock("shared", &host, extra), policy.into()],
        ..Default::default()
    });
    let b = Sidecar::start(Options {
        resources: vec![redis_lock("shared", &host, extra)],
        ..Default::default()
    });
    let c = Client::new();
    assert_eq!(
        lock(&c, &a, "shared", req("job", "a", 30)).await.1["success"],
        true
    );
    assert_eq!(
        lock(&c, &b, "shared", req("job", "b", 30)).await.1["success"],
        false,
        "same store name, other app: one lock"
    );
    redis.stop();
    for _ in 0..2 {
        let (s, e) = lock(&c, &a, "shared", req("job", "a", 30)).await;
        assert_eq!(
            (s, e["errorCode"].as_str()),
            (500, Some("ERR_TRY_LOCK")),
            "{e}"
        );
    }
    let (s, e) = lock(&c, &a, "shared", req("job", "a", 30)).await;
    assert_eq!(s, 500);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{e}"
    );
}
