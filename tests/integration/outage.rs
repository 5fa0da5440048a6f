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
