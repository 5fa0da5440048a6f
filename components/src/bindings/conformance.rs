//! The output binding conformance suite: every output binding answers the
//! same way to what all of them share — its listed operations, an unknown
//! operation refused, and, for a store-like binding (one listing `create`,
//! `get` and `delete`), a create/get/delete round trip keyed by `key_meta`
//! (`fileName`, `key`). `prefix` keeps each run's keys apart on shared
//! backends.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ops, Binding, InvokeRequest};

pub async fn run_all(b: Arc<dyn Binding>, key_meta: Option<&str>, prefix: &str) {
    b.init().await.expect("init");
    assert!(
        !b.operations().is_empty(),
        "an output binding lists its operations"
    );
    unknown_operation_refused(&*b).await;
    if let Some(k) = key_meta {
        let has = |op| b.operations().contains(&op);
        if has(ops::CREATE) && has(ops::GET) && has(ops::DELETE) {
            round_trip(&*b, k, &format!("{prefix}-rt")).await;
        }
    }
}

fn req(op: &str, data: &[u8], md: &[(&str, &str)]) -> InvokeRequest {
    InvokeRequest {
        operation: op.into(),
        data: data.to_vec(),
        metadata: md
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

pub async fn unknown_operation_refused(b: &dyn Binding) {
    assert!(
        b.invoke(req("no-such-operation", b"", &[])).await.is_err(),
        "an unknown operation is an error"
    );
}

pub async fn round_trip(b: &dyn Binding, key_meta: &str, key: &str) {
    let md = [(key_meta, key)];
    b.invoke(req(ops::CREATE, br#""conformance value""#, &md))
        .await
        .expect("create");
    let got = b
        .invoke(req(ops::GET, b"", &md))
        .await
        .expect("get")
        .expect("get answers data");
    assert!(
        got.data == b"conformance value" || got.data == br#""conformance value""#,
        "get returns what create stored, got {:?}",
        String::from_utf8_lossy(&got.data)
    );
    b.invoke(req(ops::DELETE, b"", &md)).await.expect("delete");
    let after = b.invoke(req(ops::GET, b"", &md)).await;
    assert!(
        after.is_err()
            || after
                .as_ref()
                .is_ok_and(|r| r.as_ref().is_none_or(|r| r.data.is_empty())),
        "nothing left after delete"
    );
}
