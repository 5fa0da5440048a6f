//! The state store conformance suite: the same cases for every `StateStore`.
//!
//! Each case is a public async fn taking the store and a unique key prefix,
//! so a shared, persistent backend (Redis, PostgreSQL) can run it beside
//! other data: cases only touch keys under their prefix and never assume an
//! empty store. A feature the store doesn't advertise is checked to fail with
//! `NotSupported` instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::query::Query;
use super::*;

type Store = Arc<dyn StateStore>;

fn set(key: &str, value: &[u8]) -> SetRequest {
    SetRequest {
        key: key.to_string(),
        value: value.to_vec(),
        ..Default::default()
    }
}

async fn get(s: &Store, key: &str) -> Option<Item> {
    s.get(&GetRequest::new(key)).await.expect("get")
}

async fn etag_of(s: &Store, key: &str) -> String {
    get(s, key)
        .await
        .and_then(|i| i.etag)
        .expect("item with etag")
}

/// Runs every case, each under its own sub-prefix.
pub async fn run_all(store: Store, prefix: &str) {
    round_trip(store.clone(), &format!("{prefix}-rt")).await;
    etags(store.clone(), &format!("{prefix}-etag")).await;
    deletes(store.clone(), &format!("{prefix}-del")).await;
    first_write(store.clone(), &format!("{prefix}-fw")).await;
    concurrent_first_write(store.clone(), &format!("{prefix}-cfw")).await;
    bulk_get(store.clone(), &format!("{prefix}-bulk")).await;
    ttl(store.clone(), &format!("{prefix}-ttl")).await;
    transactions(store.clone(), &format!("{prefix}-tx")).await;
    query(store, &format!("{prefix}-q")).await;
}

pub async fn round_trip(s: Store, p: &str) {
    let bin: Vec<u8> = (0u8..=255).collect();
    s.set(&set(&format!("{p}-bin"), &bin)).await.unwrap();
    assert_eq!(
        get(&s, &format!("{p}-bin")).await.unwrap().data,
        bin,
        "binary bytes survive"
    );
    let doc = br#"{"a":1,"b":"x"}"#;
    s.set(&set(&format!("{p}-json"), doc)).await.unwrap();
    assert_eq!(get(&s, &format!("{p}-json")).await.unwrap().data, doc);
    s.set(&set(&format!("{p}-empty"), b"")).await.unwrap();
    assert_eq!(get(&s, &format!("{p}-empty")).await.unwrap().data, b"");
    assert!(get(&s, &format!("{p}-missing")).await.is_none());
}

pub async fn etags(s: Store, p: &str) {
    if !s.features().etag {
        return;
    }
    let k = format!("{p}-k");
    s.set(&set(&k, b"1")).await.unwrap();
    let e1 = etag_of(&s, &k).await;
    s.set(&set(&k, b"2")).await.unwrap();
    let e2 = etag_of(&s, &k).await;
    assert_ne!(e1, e2, "etag changes on every write");
    let mut r = set(&k, b"3");
    r.etag = Some(e2.clone());
    s.set(&r).await.expect("matching etag");
    let mut stale = set(&k, b"4");
    stale.etag = Some(e2);
    assert!(matches!(
        s.set(&stale).await,
        Err(StateError::EtagMismatch(_))
    ));
    let mut garbage = set(&k, b"4");
    garbage.etag = Some("not an etag".into());
    assert!(matches!(
        s.set(&garbage).await,
        Err(StateError::EtagInvalid(_))
    ));
    assert_eq!(
        get(&s, &k).await.unwrap().data,
        b"3",
        "failed writes change nothing"
    );
    let mut on_missing = set(&format!("{p}-missing"), b"x");
    on_missing.etag = Some(e1);
    if s.missing_key_etag_conflicts() {
        assert!(matches!(
            s.set(&on_missing).await,
            Err(StateError::EtagMismatch(_))
        ));
    } else {
        s.set(&on_missing)
            .await
            .expect("an etag on a missing key is ignored");
        assert_eq!(get(&s, &format!("{p}-missing")).await.unwrap().data, b"x");
        let mut fw = set(&format!("{p}-missing-fw"), b"y");
        fw.etag = Some("7".into());
        fw.concurrency = Concurrency::FirstWrite;
        s.set(&fw)
            .await
            .expect("first-write with an etag on a missing key");
    }
}

