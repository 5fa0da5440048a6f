//! Request shapes official SDKs send daprd, decoded as daprd decodes them
//! (issue 20 §7): JSON field names in any case and `null` for absent
//! objects (Go's encoding/json), `metadata.*` query parameters on every
//! item, Redis' answer to an ETag on a missing key, and the `ACTOR`
//! capability. The bodies are the JavaScript SDK's, sent with reqwest.

use std::time::{Duration, SystemTime};

use dapr::client::ClientOptions;
use dapr::dapr::proto::common::v1::{state_options, Etag, StateOptions};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{get_json, memory_component, sqlite_component, unique, Options, Sidecar};

fn redis_component(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n"
    )
}

const BUS: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bus\nspec:\n  type: pubsub.in-memory\n  version: v1\n";

fn sidecar() -> Sidecar {
    Sidecar::start(Options {
        resources: vec![
            memory_component("mem"),
            sqlite_component("sqlite"),
            redis_component("redis"),
            BUS.into(),
        ],
        ..Default::default()
    })
}

const STORES: [&str; 3] = ["mem", "sqlite", "redis"];

async fn status(r: reqwest::RequestBuilder) -> (StatusCode, String) {
    let r = r.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn bulk_publish_with_the_js_sdks_entry_id() {
    let sc = sidecar();
    let c = Client::new();
    // @dapr/dapr's bulk publish entries: `entryID`.
    let body = json!([
        {"entryID": "1", "event": {"n": 1}, "contentType": "application/json"},
        {"entryID": "2", "event": "plain", "contentType": "text/plain"},
    ]);
    let (s, b) = status(
        c.post(format!("{}/v1.0-alpha1/publish/bulk/bus/t", sc.http()))
            .json(&body),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    // Names in any case, and `null` metadata.
    let body = json!([{"ENTRYID": "1", "Event": {"n": 1}, "CONTENTTYPE": "application/json", "metadata": null}]);
    let (s, b) = status(
        c.post(format!("{}/v1.0-alpha1/publish/bulk/bus/t", sc.http()))
            .json(&body),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
}

#[tokio::test]
async fn null_and_any_case_in_state_bodies() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let (a, b) = (unique("a"), unique("b"));
        // The JS SDK's transaction with no metadata: `"metadata": null`.
        let tx = json!({
            "operations": [
                {"operation": "upsert", "request": {"key": a, "value": "x", "metadata": null, "options": null}},
                {"operation": "upsert", "request": {"Key": b, "Value": {"y": 1}}},
            ],
            "metadata": null,
        });
        let (s, body) = status(
            c.post(format!("{base}/v1.0/state/{store}/transaction"))
                .json(&tx),
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{store}: {body}");
        let v = get_json(&c, format!("{base}/v1.0/state/{store}/{b}")).await;
        assert_eq!(v, json!({"y": 1}), "{store}");

        // Save: names in any case, null metadata, options and etag.
        let save =
            json!([{"KEY": a, "VALUE": "z", "Metadata": null, "Options": null, "etag": null}]);
        let (s, body) = status(c.post(format!("{base}/v1.0/state/{store}")).json(&save)).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{store}: {body}");
        assert_eq!(
            get_json(&c, format!("{base}/v1.0/state/{store}/{a}")).await,
            json!("z")
        );

        // Bulk get: `Keys`, null metadata.
        let bulk = json!({"Keys": [a, b], "metadata": null});
        let r = c
            .post(format!("{base}/v1.0/state/{store}/bulk"))
            .json(&bulk)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{store}");
        let items: Vec<Value> = r.json().await.unwrap();
        assert_eq!(items.len(), 2, "{store}: {items:?}");
        assert_eq!(items[0]["data"], json!("z"));
    }
    // A null body is an empty list, as daprd's decoder leaves it.
    let (s, _) = status(c.post(format!("{base}/v1.0/state/mem")).body("null")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Still a 400 for what isn't JSON, or a wrong type.
    let (s, _) = status(
        c.post(format!("{base}/v1.0/state/mem"))
            .body("[{\"key\":1}]"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// `metadata.ttlExpireTime` of a key, as seconds from now.
async fn expires_in(c: &Client, url: String) -> u64 {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t = r.headers()["metadata.ttlExpireTime"]
        .to_str()
        .unwrap()
        .to_string();
    let at = humantime_parse(&t);
    at.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// RFC 3339 `YYYY-MM-DDTHH:MM:SSZ` to a time (UTC, whole seconds).
fn humantime_parse(s: &str) -> SystemTime {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, mo, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (h, mi, se) = (n(11, 13), n(14, 16), n(17, 19));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    SystemTime::UNIX_EPOCH + Duration::from_secs((days * 86400 + h * 3600 + mi * 60 + se) as u64)
}

#[tokio::test]
async fn query_metadata_applies_to_every_saved_item() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let keys: Vec<String> = (0..3).map(|_| unique("ttl")).collect();
        // The third item asks for a long TTL of its own: daprd copies the
        // query parameters over the item's metadata.
        let items = json!([
            {"key": keys[0], "value": 1},
            {"key": keys[1], "value": 2, "metadata": {"other": "x"}},
            {"key": keys[2], "value": 3, "metadata": {"ttlInSeconds": "100000"}},
        ]);
        let (s, body) = status(
            c.post(format!(
                "{base}/v1.0/state/{store}?metadata.ttlInSeconds=300"
            ))
            .json(&items),
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{store}: {body}");
        for k in &keys {
            let left = expires_in(&c, format!("{base}/v1.0/state/{store}/{k}")).await;
            assert!((1..=300).contains(&left), "{store} {k}: expires in {left}s");
        }

        // The same for every operation of a transaction.
        let k = unique("ttltx");
        let tx = json!({"operations": [
            {"operation": "upsert", "request": {"key": k, "value": 1, "metadata": {"ttlInSeconds": "100000"}}},
        ]});
        let (s, body) = status(
            c.post(format!(
                "{base}/v1.0/state/{store}/transaction?metadata.ttlInSeconds=300"
            ))
            .json(&tx),
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{store}: {body}");
        let left = expires_in(&c, format!("{base}/v1.0/state/{store}/{k}")).await;
        assert!((1..=300).contains(&left), "{store} {k}: expires in {left}s");
    }
}

#[tokio::test]
async fn redis_first_write_with_an_etag_for_a_missing_key() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    // The JS SDK's state tests: first-write with an ETag on a new key succeeds on Redis.
    let k = unique("fw");
    let item =
        json!([{"key": k, "value": "v", "etag": "1", "options": {"concurrency": "first-write"}}]);
    let (s, body) = status(c.post(format!("{base}/v1.0/state/redis")).json(&item)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        get_json(&c, format!("{base}/v1.0/state/redis/{k}")).await,
        json!("v")
    );
    // Once it exists, a wrong ETag is still a conflict.
    let stale =
        json!([{"key": k, "value": "w", "etag": "999", "options": {"concurrency": "first-write"}}]);
    let (s, _) = status(c.post(format!("{base}/v1.0/state/redis")).json(&stale)).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // gRPC, with the Rust SDK.
    let mut g = dapr::Client::<dapr::client::TonicClientWithAuth>::from_options(
        ClientOptions::new().with_address(sc.grpc()),
    )
    .await
    .unwrap();
    let k = unique("fwg");
    g.save_state(
        "redis",
        &k,
        b"g".to_vec(),
        Some(Etag { value: "3".into() }),
        None,
        Some(StateOptions {
            concurrency: state_options::StateConcurrency::ConcurrencyFirstWrite as i32,
            consistency: 0,
        }),
    )
    .await
    .expect("first-write with an etag on a missing key");
    assert_eq!(g.get_state("redis", &k, None).await.unwrap().data, b"g");
}

#[tokio::test]
async fn metadata_reports_the_actor_capability() {
    let sc = sidecar();
    let c = Client::new();
    let m = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    for store in STORES {
        let comp = m["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == store)
            .unwrap_or_else(|| panic!("{store} in {m}"));
        let caps: Vec<&str> = comp["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(caps.contains(&"ACTOR"), "{store}: {caps:?}");
    }
    let bus = m["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "bus")
        .unwrap();
    assert!(!bus["capabilities"].to_string().contains("ACTOR"));
}
