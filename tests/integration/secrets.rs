//! Secret stores, the secrets API (HTTP and gRPC with the Rust SDK),
//! scoping, and secretKeyRef resolution into another component.

use dapr::client::ClientOptions;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{get_json, Options, PrivateRedis, Sidecar};

const SECRETS_JSON: &str = r#"{"db": {"password": "s3cr3t", "user": "admin"}, "token": "abc", "redis-pass": "pw-for-redis"}"#;

fn file_store(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: \"{{dir}}/secrets.json\"\n"
    )
}

fn env_store() -> String {
    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: envstore\nspec:\n  type: secretstores.local.env\n  version: v1\n  metadata:\n  - name: prefix\n    value: SPARTEST_\n".into()
}

fn with_secrets_file(opts: Options) -> Sidecar {
    // The file must exist before the sidecar starts: write it via a first
    // resource pass that Sidecar::start's {dir} points at.
    let sc_dir_marker = opts
        .resources
        .iter()
        .any(|r| r.contains("{dir}/secrets.json"));
    assert!(sc_dir_marker);
    Sidecar::start_with_files(opts, &[("secrets.json", SECRETS_JSON)])
}

async fn status_and_code(r: reqwest::Response) -> (StatusCode, String) {
    let s = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (s, v["errorCode"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn file_and_env_stores_over_http_and_grpc() {
    let sc = with_secrets_file(Options {
        resources: vec![file_store("files"), env_store()],
        env: vec![("SPARTEST_api-key".into(), "from-env".into())],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    assert_eq!(
        get_json(&c, format!("{base}/v1.0/secrets/files/db:password")).await,
        json!({"db:password": "s3cr3t"})
    );
    assert_eq!(
        get_json(&c, format!("{base}/v1.0/secrets/envstore/api-key")).await,
        json!({"api-key": "from-env"})
    );
    let bulk = get_json(&c, format!("{base}/v1.0/secrets/files/bulk")).await;
    assert_eq!(bulk["token"], json!({"token": "abc"}));
    assert_eq!(bulk["db:user"], json!({"db:user": "admin"}));

    let (s, code) = status_and_code(
        c.get(format!("{base}/v1.0/secrets/files/nope"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "ERR_SECRET_GET")
    );
    let (s, code) = status_and_code(
        c.get(format!("{base}/v1.0/secrets/nostore/x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNAUTHORIZED, "ERR_SECRET_STORE_NOT_FOUND")
    );

    let mut sdk = dapr::Client::from_options(ClientOptions::new().with_address(sc.grpc()))
        .await
        .unwrap();
    let r = sdk.get_secret("files", "token").await.unwrap();
    assert_eq!(r.data.get("token").map(String::as_str), Some("abc"));
    let r = sdk.get_bulk_secret("files", None).await.unwrap();
    assert_eq!(r.data["db:password"].secrets["db:password"], "s3cr3t");
    let err = sdk.get_secret("nostore", "x").await.unwrap_err();
    assert!(format!("{err:?}").contains("InvalidArgument"), "{err:?}");
}

#[tokio::test]
async fn scopes_deny_and_filter_bulk() {
    let sc = with_secrets_file(Options {
        resources: vec![file_store("files")],
        config: Some(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: scoped\nspec:\n  secrets:\n    scopes:\n    - storeName: files\n      defaultAccess: deny\n      allowedSecrets: [\"token\"]\n".into(),
        ),
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    assert_eq!(
        get_json(&c, format!("{base}/v1.0/secrets/files/token")).await,
        json!({"token": "abc"})
    );
    let (s, code) = status_and_code(
        c.get(format!("{base}/v1.0/secrets/files/db:password"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::FORBIDDEN, "ERR_PERMISSION_DENIED")
    );
    let bulk = get_json(&c, format!("{base}/v1.0/secrets/files/bulk")).await;
    assert_eq!(bulk, json!({"token": {"token": "abc"}}));
    let mut sdk = dapr::Client::from_options(ClientOptions::new().with_address(sc.grpc()))
        .await
        .unwrap();
    let err = sdk.get_secret("files", "db:user").await.unwrap_err();
    assert!(format!("{err:?}").contains("PermissionDenied"), "{err:?}");
}

#[tokio::test]
async fn no_secret_stores_configured() {
    let sc = Sidecar::start(Options::default());
    let r = Client::new()
        .get(format!("{}/v1.0/secrets/any/x", sc.http()))
        .send()
        .await
        .unwrap();
    let (s, code) = status_and_code(r).await;
    assert_eq!(
        (s, code.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_STORES_NOT_CONFIGURED"
        )
    );
}

/// A Redis started with `requirepass`: the state store gets its password
/// through `secretKeyRef`; a component whose secret is missing fails alone.
#[tokio::test]
async fn secret_key_ref_resolves_a_redis_password() {
    let redis = PrivateRedis::start(&["--requirepass", "pw-for-redis"]);
    // The broken one is kept out of the way with `ignoreErrors` (else its
    // failure would stop the sidecar, as daprd's does).
    let redis_comp = |name: &str, secret: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  ignoreErrors: true\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{}\n  - name: redisPassword\n    secretKeyRef:\n      name: {secret}\n      key: {secret}\nauth:\n  secretStore: files\n",
            redis.port
        )
    };
    let sc = with_secrets_file(Options {
        resources: vec![
            file_store("files"),
            redis_comp("locked", "redis-pass"),
            redis_comp("broken", "no-such-secret"),
        ],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    let r = c
        .post(format!("{base}/v1.0/state/locked"))
        .json(&json!([{"key": "k", "value": "through auth"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_json(&c, format!("{base}/v1.0/state/locked/k")).await,
        json!("through auth")
    );

    let md = get_json(&c, format!("{base}/v1.0/metadata")).await;
    let err = md["extended"]["componentError.broken"]
        .as_str()
        .unwrap_or_default();
    assert!(
        err.contains("redisPassword") && err.contains("no-such-secret") && err.contains("files"),
        "{md}"
    );
    let names: Vec<&str> = md["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"locked") && !names.contains(&"broken"),
        "{names:?}"
    );
}

/// With no `auth.secretStore`, a `secretKeyRef` resolves from the
/// environment, as the default secret store.
#[tokio::test]
async fn secret_key_ref_defaults_to_the_environment() {
    let sc = Sidecar::start(Options {
        resources: vec![
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: envredis\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    secretKeyRef:\n      name: SPAR_TEST_REDIS_HOST\n      key: SPAR_TEST_REDIS_HOST\n".into(),
        ],
        env: vec![("SPAR_TEST_REDIS_HOST".into(), "127.0.0.1:6379".into())],
        ..Default::default()
    });
    let c = Client::new();
    let key = spar_tests::unique("envref");
    let r = c
        .post(format!("{}/v1.0/state/envredis", sc.http()))
        .json(&json!([{"key": key, "value": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Redis has no query API: Dapr's not-supported error.
    let r = c
        .post(format!("{}/v1.0-alpha1/state/envredis/query", sc.http()))
        .json(&json!({"filter": {"EQ": {"a": 1}}}))
        .send()
        .await
        .unwrap();
    let (s, code) = status_and_code(r).await;
    assert_eq!(
        (s, code.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_SUPPORTED"
        )
    );
    c.delete(format!("{}/v1.0/state/envredis/{key}", sc.http()))
        .send()
        .await
        .unwrap();
}