pub async fn deletes(s: Store, p: &str) {
    let k = format!("{p}-k");
    s.delete(&DeleteRequest {
        key: format!("{p}-never"),
        ..Default::default()
    })
    .await
    .expect("deleting a missing key is fine");
    s.set(&set(&k, b"v")).await.unwrap();
    if s.features().etag {
        let e = etag_of(&s, &k).await;
        s.set(&set(&k, b"v2")).await.unwrap();
        let stale = DeleteRequest {
            key: k.clone(),
            etag: Some(e),
            ..Default::default()
        };
        assert!(matches!(
            s.delete(&stale).await,
            Err(StateError::EtagMismatch(_))
        ));
        assert!(get(&s, &k).await.is_some());
        let cur = DeleteRequest {
            key: k.clone(),
            etag: Some(etag_of(&s, &k).await),
            ..Default::default()
        };
        s.delete(&cur).await.unwrap();
        let on_missing = DeleteRequest {
            key: k.clone(),
            etag: Some("1".into()),
            ..Default::default()
        };
        if s.missing_key_etag_conflicts() {
            assert!(matches!(
                s.delete(&on_missing).await,
                Err(StateError::EtagMismatch(_))
            ));
        } else {
            s.delete(&on_missing)
                .await
                .expect("an etag on a missing key is ignored");
        }
    } else {
        s.delete(&DeleteRequest {
            key: k.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert!(get(&s, &k).await.is_none());
}

pub async fn first_write(s: Store, p: &str) {
    if !s.features().etag {
        return;
    }
    let k = format!("{p}-k");
    let mut fw = set(&k, b"first");
    fw.concurrency = Concurrency::FirstWrite;
    s.set(&fw).await.expect("first-write on a new key");
    fw.value = b"second".to_vec();
    assert!(matches!(s.set(&fw).await, Err(StateError::EtagMismatch(_))));
    fw.etag = Some(etag_of(&s, &k).await);
    s.set(&fw).await.expect("first-write with the current etag");
    assert_eq!(get(&s, &k).await.unwrap().data, b"second");
}

pub async fn concurrent_first_write(s: Store, p: &str) {
    if !s.features().etag {
        return;
    }
    let k = format!("{p}-k");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            let mut r = set(&k, format!("writer-{i}").as_bytes());
            r.concurrency = Concurrency::FirstWrite;
            tokio::spawn(async move { s.set(&r).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StateError::EtagMismatch(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent first-write wins");
}

pub async fn bulk_get(s: Store, p: &str) {
    let (a, b, m) = (format!("{p}-a"), format!("{p}-b"), format!("{p}-missing"));
    s.set(&set(&a, b"A")).await.unwrap();
    s.set(&set(&b, b"B")).await.unwrap();
    let items = s
        .bulk_get(&[
            GetRequest::new(&a),
            GetRequest::new(&m),
            GetRequest::new(&b),
        ])
        .await
        .unwrap();
    assert_eq!(items.len(), 3);
    let find = |k: &str| {
        items
            .iter()
            .find(|i| i.key == k)
            .expect("every key answered")
    };
    assert_eq!(find(&a).item.as_ref().unwrap().data, b"A");
    assert_eq!(find(&b).item.as_ref().unwrap().data, b"B");
    assert!(find(&m).item.is_none() && find(&m).error.is_none());
}

pub async fn ttl(s: Store, p: &str) {
    if !s.features().ttl {
        return;
    }
    let k = format!("{p}-k");
    let mut r = set(&k, b"short");
    r.ttl = Some(Ttl::Seconds(1));
    s.set(&r).await.unwrap();
    let item = get(&s, &k).await.expect("visible before expiry");
    assert!(item.expires_at.is_some(), "expiry reported");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&s, &k).await.is_some() {
        assert!(Instant::now() < deadline, "key did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An expired key counts as missing for first-write.
    let mut fw = set(&k, b"again");
    fw.concurrency = Concurrency::FirstWrite;
    s.set(&fw).await.expect("first-write after expiry");

    let k2 = format!("{p}-never");
    let mut r = set(&k2, b"v");
    r.ttl = Some(Ttl::Seconds(3600));
    s.set(&r).await.unwrap();
    assert!(get(&s, &k2).await.unwrap().expires_at.is_some());
    let mut r = set(&k2, b"v2");
    r.ttl = Some(Ttl::Never);
    s.set(&r).await.unwrap();
    assert!(
        get(&s, &k2).await.unwrap().expires_at.is_none(),
        "Ttl::Never clears expiry"
    );
}

pub async fn transactions(s: Store, p: &str) {
    let (a, b, c) = (format!("{p}-a"), format!("{p}-b"), format!("{p}-c"));
    if !s.features().transactional {
        assert!(matches!(
            s.transact(&[]).await,
            Err(StateError::NotSupported(_))
        ));
        return;
    }
    s.set(&set(&b, b"old")).await.unwrap();
    s.transact(&[
        Operation::Upsert(set(&a, b"1")),
        Operation::Delete(DeleteRequest {
            key: b.clone(),
            ..Default::default()
        }),
    ])
    .await
    .unwrap();
    assert_eq!(get(&s, &a).await.unwrap().data, b"1");
    assert!(get(&s, &b).await.is_none());

    // One stale ETag → nothing written, including ops before it.
    let mut stale = set(&a, b"2");
    stale.etag = Some("999999".into());
    let r = s
        .transact(&[Operation::Upsert(set(&c, b"3")), Operation::Upsert(stale)])
        .await;
    assert!(matches!(r, Err(StateError::EtagMismatch(_))), "{r:?}");
    assert!(get(&s, &c).await.is_none(), "partial transaction written");
    assert_eq!(get(&s, &a).await.unwrap().data, b"1");
}

pub async fn query(s: Store, p: &str) {
    let q = |j: serde_json::Value| Query::parse(j.to_string().as_bytes()).unwrap();
    if !s.features().query {
        assert!(matches!(
            s.query(p, &q(json!({}))).await,
            Err(StateError::NotSupported(_))
        ));
        return;
    }
    let people = [
        ("p1", "CA", 30, "ann"),
        ("p2", "WA", 25, "bob"),
        ("p3", "CA", 41, "cy"),
        ("p4", "CA", 19, "dee"),
        ("p5", "NY", 50, "eve"),
    ];
    for (k, st, age, name) in people {
        let v = json!({"person": {"name": name, "age": age}, "state": st});
        s.set(&set(&format!("{p}||{k}"), v.to_string().as_bytes()))
            .await
            .unwrap();
    }
    s.set(&set(&format!("{p}||raw"), b"not json"))
        .await
        .unwrap();
    // A key outside the prefix must never show up.
    s.set(&set(
        &format!("{p}x||p9"),
        json!({"state": "CA"}).to_string().as_bytes(),
    ))
    .await
    .unwrap();
    let prefix = format!("{p}||");
    let names = |r: &QueryResponse| -> Vec<String> {
        r.results
            .iter()
            .map(|x| {
                serde_json::from_slice::<serde_json::Value>(&x.data).unwrap()["person"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let run = |query: Query| {
        let s = s.clone();
        let prefix = prefix.clone();
        async move { s.query(&prefix, &query).await.unwrap() }
    };

    let r = run(q(
        json!({"filter": {"EQ": {"state": "CA"}}, "sort": [{"key": "person.age"}]}),
    ))
    .await;
    assert_eq!(names(&r), ["dee", "ann", "cy"]);
    assert!(r
        .results
        .iter()
        .all(|x| x.key.starts_with(&prefix) && x.etag.is_some()));
    let r = run(q(json!({"filter": {"IN": {"state": ["WA", "NY"]}}, "sort": [{"key": "person.name", "order": "DESC"}]}))).await;
    assert_eq!(names(&r), ["eve", "bob"]);
    let r = run(q(json!({"filter": {"OR": [{"EQ": {"person.name": "ann"}}, {"AND": [{"EQ": {"state": "CA"}}, {"GT": {"person.age": 40}}]}]}, "sort": [{"key": "person.age"}]}))).await;
    assert_eq!(names(&r), ["ann", "cy"]);
    let r = run(q(json!({"filter": {"AND": [{"NEQ": {"state": "CA"}}, {"LTE": {"person.age": 50}}, {"GTE": {"person.age": 25}}, {"LT": {"person.age": 50}}]}}))).await;
    assert_eq!(names(&r), ["bob"]);
    let r = run(q(json!({"filter": {"EQ": {"person.age": "30"}}}))).await;
    assert!(r.results.is_empty(), "a string never equals a number");

    // Paging walks every match exactly once, in order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut j = json!({"sort": [{"key": "person.age", "order": "DESC"}], "page": {"limit": 2}});
        if let Some(t) = &token {
            j["page"]["token"] = json!(t);
        }
        let r = run(q(j)).await;
        seen.extend(names(&r));
        match r.token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, ["eve", "cy", "ann", "bob", "dee"]);
}
