//! The state API over gRPC, driven by the official Rust `dapr` crate.

use std::collections::HashMap;

use dapr::client::ClientOptions;
use dapr::dapr::proto::common::v1::{state_options, Etag, StateItem, StateOptions};
use dapr::dapr::proto::runtime::v1 as pb;
use serde_json::json;
use spar_tests::{memory_component, sqlite_component, unique, Options, Sidecar};

fn sidecar(env: Vec<(String, String)>) -> Sidecar {
    Sidecar::start(Options {
        resources: vec![sqlite_component("sqlite"), memory_component("mem")],
        env,
        ..Default::default()
    })
}

async fn client(sc: &Sidecar) -> dapr::Client<dapr::client::TonicClientWithAuth> {
    dapr::Client::from_options(ClientOptions::new().with_address(sc.grpc()))
        .await
        .expect("connect")
}

#[tokio::test]
async fn sdk_round_trip_etag_and_delete() {
    let sc = sidecar(vec![]);
    let mut c = client(&sc).await;
    for store in ["sqlite", "mem"] {
        let key = unique("g");
        c.save_state(store, &key, b"hello".to_vec(), None, None, None)
            .await
            .unwrap();
        let r = c.get_state(store, &key, None).await.unwrap();
        assert_eq!(r.data, b"hello");
        assert!(!r.etag.is_empty());

        // Stale etag → ABORTED, as daprd.
        c.save_state(
            store,
            &key,
            b"v2".to_vec(),
            Some(Etag {
                value: r.etag.clone(),
            }),
            None,
            None,
        )
        .await
        .unwrap();
        let err = c
            .save_state(
                store,
                &key,
                b"v3".to_vec(),
                Some(Etag {
                    value: r.etag.clone(),
                }),
                None,
                None,
            )
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("Aborted"), "{err:?}");

        // First-write on an existing key without etag fails.
        let fw = StateOptions {
            concurrency: state_options::StateConcurrency::ConcurrencyFirstWrite as i32,
            consistency: 0,
        };
        let err = c
            .save_state(store, &key, b"x".to_vec(), None, None, Some(fw))
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("Aborted"), "{err:?}");

        c.delete_state(store, &key, None).await.unwrap();
        let r = c.get_state(store, &key, None).await.unwrap();
        assert!(r.data.is_empty() && r.etag.is_empty());
    }
}

