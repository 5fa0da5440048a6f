//! Backend outages: calls fail fast with Dapr's error, the sidecar stays
//! healthy, and it recovers by itself when the backend returns. Uses a
//! private Redis on its own port so the shared one is never touched.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{Options, PrivateRedis, Sidecar};

#[tokio::test]
async fn redis_outage_fails_fast_then_recovers() {
    let mut redis = PrivateRedis::start(&[]);
    let sc = Sidecar::start(Options {
        resources: vec![format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{}\n  - name: dialTimeout\n    value: 1s\n  - name: maxRetries\n    value: 1\n",
            redis.port
        )],
        ..Default::default()
    });
    // The client's own timeout is the bound: a hang fails the test.
    let c = Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let save = |v: i32| {
        c.post(format!("{}/v1.0/state/cache", sc.http()))
            .json(&json!([{"key": "k", "value": v}]))
            .send()
    };
    assert_eq!(save(1).await.unwrap().status(), StatusCode::NO_CONTENT);

    redis.stop();
    for _ in 0..3 {
        let r = save(2).await.expect("an answer, not a hang");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errorCode"], "ERR_STATE_SAVE", "{body}");
        let r = c
            .get(format!("{}/v1.0/state/cache/k", sc.http()))
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            r.json::<Value>().await.unwrap()["errorCode"],
            "ERR_STATE_GET"
        );
    }
    let health = c
        .get(format!("{}/v1.0/healthz", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        StatusCode::NO_CONTENT,
        "the sidecar stays healthy"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if save(3)
            .await
            .is_ok_and(|r| r.status() == StatusCode::NO_CONTENT)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v: Value = c
        .get(format!("{}/v1.0/state/cache/k", sc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!(3));
}

#[tokio::test]
async fn postgresql_outage_fails_fast_then_recovers() {
    let mut pg = tokio::task::spawn_blocking(spar_tests::PrivatePostgres::start)
        .await
        .unwrap();
    let sc = Sidecar::start(Options {
        resources: vec![format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: db\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: timeout\n    value: 3s\n",
            pg.connection_string()
        )],
        ..Default::default()
    });
    let c = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let save = |v: i32| {
        c.post(format!("{}/v1.0/state/db", sc.http()))
            .json(&json!([{"key": "k", "value": v}]))
            .send()
    };
    let r = save(1).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );

    pg.stop();
    let r = save(2).await.expect("an answer, not a hang");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_STATE_SAVE"
    );
    let r = c
        .get(format!("{}/v1.0/state/db/k", sc.http()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_STATE_GET"
    );
    let health = c
        .get(format!("{}/v1.0/healthz", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::NO_CONTENT);

    let mut pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if save(3)
            .await
            .is_ok_and(|r| r.status() == StatusCode::NO_CONTENT)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v: Value = c
        .get(format!("{}/v1.0/state/db/k", sc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!(3));
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap();
}

/// Redis Streams subscription through an outage: the blocking read's
/// connection breaks, is reopened once Redis is back (the group, lost with
/// the restarted server's data, is created again), and messages flow again;
/// the outage is logged once, not once per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_outage_recovers() {
    use std::sync::{Arc, Mutex};
    let mut redis = PrivateRedis::start(&[]);
    let got: Arc<Mutex<Vec<i64>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let ev: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(n) = ev["data"]["n"].as_i64() {
                seen.lock().unwrap().push(n);
            }
            axum::Json(json!({"status": "SUCCESS"}))
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let sc = Sidecar::start(Options {
        resources: vec![
            format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ps\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{}\n  - name: dialTimeout\n    value: 1s\n", redis.port),
            "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: ps\n  topic: orders\n  routes:\n    default: /orders\n".into(),
        ],
        extra_args: vec!["--app-port".into(), port.to_string()],
        ..Default::default()
    });
    let c = Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let publish = |n: i64| {
        c.post(format!("{}/v1.0/publish/ps/orders", sc.http()))
            .json(&json!({ "n": n }))
            .send()
    };
    let arrived = |n: i64, limit: Duration| {
        let got = got.clone();
        async move {
            let deadline = Instant::now() + limit;
            while !got.lock().unwrap().contains(&n) {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            true
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while spar_tests::get_json(&c, format!("{}/v1.0/metadata", sc.http())).await["subscriptions"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline, "not subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(publish(1).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(arrived(1, Duration::from_secs(5)).await, "{}", sc.stderr());

    redis.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !publish(2)
        .await
        .is_ok_and(|r| r.status() == StatusCode::NO_CONTENT)
    {
        assert!(Instant::now() < deadline, "publish did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        arrived(2, Duration::from_secs(10)).await,
        "no delivery after Redis came back: {}",
        sc.stderr()
    );
    let log = sc.stderr();
    let warnings = log
        .lines()
        .filter(|l| l.contains("redis pubsub") && l.contains("WARN"))
        .count();
    assert!(
        (1..=3).contains(&warnings),
        "one warning per outage, not per attempt: {log}"
    );
}
