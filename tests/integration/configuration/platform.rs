//! What applies to every building block: `secretKeyRef`, scopes, the
//! metadata API, metric names, hot reload and resiliency policies.

use super::*;

/// As for state and pub/sub: `secretKeyRef` metadata, component scopes,
/// the metadata API, Dapr's metric names and hot reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_scopes_metadata_metrics_and_hot_reload() {
    let scoped_out = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: elsewhere\nspec:\n  type: configuration.sqlite\n  version: v1\nscopes:\n- some-other-app\n";
    let with_secret = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cfg\nspec:\n  type: configuration.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    secretKeyRef:\n      name: CFG_TEST_REDIS_HOST\n      key: CFG_TEST_REDIS_HOST\n";
    let sc = Sidecar::start(Options {
        resources: vec![with_secret.to_string(), scoped_out.to_string()],
        env: vec![("CFG_TEST_REDIS_HOST".into(), "127.0.0.1:6379".into())],
        ..Default::default()
    });
    let c = Client::new();
    let w = RedisWriter::connect("redis://127.0.0.1:6379").await;
    let key = unique("cfg");
    w.set(&key, "v", "1").await;
    let got: Value = c
        .get(format!("{}/v1.0/configuration/cfg?key={key}", sc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got[&key]["value"], "v", "secretKeyRef resolved: {got}");

    let r = c
        .get(format!("{}/v1.0/configuration/elsewhere?key=a", sc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a component scoped to another app is not loaded"
    );

    let meta = spar_tests::get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    let comps = meta["components"].as_array().unwrap();
    assert!(
        comps
            .iter()
            .any(|x| x["name"] == "cfg" && x["type"] == "configuration.redis"),
        "{meta}"
    );
    assert!(!comps.iter().any(|x| x["name"] == "elsewhere"), "{meta}");

    let metrics = c
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dapr_component_configuration_count{")
                && l.contains("component=\"cfg\"")
                && l.contains("operation=\"get\"")
                && l.contains("success=\"true\"")),
        "{metrics}"
    );
    assert!(metrics.contains("dapr_component_configuration_latencies_bucket{"));

    // Hot reload: a store added while serving, then removed.
    let added = sc.dir.path().join("resources").join("added.yaml");
    std::fs::write(
        &added,
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: added\nspec:\n  type: configuration.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n",
            sc.dir.path().join("added.db").display()
        ),
    )
    .unwrap();
    let status = |name: &'static str| {
        let c = c.clone();
        let url = format!("{}/v1.0/configuration/{name}?key=a", sc.http());
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while status("added").await != 204 {
        assert!(Instant::now() < deadline, "the added store never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A stream on the added store ends when a reload removes the store.
    let mut client = sdk(&sc).await;
    let (_, mut on_added) = open_stream(&mut client, "added", vec!["a"]).await;
    std::fs::remove_file(&added).unwrap();
    while status("added").await != 400 {
        assert!(Instant::now() < deadline, "the removed store kept serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = tokio::time::timeout(Duration::from_secs(5), on_added.message())
        .await
        .expect("the stream on a removed store did not end");
    assert!(matches!(end, Ok(None)), "{end:?}");
    // The unchanged store was carried over and still serves.
    assert_eq!(status("cfg").await, 204);
    spar_tests::delete_redis_keys(&format!("{key}*")).await;
}

/// `components.{store}.outbound` applies to configuration calls: with the
/// store down, the breaker opens and calls fail fast with its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_resiliency_policy_applies() {
    let mut redis = PrivateRedis::start(&[]);
    let policy = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    retries:\n      twice:\n        policy: constant\n        duration: 10ms\n        maxRetries: 2\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 30s\n        trip: consecutiveFailures > 2\n  targets:\n    components:\n      cfg:\n        outbound:\n          retry: twice\n          circuitBreaker: cb\n";
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", redis.port), policy.to_string()],
        ..Default::default()
    });
    redis.stop();
    let c = Client::new();
    let mut last = Value::Null;
    for _ in 0..3 {
        let r = c
            .get(format!("{}/v1.0/configuration/cfg?key=a", sc.http()))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        last = r.json().await.unwrap();
        assert_eq!(last["errorCode"], "ERR_CONFIGURATION_GET");
    }
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker is open"),
        "{last}"
    );
}
