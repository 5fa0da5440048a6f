//! State encryption end to end: keys from a secret store, ciphertext at
//! rest in the real Redis, and key rotation across sidecar restarts.

use redis::AsyncCommands;
use reqwest::{Client, StatusCode};
use serde_json::json;
use spar_tests::{get_json, unique, Options, Sidecar};

const KEYS: &str = r#"{"key-2025": "000102030405060708090a0b0c0d0e0f", "key-2026": "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"}"#;

fn sidecar(app_id: &str, primary: &str, secondary: Option<&str>) -> Sidecar {
    let mut store = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: vault\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n  - name: primaryEncryptionKey\n    secretKeyRef:\n      name: {primary}\n      key: {primary}\n"
    );
    if let Some(s) = secondary {
        store.push_str(&format!("  - name: secondaryEncryptionKey\n    secretKeyRef:\n      name: {s}\n      key: {s}\n"));
    }
    store.push_str("auth:\n  secretStore: keys\n");
    let keys = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: keys\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: \"{dir}/keys.json\"\n".to_string();
    Sidecar::start_with_files(
        Options {
            app_id: app_id.into(),
            resources: vec![keys, store],
            ..Default::default()
        },
        &[("keys.json", KEYS)],
    )
}

async fn raw(key: &str) -> Vec<u8> {
    let client = redis::Client::open("redis://127.0.0.1:6379/0").unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    c.hget(key, "data").await.unwrap()
}

async fn cleanup(keys: &[String]) {
    let client = redis::Client::open("redis://127.0.0.1:6379/0").unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = c.del(keys).await.unwrap();
}

#[tokio::test]
async fn encrypted_at_rest_and_readable_after_rotation() {
    let app = unique("enc");
    let c = Client::new();
    let (k_old, k_new) = (unique("old"), unique("new"));
    {
        let sc = sidecar(&app, "key-2025", None);
        let r = c
            .post(format!("{}/v1.0/state/vault", sc.http()))
            .json(&json!([{"key": k_old, "value": {"card": "4111-1111"}}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            get_json(&c, format!("{}/v1.0/state/vault/{k_old}", sc.http())).await,
            json!({"card": "4111-1111"})
        );
        let md = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
        assert!(!md["components"][1]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("QUERY_API")));
    }
    let stored = raw(&format!("{app}||{k_old}")).await;
    assert!(
        !String::from_utf8_lossy(&stored).contains("4111"),
        "plaintext at rest"
    );
    assert!(stored.ends_with(b"||key-2025"));

    // Rotated: the new key is primary, the old one secondary.
    let sc = sidecar(&app, "key-2026", Some("key-2025"));
    assert_eq!(
        get_json(&c, format!("{}/v1.0/state/vault/{k_old}", sc.http())).await,
        json!({"card": "4111-1111"})
    );
    c.post(format!("{}/v1.0/state/vault", sc.http()))
        .json(&json!([{"key": k_new, "value": "fresh"}]))
        .send()
        .await
        .unwrap();
    assert!(raw(&format!("{app}||{k_new}"))
        .await
        .ends_with(b"||key-2026"));
    cleanup(&[format!("{app}||{k_old}"), format!("{app}||{k_new}")]).await;
}
