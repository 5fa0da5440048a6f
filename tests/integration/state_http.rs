//! The state API over HTTP, against SQLite and in-memory stores.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use spar_tests::{get_json, memory_component, sqlite_component, unique, Options, Sidecar};

fn sidecar() -> Sidecar {
    Sidecar::start(Options {
        resources: vec![sqlite_component("sqlite"), memory_component("mem")],
        ..Default::default()
    })
}

const STORES: [&str; 2] = ["sqlite", "mem"];

async fn save(c: &Client, base: &str, store: &str, body: Value) -> reqwest::Response {
    c.post(format!("{base}/v1.0/state/{store}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn round_trip_with_etags() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let key = unique("k");
        let r = save(
            &c,
            &base,
            store,
            json!([{"key": key, "value": {"n": 1, "s": "x"}}]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{store}");
        let r = c
            .get(format!("{base}/v1.0/state/{store}/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"n": 1, "s": "x"}));

        // Matching etag succeeds and changes the etag; the stale one then conflicts.
        let r = save(
            &c,
            &base,
            store,
            json!([{"key": key, "value": 2, "etag": etag}]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = save(
            &c,
            &base,
            store,
            json!([{"key": key, "value": 3, "etag": etag}]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{store}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errorCode"], "ERR_STATE_SAVE");
        // A malformed etag is a 400.
        let r = save(
            &c,
            &base,
            store,
            json!([{"key": key, "value": 3, "etag": "not-a-version"}]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);

        // Delete with a stale If-Match conflicts, then plain delete works.
        let r = c
            .delete(format!("{base}/v1.0/state/{store}/{key}"))
            .header("If-Match", etag.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(
            r.json::<Value>().await.unwrap()["errorCode"],
            "ERR_STATE_DELETE"
        );
        let r = c
            .delete(format!("{base}/v1.0/state/{store}/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = c
            .get(format!("{base}/v1.0/state/{store}/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn first_write_wins() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let key = unique("fw");
        let item =
            |v: i32| json!([{"key": key, "value": v, "options": {"concurrency": "first-write"}}]);
        assert_eq!(
            save(&c, &base, store, item(1)).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            save(&c, &base, store, item(2)).await.status(),
            StatusCode::CONFLICT
        );
        let v: Value = get_json(&c, format!("{base}/v1.0/state/{store}/{key}")).await;
        assert_eq!(v, json!(1));
    }
}

#[tokio::test]
async fn ttl_expiry_reports_expire_time() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let key = unique("ttl");
        let r = save(
            &c,
            &base,
            store,
            json!([{"key": key, "value": "v", "metadata": {"ttlInSeconds": "1"}}]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = c
            .get(format!("{base}/v1.0/state/{store}/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let exp = r.headers()["metadata.ttlExpireTime"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(exp.ends_with('Z') && exp.contains('T'), "{exp}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = c
                .get(format!("{base}/v1.0/state/{store}/{key}"))
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::NO_CONTENT {
                break;
            }
            assert!(Instant::now() < deadline, "{store}: key did not expire");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn bulk_get_mixes_found_and_missing() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let (a, b, missing) = (unique("a"), unique("b"), unique("m"));
        save(
            &c,
            &base,
            store,
            json!([{"key": a, "value": "A"}, {"key": b, "value": {"b": true}}]),
        )
        .await;
        let items: Vec<Value> = c
            .post(format!("{base}/v1.0/state/{store}/bulk"))
            .json(&json!({"keys": [a, b, missing], "parallelism": 2}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(items.len(), 3);
        let by_key = |k: &str| items.iter().find(|i| i["key"] == k).unwrap().clone();
        assert_eq!(by_key(&a)["data"], "A");
        assert_eq!(by_key(&b)["data"], json!({"b": true}));
        assert!(by_key(&a)["etag"].is_string());
        assert!(by_key(&missing).get("data").is_none());
    }
}

#[tokio::test]
async fn transaction_is_atomic() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let (a, b, gone) = (unique("a"), unique("b"), unique("gone"));
        save(&c, &base, store, json!([{"key": gone, "value": 0}])).await;
        let r = c
            .post(format!("{base}/v1.0/state/{store}/transaction"))
            .json(&json!({"operations": [
                {"operation": "upsert", "request": {"key": a, "value": 1}},
                {"operation": "delete", "request": {"key": gone}},
            ]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{store}");
        let get = |k: String| {
            let c = c.clone();
            let base = base.clone();
            async move {
                c.get(format!("{base}/v1.0/state/{store}/{k}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(get(a.clone()).await, StatusCode::OK);
        assert_eq!(get(gone.clone()).await, StatusCode::NO_CONTENT);

        // One failing op (stale etag) → nothing of the transaction is written.
        let r = c
            .post(format!("{base}/v1.0/state/{store}/transaction"))
            .json(&json!({"operations": [
                {"operation": "upsert", "request": {"key": b, "value": 1}},
                {"operation": "upsert", "request": {"key": a, "value": 2, "etag": "999999"}},
            ]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT, "{store}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["errorCode"],
            "ERR_STATE_TRANSACTION"
        );
        assert_eq!(
            get(b.clone()).await,
            StatusCode::NO_CONTENT,
            "{store}: partial write"
        );
        let v: Value = get_json(&c, format!("{base}/v1.0/state/{store}/{a}")).await;
        assert_eq!(v, json!(1));
    }
}

#[tokio::test]
async fn query_filter_sort_and_paging() {
    let sc = sidecar();
    let (c, base) = (Client::new(), sc.http());
    for store in STORES {
        let tag = unique("q");
        let people = [
            ("p1", "CA", 30),
            ("p2", "WA", 25),
            ("p3", "CA", 41),
            ("p4", "CA", 19),
            ("p5", "NY", 50),
        ];
        let items: Vec<Value> = people
            .iter()
            .map(|(k, st, age)| json!({"key": format!("{tag}-{k}"), "value": {"tag": tag, "state": st, "age": age}}))
            .collect();
        assert_eq!(
            save(&c, &base, store, Value::Array(items)).await.status(),
            StatusCode::NO_CONTENT
        );

        let query = |q: Value| {
            let c = c.clone();
            let base = base.clone();
            async move {
                let r = c
                    .post(format!("{base}/v1.0-alpha1/state/{store}/query"))
                    .json(&q)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.json::<Value>().await.unwrap()
            }
        };
        let r = query(json!({
            "filter": {"AND": [{"EQ": {"tag": tag}}, {"EQ": {"state": "CA"}}]},
            "sort": [{"key": "age", "order": "DESC"}]
        }))
        .await;
        let ages: Vec<i64> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["data"]["age"].as_i64().unwrap())
            .collect();
        assert_eq!(ages, vec![41, 30, 19], "{store}");
        assert!(
            r["results"][0]["key"].as_str().unwrap().starts_with(&tag),
            "prefix stripped"
        );

        // Page through IN results two at a time, seeing each exactly once.
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..5 {
            let mut q = json!({
                "filter": {"AND": [{"EQ": {"tag": tag}}, {"IN": {"state": ["CA", "NY"]}}]},
                "sort": [{"key": "age"}],
                "page": {"limit": 2}
            });
            if let Some(t) = &token {
                q["page"]["token"] = json!(t);
            }
            let r = query(q).await;
            for x in r["results"].as_array().unwrap() {
                seen.push(x["data"]["age"].as_i64().unwrap());
            }
            match r.get("token").and_then(Value::as_str) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, vec![19, 30, 41, 50], "{store}");
    }
}

/// Two app ids sharing one SQLite file: isolated by default (`appid`
/// prefix), shared with `keyPrefix: name`, raw keys with `keyPrefix: none`.
#[tokio::test]
async fn key_prefix_strategies_isolate_or_share() {
    let db = tempfile::tempdir().unwrap();
    let comp = |name: &str, prefix: Option<&str>| {
        let mut y = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n",
            db.path().join("shared.db").display()
        );
        if let Some(p) = prefix {
            y.push_str(&format!("  - name: keyPrefix\n    value: {p}\n"));
        }
        y
    };
    let start = |app: &str| {
        Sidecar::start(Options {
            app_id: app.into(),
            resources: vec![
                comp("byapp", None),
                comp("byname", Some("name")),
                comp("raw", Some("none")),
            ],
            ..Default::default()
        })
    };
    let (a, b) = (start(&unique("a")), start(&unique("b")));
    let c = Client::new();
    for store in ["byapp", "byname", "raw"] {
        let key = unique(store);
        save(
            &c,
            &a.http(),
            store,
            json!([{"key": key, "value": "from-a"}]),
        )
        .await;
        let r = c
            .get(format!("{}/v1.0/state/{store}/{key}", b.http()))
            .send()
            .await
            .unwrap();
        let visible = r.status() == StatusCode::OK;
        assert_eq!(visible, store != "byapp", "{store}");
    }
    // With `none`, a key may contain the separator; with a prefix it may not.
    let r = save(&c, &a.http(), "raw", json!([{"key": "x||y", "value": 1}])).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = save(&c, &a.http(), "byapp", json!([{"key": "x||y", "value": 1}])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
