//! Store outages: a subscription reconnects and resumes (Redis, PostgreSQL),
//! turning keyspace notifications back on for a restarted Redis without
//! replacing the server's other flags.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_then_recovery_resumes_the_subscription() {
    let mut redis = PrivateRedis::start(&[]);
    let store = "cfg";
    let (app_port, posts) = app().await;
    let sc = Sidecar::start(Options {
        resources: vec![redis_component(store, redis.port)],
        extra_args: vec!["--app-port".into(), app_port.to_string()],
        ..Default::default()
    });
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let w = RedisWriter::connect(&url).await;
    w.set("k", "before", "1").await;
    let mut c = sdk(&sc).await;
    let (_, mut s) = open_stream(&mut c, store, vec!["k"]).await;
    let r: Value = Client::new()
        .get(format!(
            "{}/v1.0/configuration/{store}/subscribe?key=k",
            sc.http()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["id"].is_string(), "{r}");
    w.set("k", "up", "2").await;
    wait_stream(&mut s, "k", "up").await;
    // A fresh server has keyspace notifications off: the store turned on
    // the ones it needs.
    let flags = notify_flags(&url).await;
    assert!(
        "Kg$xe".chars().all(|f| flags.contains(f)),
        "notify-keyspace-events {flags:?}"
    );

    redis.stop();
    // While Redis is down, a get fails with daprd's code, promptly.
    let r = Client::new()
        .get(format!("{}/v1.0/configuration/{store}?key=k", sc.http()))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "ERR_CONFIGURATION_GET"
    );
    redis.restart();
    // The restarted server is empty and has notifications off: the
    // subscription turns them on again when it reconnects. Writes repeat
    // until one arrives (the first may land before the reconnection; the
    // re-read after it reports that one too).
    let w = RedisWriter::connect(&url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let v = format!("back{n}");
        w.set("k", &v, &n.to_string()).await;
        let got = tokio::time::timeout(Duration::from_millis(700), s.message()).await;
        if let Ok(Ok(Some(m))) = got {
            if m.items
                .get("k")
                .is_some_and(|i| i.value.starts_with("back"))
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the subscription did not resume");
    }
    // After recovery, changes flow with the usual latency, to both faces.
    w.set("k", "steady", "100").await;
    let written = Instant::now();
    let at = wait_stream(&mut s, "k", "steady").await;
    let (_, at_app) = wait_post(&posts, &format!("/configuration/{store}/k"), "k", "steady").await;
    report(
        "redis after recovery → gRPC, HTTP",
        &[at.duration_since(written), at_app.duration_since(written)],
    );
}

/// A PostgreSQL outage: the LISTEN connection is re-made when the server is
/// back, and a change made while it was down (here: the first write after
/// the restart may land before the watch has reconnected) is reported by
/// the re-read that follows the reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_outage_then_recovery_resumes_the_subscription() {
    let mut pg = spar_tests::PrivatePostgres::start();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    spar_tests::create_pg_config_table(&pool, "cfg", "cfgch").await;
    let sc = Sidecar::start(Options {
        resources: vec![format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: configuration.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n  - name: table\n    value: cfg\n  - name: notifyChannel\n    value: cfgch\n  - name: timeout\n    value: 2s\n",
            pg.connection_string()
        )],
        ..Default::default()
    });
    let w = spar_tests::PgWriter {
        pool,
        table: "cfg".into(),
    };
    w.set("k", "before", "1").await;
    let mut c = sdk(&sc).await;
    let (_, mut s) = open_stream(&mut c, "pg", vec!["k"]).await;
    w.set("k", "up", "2").await;
    wait_stream(&mut s, "k", "up").await;

    w.pool.close().await;
    pg.stop();
    pg.restart();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let w = spar_tests::PgWriter {
        pool,
        table: "cfg".into(),
    };
    w.set("k", "while-away", "3").await;
    wait_stream(&mut s, "k", "while-away").await;
    w.set("k", "steady", "4").await;
    let written = Instant::now();
    let at = wait_stream(&mut s, "k", "steady").await;
    report(
        "postgresql after recovery → gRPC",
        &[at.duration_since(written)],
    );
}

/// The store adds the keyspace-notification flags it needs to the ones the
/// server already has, never replacing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_notification_flags_are_kept() {
    let redis = PrivateRedis::start(&["--notify-keyspace-events", "El"]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", redis.port)],
        ..Default::default()
    });
    let mut c = sdk(&sc).await;
    let (_, mut s) = open_stream(&mut c, "cfg", vec!["k"]).await;
    let flags = notify_flags(&url).await;
    assert!(
        "ElKg$xe".chars().all(|f| flags.contains(f)),
        "notify-keyspace-events {flags:?}"
    );
    RedisWriter::connect(&url).await.set("k", "v", "1").await;
    wait_stream(&mut s, "k", "v").await;
}
