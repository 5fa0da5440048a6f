//! Bad input on every configuration route, answered with daprd's codes,
//! and the PostgreSQL store's own checks (channel, keys, table).

use super::*;

/// `GetConfigurationRequest` with field 1 (`store_name`, a string) sent as
/// a number.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongGetConfiguration {
    #[prost(int64, tag = "1")]
    store_name: i64,
}

async fn wrong_type_get(sc: &Sidecar) -> tonic::Status {
    let ch = tonic::transport::Endpoint::from_shared(sc.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.unwrap();
    let r: Result<tonic::Response<pb::GetConfigurationResponse>, _> = g
        .unary(
            tonic::Request::new(WrongGetConfiguration { store_name: 7 }),
            http::uri::PathAndQuery::from_static("/dapr.proto.runtime.v1.Dapr/GetConfiguration"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    r.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_daprd_codes() {
    let sc = Sidecar::start(Options {
        resources: vec![redis_component("cfg", 6379)],
        ..Default::default()
    });
    let c = Client::new();
    let get = |path: String| {
        let c = c.clone();
        async move {
            let r = c.get(path).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["errorCode"].as_str().unwrap_or("").to_string())
        }
    };
    let h = sc.http();
    for (path, status, code) in [
        (
            format!("{h}/v1.0/configuration/nope?key=a"),
            400,
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
        ),
        (
            format!("{h}/v1.0-alpha1/configuration/nope/subscribe?key=a"),
            400,
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
        ),
        (
            format!("{h}/v1.0/configuration/nope/x/unsubscribe"),
            400,
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
        ),
        // No --app-port: nowhere to deliver.
        (
            format!("{h}/v1.0/configuration/cfg/subscribe?key=a"),
            500,
            "ERR_APP_CHANNEL_NIL",
        ),
        (
            format!("{h}/v1.0/configuration/cfg/no-such-id/unsubscribe"),
            500,
            "ERR_CONFIGURATION_UNSUBSCRIBE",
        ),
    ] {
        assert_eq!(
            get(path.clone()).await,
            (status, code.to_string()),
            "{path}"
        );
    }
    let r = c
        .post(format!("{h}/v1.0/configuration/cfg?key=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    let mut g = raw(&sc).await;
    let e = g
        .get_configuration(pb::GetConfigurationRequest {
            store_name: "nope".into(),
            keys: vec!["a".into()],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("configuration store nope not found"));
    let e = g
        .subscribe_configuration(pb::SubscribeConfigurationRequest {
            store_name: String::new(),
            keys: vec![],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // No store in the path: no such route.
    assert_eq!(
        get(format!("{h}/v1.0/configuration")).await,
        (404, "ERR_NOT_FOUND".to_string())
    );
    // A field of the wrong protobuf type: refused as undecodable (INTERNAL,
    // as gRPC-Go answers an unmarshal failure), and the sidecar serves on.
    let e = wrong_type_get(&sc).await;
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    assert_eq!(
        get(format!("{h}/v1.0/configuration/nope?key=a")).await.0,
        400
    );

    // No configuration store at all.
    let bare = Sidecar::start(Options {
        resources: vec![spar_tests::memory_component("mem")],
        ..Default::default()
    });
    assert_eq!(
        get(format!("{}/v1.0/configuration/cfg?key=a", bare.http())).await,
        (500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED".to_string())
    );
    let e = raw(&bare)
        .await
        .get_configuration_alpha1(pb::GetConfigurationRequest {
            store_name: "cfg".into(),
            keys: vec![],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
}

/// PostgreSQL without a notify channel: subscribe fails with daprd's code
/// and message; a store whose table is missing fails at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_subscribe_needs_a_channel() {
    let table = unique("cfg").replace('-', "_");
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    spar_tests::create_pg_config_table(&pool, &table, "unused").await;
    let sc = Sidecar::start(Options {
        resources: vec![format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: configuration.postgres\n  version: v1\n  metadata:\n  - name: connectionString\n    value: host=127.0.0.1 user=postgres port=5432 dbname=postgres\n  - name: table\n    value: {table}\n"
        )],
        ..Default::default()
    });
    let e = raw(&sc)
        .await
        .subscribe_configuration(pb::SubscribeConfigurationRequest {
            store_name: "pg".into(),
            keys: vec!["a".into()],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("notifyChannel must be set"), "{e:?}");
    // The request may name the channel instead (daprd's fallback).
    let mut ok = raw(&sc)
        .await
        .subscribe_configuration(pb::SubscribeConfigurationRequest {
            store_name: "pg".into(),
            keys: vec!["a".into()],
            metadata: [("pgNotifyChannel".to_string(), "unused".to_string())].into(),
        })
        .await
        .expect("subscribe with pgNotifyChannel")
        .into_inner();
    let first = ok.message().await.unwrap().expect("first message");
    assert!(!first.id.is_empty());
    drop(ok);
    // Keys daprd's store refuses.
    let e = raw(&sc)
        .await
        .get_configuration(pb::GetConfigurationRequest {
            store_name: "pg".into(),
            keys: vec!["a'b".into()],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    assert!(e.message().contains("invalid key"), "{e:?}");
    drop(sc);
    spar_tests::drop_pg_config_table(&pool, &table).await;
}

/// daprd's start-up check: the table must exist (the store never creates
/// it); `schema.table` is looked up in that schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_table_must_exist() {
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let table = unique("cfg").replace('-', "_");
    spar_tests::create_pg_config_table(&pool, &table, "unused").await;
    let build = |t: &str| {
        spar_components::registry::Registry::default()
            .build_configuration(
                &spar_config::Component::new(
                    "pg",
                    "configuration.postgresql",
                    &[
                        (
                            "connectionString",
                            "host=127.0.0.1 user=postgres port=5432 dbname=postgres",
                        ),
                        ("table", t),
                    ],
                ),
                &Default::default(),
            )
            .expect("build")
    };
    let e = build("no_such_table_here").init().await.unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    build(&format!("public.{table}"))
        .init()
        .await
        .expect("public.table");
    assert!(build(&format!("other.{table}")).init().await.is_err());
    spar_tests::drop_pg_config_table(&pool, &table).await;
}
