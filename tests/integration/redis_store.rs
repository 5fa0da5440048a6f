//! The Redis state store's own connections (`components/src/redis_wire`):
//! set-up (ACL user, database), a pooled connection the server closed, and
//! TLS — each against a private `redis-server`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_components::state::{GetRequest, SetRequest, StateError, StateStore};
use spar_tests::{free_port, get_json, Options, PrivateRedis, Sidecar};

fn store(meta: &[(&str, &str)]) -> Arc<dyn StateStore> {
    let mut y = String::from("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: r\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n");
    for (k, v) in meta {
        y.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    spar_components::registry::Registry::default()
        .build_state(&serde_yaml::from_str(&y).unwrap(), &Default::default())
        .expect("redis store")
}

fn set(key: &str, value: &str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

async fn plain(port: u16, db: i64) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn acl_user_and_database_are_set_up_on_every_connection() {
    let redis = PrivateRedis::start(&["--user", "app", "on", ">s3cret", "~*", "&*", "+@all"]);
    let host = format!("127.0.0.1:{}", redis.port);
    let s = store(&[
        ("redisHost", &host),
        ("redisUsername", "app"),
        ("redisPassword", "s3cret"),
        ("redisDB", "5"),
    ]);
    s.set(&set("k", "v1")).await.unwrap();
    let item = s.get(&GetRequest::new("k")).await.unwrap().unwrap();
    assert_eq!(
        (item.data.as_slice(), item.etag.as_deref()),
        (&b"v1"[..], Some("1"))
    );

    // Written in database 5, in daprd's layout; database 0 untouched.
    let mut db5 = plain(redis.port, 5).await;
    let data: Option<String> = redis::cmd("HGET")
        .arg("k")
        .arg("data")
        .query_async(&mut db5)
        .await
        .unwrap();
    assert_eq!(data.as_deref(), Some("v1"));
    let mut db0 = plain(redis.port, 0).await;
    let n: i64 = redis::cmd("EXISTS")
        .arg("k")
        .query_async(&mut db0)
        .await
        .unwrap();
    assert_eq!(n, 0);

    let wrong = store(&[
        ("redisHost", &host),
        ("redisUsername", "app"),
        ("redisPassword", "wrong"),
        ("maxRetries", "0"),
    ]);
    match wrong.get(&GetRequest::new("k")).await {
        Err(StateError::Backend(m)) => assert!(m.contains("WRONGPASS"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Connections the server closed while idle in the pool (a `timeout`
/// setting, `CLIENT KILL`, a restart) are noticed before use: a write is
/// never sent on one and lost.
#[tokio::test]
async fn connections_closed_by_the_server_are_replaced() {
    let redis = PrivateRedis::start(&[]);
    let s = store(&[
        ("redisHost", &format!("127.0.0.1:{}", redis.port)),
        ("maxRetries", "0"),
    ]);
    s.set(&set("k", "v1")).await.unwrap();
    for round in 2..5 {
        let mut admin = plain(redis.port, 0).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed >= 1, "the store's pooled connection was open");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let v = format!("v{round}");
        s.set(&set("k", &v)).await.expect("a write after the kill");
        let item = s.get(&GetRequest::new("k")).await.unwrap().unwrap();
        assert_eq!(item.data, v.as_bytes());
        assert_eq!(
            item.etag,
            Some(round.to_string()),
            "each write applied once"
        );
    }
}

/// A self-signed CA and a `localhost` certificate it signed, by `openssl`.
fn certificates(dir: &Path) {
    let run = |args: &str| {
        let ok = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {args}");
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    run(&format!(
        "req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=spar-test-CA"
    ));
    run(&format!(
        "req {key} -keyout leaf.key -out leaf.csr -subj /CN=localhost"
    ));
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run("x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile ext");
}

/// `enableTLS`: the server's certificate is checked against the system's
/// roots (here `SSL_CERT_FILE`, which rustls-native-certs honours, as Go's
/// TLS does for daprd); a server the roots do not vouch for is refused.
#[tokio::test]
async fn tls_connections_verify_the_server() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let tls_port = free_port();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let _redis = PrivateRedis::start(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &p("leaf.pem"),
        "--tls-key-file",
        &p("leaf.key"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
        "--tls-auth-clients",
        "no",
    ]);
    // Untrusted, the store fails its start-up check (daprd's Init pings):
    // with `ignoreErrors` the sidecar serves on and says why.
    let component = |ignore: bool| {
        format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: secure\nspec:\n  type: state.redis\n  version: v1\n  ignoreErrors: {ignore}\n  metadata:\n  - name: redisHost\n    value: localhost:{tls_port}\n  - name: enableTLS\n    value: \"true\"\n  - name: maxRetries\n    value: \"0\"\n"
    )
    };
    let c = Client::new();
    for (roots, trusted) in [(p("ca.pem"), true), (p("leaf.csr"), false)] {
        let sc = Sidecar::start(Options {
            resources: vec![component(!trusted)],
            env: vec![("SSL_CERT_FILE".into(), roots)],
            ..Default::default()
        });
        let r = c
            .post(format!("{}/v1.0/state/secure", sc.http()))
            .json(&json!([{"key": "k", "value": {"over": "tls"}}]))
            .send()
            .await
            .unwrap();
        if trusted {
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            let v = get_json(&c, format!("{}/v1.0/state/secure/k", sc.http())).await;
            assert_eq!(v, json!({"over": "tls"}));
        } else {
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                body["errorCode"], "ERR_STATE_STORE_NOT_CONFIGURED",
                "{body}"
            );
            let md = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
            let why = md["extended"]["componentError.secure"]
                .as_str()
                .unwrap_or_default();
            assert!(why.contains("TLS"), "{md}");
        }
    }
}
