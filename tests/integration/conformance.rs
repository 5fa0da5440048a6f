//! The state conformance suite against every embedded store. Later stores
//! (Redis, PostgreSQL, MySQL) join with one line each.

use std::sync::Arc;

use spar_components::state::{conformance, memory, StateStore};
use spar_tests::unique;

#[tokio::test]
async fn in_memory() {
    let store: Arc<dyn StateStore> = Arc::new(memory::MemoryStore::new());
    conformance::run_all(store, &unique("conf")).await;
}

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        spar_components::state::sqlite::SqliteStore::open(&dir.path().join("c.db")).unwrap();
    conformance::run_all(Arc::new(store), &unique("conf")).await;
}

/// Against the real Redis on 127.0.0.1:6379, under a unique key prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis() {
    let store = spar_components::registry::Registry::default()
        .build_state(
            &component("state.redis", &[("redisHost", "127.0.0.1:6379")]),
            &Default::default(),
        )
        .expect("redis store");
    conformance::run_all(store, &unique("conf")).await;
}

/// A component definition as YAML would give it.
fn component(ty: &str, meta: &[(&str, &str)]) -> spar_config::Component {
    spar_config::Component::new("conf", ty, meta)
}

/// Against the real PostgreSQL on 127.0.0.1:5432, in a table of its own
/// that is dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql() {
    let table = unique("conf").replace('-', "_");
    let conn = "host=127.0.0.1 user=postgres port=5432 dbname=postgres";
    let store = state_store(
        "state.postgresql",
        &[
            ("connectionString", conn),
            ("tableName", &table),
            ("timeout", "10s"),
        ],
    );
    let prefix = unique("conf");
    let result = tokio::spawn(async move { conformance::run_all(store, &prefix).await }).await;
    if let Ok(pool) = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
        drop_tables(
            &pool,
            &[format!("\"{table}\""), format!("\"{table}_metadata\"")],
        )
        .await;
    }
    result.unwrap();
}

/// Against the real MariaDB on 127.0.0.1:3306 (database `test`), in a table
/// of its own that is dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql() {
    let table = unique("conf").replace('-', "_");
    let store = state_store(
        "state.mysql",
        &[
            ("connectionString", "root:@tcp(127.0.0.1:3306)/test"),
            ("schemaName", "test"),
            ("tableName", &table),
            ("timeoutInSeconds", "10"),
        ],
    );
    let prefix = unique("conf");
    let result = tokio::spawn(async move { conformance::run_all(store, &prefix).await }).await;
    if let Ok(pool) = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/test").await {
        drop_tables(
            &pool,
            &[format!("`{table}`"), format!("`{table}_metadata`")],
        )
        .await;
    }
    result.unwrap();
}

/// A state store built from its YAML, as the sidecar builds it.
fn state_store(ty: &str, meta: &[(&str, &str)]) -> Arc<dyn StateStore> {
    spar_components::registry::Registry::default()
        .build_state(&component(ty, meta), &Default::default())
        .unwrap_or_else(|e| panic!("{ty}: {e}"))
}

async fn drop_tables<DB: sqlx::Database>(pool: &sqlx::Pool<DB>, tables: &[String])
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    use sqlx::Executor;
    for t in tables {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {t}")))
            .await;
    }
}

/// The pub/sub conformance suite: in-memory broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_in_memory() {
    let b = spar_components::registry::Registry::default()
        .build_pubsub(&component("pubsub.in-memory", &[]), &Default::default())
        .expect("in-memory broker");
    spar_components::pubsub::conformance::run_all(b, &unique("conf")).await;
}

/// The pub/sub conformance suite against the real Redis (Streams), on
/// topics of its own that are deleted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_redis() {
    let b = spar_components::registry::Registry::default()
        .build_pubsub(
            &component(
                "pubsub.redis",
                &[
                    ("redisHost", "127.0.0.1:6379"),
                    ("processingTimeout", "1s"),
                    ("redeliverInterval", "300ms"),
                ],
            ),
            &Default::default(),
        )
        .expect("redis broker");
    let prefix = unique("conf");
    spar_components::pubsub::conformance::run_all(b, &prefix).await;
    spar_tests::delete_redis_keys(&format!("{prefix}*")).await;
}

/// The pub/sub conformance suite against the real NATS JetStream; its
/// streams (one per topic) are deleted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_jetstream() {
    let b = spar_components::registry::Registry::default()
        .build_pubsub(
            &component(
                "pubsub.jetstream",
                &[("natsURL", "nats://127.0.0.1:4222"), ("ackWait", "2s")],
            ),
            &Default::default(),
        )
        .expect("jetstream broker");
    let prefix = unique("conf");
    spar_components::pubsub::conformance::run_all(b, &prefix).await;
    spar_tests::delete_jetstream_streams(&prefix).await;
}