#[tokio::test]
async fn sdk_bulk_query_and_metadata() {
    let sc = sidecar(vec![]);
    let mut c = client(&sc).await;
    let tag = unique("t");
    let items: Vec<StateItem> = (0..4)
        .map(|i| StateItem {
            key: format!("{tag}-{i}"),
            value: serde_json::to_vec(&json!({"tag": tag, "i": i})).unwrap(),
            ..Default::default()
        })
        .collect();
    c.save_bulk_states("mem", items).await.unwrap();
    let q = c
        .query_state_alpha1(
            "mem",
            json!({"filter": {"EQ": {"tag": tag}}, "sort": [{"key": "i", "order": "DESC"}], "page": {"limit": 3}}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(q.results.len(), 3);
    assert_eq!(q.results[0].key, format!("{tag}-3"));
    assert!(!q.token.is_empty());

    let k0 = format!("{tag}-0");
    c.delete_bulk_state("mem", vec![(k0.as_str(), vec![])])
        .await
        .unwrap();
    let r = c.get_state("mem", &format!("{tag}-0"), None).await.unwrap();
    assert!(r.data.is_empty());

    let md = c.get_metadata().await.unwrap();
    assert_eq!(md.id, sc.app_id);
    let mut types: Vec<_> = md
        .registered_components
        .iter()
        .map(|c| (c.name.clone(), c.r#type.clone()))
        .collect();
    types.sort();
    assert_eq!(
        types,
        vec![
            ("mem".into(), "state.in-memory".into()),
            ("sqlite".into(), "state.sqlite".into())
        ]
    );
    assert!(md.registered_components[0]
        .capabilities
        .contains(&"TRANSACTIONAL".to_string()));
    c.set_metadata("team", "core").await.unwrap();
    let md = c.get_metadata().await.unwrap();
    assert_eq!(
        md.extended_metadata.get("team").map(String::as_str),
        Some("core")
    );
}

#[tokio::test]
async fn generated_client_transaction_and_bulk_get() {
    let sc = sidecar(vec![]);
    let mut raw = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let (a, b) = (unique("a"), unique("b"));
    let op = |t: &str, k: &str, v: &[u8], etag: Option<&str>| pb::TransactionalStateOperation {
        operation_type: t.into(),
        request: Some(StateItem {
            key: k.into(),
            value: v.to_vec(),
            etag: etag.map(|e| Etag { value: e.into() }),
            ..Default::default()
        }),
    };
    raw.execute_state_transaction(pb::ExecuteStateTransactionRequest {
        store_name: "sqlite".into(),
        operations: vec![op("upsert", &a, b"1", None), op("upsert", &b, b"2", None)],
        metadata: HashMap::new(),
    })
    .await
    .unwrap();
    let bulk = raw
        .get_bulk_state(pb::GetBulkStateRequest {
            store_name: "sqlite".into(),
            keys: vec![a.clone(), b.clone()],
            parallelism: 0,
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bulk.items.len(), 2);
    assert!(bulk
        .items
        .iter()
        .all(|i| !i.data.is_empty() && !i.etag.is_empty()));

    // A failing op aborts the whole transaction.
    let c = unique("c");
    let err = raw
        .execute_state_transaction(pb::ExecuteStateTransactionRequest {
            store_name: "sqlite".into(),
            operations: vec![
                op("upsert", &c, b"3", None),
                op("delete", &a, b"", Some("12345")),
            ],
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted);
    let got = raw
        .get_state(pb::GetStateRequest {
            store_name: "sqlite".into(),
            key: c,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.data.is_empty(), "partial transaction written");

    // Unknown operation type and unknown store are rejected cleanly.
    let err = raw
        .execute_state_transaction(pb::ExecuteStateTransactionRequest {
            store_name: "sqlite".into(),
            operations: vec![op("merge", &a, b"", None)],
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = raw
        .get_state(pb::GetStateRequest {
            store_name: "nope".into(),
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("nope"));
}

#[tokio::test]
async fn api_token_over_grpc() {
    let sc = sidecar(vec![("DAPR_API_TOKEN".into(), "tok".into())]);
    let mut raw = pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .unwrap();
    let err = raw
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut c = dapr::Client::from_options(
        ClientOptions::new()
            .with_address(sc.grpc())
            .with_api_token("tok"),
    )
    .await
    .unwrap();
    assert_eq!(c.get_metadata().await.unwrap().id, sc.app_id);
}

/// The Rust SDK against a PostgreSQL-backed store (its own table, dropped at
/// the end), including encryption at rest.
#[tokio::test]
async fn sdk_against_postgresql_with_encryption() {
    let table = unique("sdk").replace('-', "_");
    let conn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
    let comp = |name: &str, table: &str, encrypted: bool| {
        let mut y = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{conn}\"\n  - name: tableName\n    value: {table}\n"
        );
        if encrypted {
            y.push_str(
                "  - name: primaryEncryptionKey\n    value: \"000102030405060708090a0b0c0d0e0f\"\n",
            );
        }
        y
    };
    let sc = Sidecar::start(Options {
        resources: vec![
            comp("pg", &table, false),
            comp("pgenc", &format!("{table}_enc"), true),
        ],
        ..Default::default()
    });
    let mut c = client(&sc).await;
    let key = unique("k");
    c.save_state("pg", &key, br#"{"n":1}"#.to_vec(), None, None, None)
        .await
        .unwrap();
    let r = c.get_state("pg", &key, None).await.unwrap();
    assert_eq!(r.data, br#"{"n":1}"#);
    let err = c
        .save_state(
            "pg",
            &key,
            b"x".to_vec(),
            Some(Etag {
                value: "999".into(),
            }),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("Aborted"), "{err:?}");
    let q = c
        .query_state_alpha1("pg", json!({"filter": {"EQ": {"n": 1}}}), None)
        .await
        .unwrap();
    assert_eq!(q.results.len(), 1);
    assert_eq!(q.results[0].key, key);

    c.save_state("pgenc", &key, b"top secret".to_vec(), None, None, None)
        .await
        .unwrap();
    assert_eq!(
        c.get_state("pgenc", &key, None).await.unwrap().data,
        b"top secret"
    );
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let raw: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT value FROM \"{table}_enc\" WHERE key = $1"
    )))
    .bind(format!("{}||{key}", sc.app_id))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!raw.windows(6).any(|w| w == b"secret"), "plaintext at rest");
    for t in [
        table.clone(),
        format!("{table}_metadata"),
        format!("{table}_enc"),
        format!("{table}_enc_metadata"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS \"{t}\"")))
            .execute(&pool)
            .await
            .unwrap();
    }
}