/// The pub/sub conformance suite against the real RabbitMQ: durable queues
/// and persistent messages (the durability case needs them), RETRY
/// requeued; its exchanges and queues are deleted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_rabbitmq() {
    let b = spar_components::registry::Registry::default()
        .build_pubsub(
            &component(
                "pubsub.rabbitmq",
                &[
                    ("connectionString", "amqp://guest:guest@127.0.0.1:5672"),
                    ("durable", "true"),
                    ("deletedWhenUnused", "false"),
                    ("deliveryMode", "2"),
                    ("requeueInFailure", "true"),
                ],
            ),
            &Default::default(),
        )
        .expect("rabbitmq broker");
    let prefix = unique("conf");
    spar_components::pubsub::conformance::run_all(b, &prefix).await;
    spar_tests::delete_rabbitmq(&prefix).await;
}

/// The pub/sub conformance suite against the real Mosquitto (MQTT 3.1.1,
/// QoS 1, persistent sessions); the sessions it left are cleared afterwards
/// (each case has consumer groups, so sessions, of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_mqtt3() {
    let b = spar_components::registry::Registry::default()
        .build_pubsub(
            &component("pubsub.mqtt3", &[("url", "tcp://127.0.0.1:1883")]),
            &Default::default(),
        )
        .expect("mqtt broker");
    let prefix = unique("conf");
    let groups = spar_components::pubsub::conformance::consumer_groups(&prefix);
    spar_components::pubsub::conformance::run_all(b, &prefix).await;
    spar_tests::clear_mqtt_sessions(&groups).await;
}

/// The configuration conformance suite against the real Redis, on keys of
/// its own that are deleted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configuration_redis() {
    use spar_components::configuration::conformance;
    let store = spar_components::registry::Registry::default()
        .build_configuration(
            &component("configuration.redis", &[("redisHost", "127.0.0.1:6379")]),
            &Default::default(),
        )
        .expect("redis configuration store");
    let w = spar_tests::RedisWriter::connect("redis://127.0.0.1:6379").await;
    let prefix = unique("conf");
    conformance::run_all(store, &w, &prefix, false).await;
    spar_tests::delete_redis_keys(&format!("{prefix}*")).await;
}

/// Against the real PostgreSQL, in a table (daprd's layout, with its
/// trigger) of its own that is dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configuration_postgresql() {
    use spar_components::configuration::conformance;
    let table = unique("conf").replace('-', "_");
    let channel = format!("{table}_ch");
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .expect("postgres");
    spar_tests::create_pg_config_table(&pool, &table, &channel).await;
    let store = spar_components::registry::Registry::default()
        .build_configuration(
            &component(
                "configuration.postgresql",
                &[
                    (
                        "connectionString",
                        "host=127.0.0.1 user=postgres port=5432 dbname=postgres",
                    ),
                    ("table", &table),
                    ("notifyChannel", &channel),
                ],
            ),
            &Default::default(),
        )
        .expect("postgres configuration store");
    let w = spar_tests::PgWriter {
        pool: pool.clone(),
        table: table.clone(),
    };
    // daprd's PostgreSQL store takes keys of letters, digits, `.`, `/`, `_`.
    let prefix = unique("conf").replace('-', "_");
    let result =
        tokio::spawn(async move { conformance::run_all(store, &w, &prefix, true).await }).await;
    spar_tests::drop_pg_config_table(&pool, &table).await;
    result.unwrap();
}

/// Against a SQLite file, written by another connection as `sqlite3` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configuration_sqlite() {
    use spar_components::configuration::conformance;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let store = spar_components::registry::Registry::default()
        .build_configuration(
            &component(
                "configuration.sqlite",
                &[("connectionString", &path.display().to_string())],
            ),
            &Default::default(),
        )
        .expect("sqlite configuration store");
    store.init().await.expect("init");
    let w = spar_tests::SqliteWriter {
        path,
        table: "configuration".into(),
    };
    conformance::run_all(store, &w, &unique("conf"), true).await;
}

/// The lock conformance suite against each lock store; Redis is the real
/// one on 127.0.0.1:6379 (resource ids under a unique prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_stores() {
    use spar_components::lock::conformance as lock_conformance;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db").display().to_string();
    let registry = spar_components::registry::Registry::default();
    for (ty, meta) in [
        ("lock.redis", vec![("redisHost", "127.0.0.1:6379")]),
        ("lock.sqlite", vec![("connectionString", db.as_str())]),
        ("lock.in-memory", vec![]),
    ] {
        let store = registry
            .build_lock(&component(ty, &meta), &Default::default())
            .unwrap_or_else(|e| panic!("{ty}: {e}"));
        lock_conformance::run_all(store, &unique(ty)).await;
    }
}

/// The lock conformance suite against the real PostgreSQL on
/// 127.0.0.1:5432, in a table of its own that is dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_postgresql() {
    let table = unique("lockconf").replace('-', "_");
    let store = spar_components::registry::Registry::default()
        .build_lock(
            &component(
                "lock.postgresql",
                &[
                    (
                        "connectionString",
                        "host=127.0.0.1 user=postgres port=5432 dbname=postgres",
                    ),
                    ("tableName", &table),
                    ("timeout", "10s"),
                ],
            ),
            &Default::default(),
        )
        .expect("postgresql lock store");
    let prefix = unique("pg");
    let result =
        tokio::spawn(
            async move { spar_components::lock::conformance::run_all(store, &prefix).await },
        )
        .await;
    if let Ok(pool) = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
        drop_tables(&pool, &[format!("\"{table}\"")]).await;
    }
    result.unwrap();
}

/// The conversation conformance suite against the echo and against
/// `conversation.openai` talking to the chat-completions double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_components() {
    use spar_components::conversation::conformance as conv_conformance;
    let (port, _double) = crate::conversation::openai_double().await;
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let registry = spar_components::registry::Registry::default();
    for (ty, meta) in [
        ("conversation.echo", vec![]),
        (
            "conversation.openai",
            vec![("endpoint", endpoint.as_str()), ("key", "test-key")],
        ),
    ] {
        let c = registry
            .build_conversation(&component(ty, &meta), &Default::default())
            .unwrap_or_else(|e| panic!("{ty}: {e}"));
        conv_conformance::run_all(c).await;
    }
}

/// The crypto conformance suite: `crypto.dapr.localstorage` over a folder
/// of the fixture keys (PEM files and a base64 symmetric key).
#[tokio::test]
async fn crypto_localstorage() {
    use spar_components::crypto::conformance as fx;
    let dir = tempfile::tempdir().unwrap();
    let names = fx::Names {
        rsa: "rsa-private.pem",
        ec: "ec-p256.pem",
        ed25519: "ed25519.pem",
        symmetric: "symmetric-256",
        missing: "missing.pem",
    };
    for (name, body) in [
        (names.rsa, fx::RSA_PRIVATE_PEM),
        (names.ec, fx::EC_P256_PEM),
        (names.ed25519, fx::ED25519_PEM),
        (names.symmetric, fx::SYMMETRIC_256_B64),
    ] {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let p = spar_components::registry::Registry::default()
        .build_crypto(
            &component(
                "crypto.dapr.localstorage",
                &[("path", dir.path().to_str().unwrap())],
            ),
            &Default::default(),
        )
        .expect("localstorage");
    fx::run_all(p, names).await;
}

/// `crypto.dapr.jwks` with the fixture keys as a JWKS: inline (and
/// base64), from a file, and from an HTTP URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_jwks() {
    use base64::Engine as _;
    use spar_components::crypto::conformance as fx;
    let names = fx::Names {
        rsa: "rsa",
        ec: "ec",
        ed25519: "ed",
        symmetric: "sym",
        missing: "missing",
    };
    let set = fx::jwks_json(&names);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, &set).unwrap();
    let served = set.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app =
            axum::Router::new().route("/jwks", axum::routing::get(move || async move { served }));
        axum::serve(listener, app).await.unwrap();
    });
    let b64 = base64::engine::general_purpose::STANDARD.encode(&set);
    for jwks in [
        set.as_str(),
        b64.as_str(),
        file.to_str().unwrap(),
        url.as_str(),
    ] {
        let p = spar_components::registry::Registry::default()
            .build_crypto(
                &component("crypto.dapr.jwks", &[("jwks", jwks)]),
                &Default::default(),
            )
            .expect("jwks");
        fx::run_all(p, names).await;
    }
}

/// The output binding conformance suite against each output binding:
/// (type, metadata, the metadata key naming an item for the round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_bindings() {
    use spar_components::bindings::conformance as binding_conformance;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files").display().to_string();
    let registry = spar_components::registry::Registry::default();
    for (ty, meta, key) in [
        (
            "bindings.localstorage",
            vec![("rootPath", root.as_str())],
            Some("fileName"),
        ),
        (
            "bindings.redis",
            vec![("redisHost", "127.0.0.1:6379")],
            Some("key"),
        ),
        ("bindings.http", vec![("url", "http://127.0.0.1:9/")], None),
        (
            "bindings.postgresql",
            vec![(
                "connectionString",
                "host=127.0.0.1 user=postgres port=5432 dbname=postgres",
            )],
            None,
        ),
        (
            "bindings.mysql",
            vec![("connectionString", "root:@tcp(127.0.0.1:3306)/test")],
            None,
        ),
        ("bindings.cron", vec![("schedule", "@every 1h")], None),
        (
            "bindings.mqtt3",
            vec![
                ("url", "tcp://127.0.0.1:1883"),
                ("topic", "spar-conformance"),
            ],
            None,
        ),
        (
            "bindings.rabbitmq",
            vec![
                ("host", "amqp://guest:guest@127.0.0.1:5672"),
                ("queueName", "spar-conformance"),
                ("deleteWhenUnused", "true"),
            ],
            None,
        ),
    ] {
        let b = registry
            .build_binding(&component(ty, &meta), &Default::default())
            .unwrap_or_else(|e| panic!("{ty}: {e}"));
        binding_conformance::run_all(b, key, &unique(ty)).await;
    }
}
