//! Dapr's richer error model: the `google.rpc` details daprd attaches to
//! state and pub/sub errors, in the HTTP body's `details` and in gRPC's
//! `grpc-status-details-bin`; plain errors (secrets, invocation) carry none,
//! as daprd's don't.

use std::collections::HashMap;

use dapr::dapr::proto::common::v1::Etag;
use dapr::dapr::proto::runtime::v1 as pb;
use prost::Message;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use spar_tests::{memory_component, unique, Options, Sidecar};

// The wire messages, declared here independently of spar's own .proto files.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(map = "string, string", tag = "3")]
    metadata: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceInfo {
    #[prost(string, tag = "1")]
    resource_type: String,
    #[prost(string, tag = "2")]
    resource_name: String,
    #[prost(string, tag = "3")]
    owner: String,
    #[prost(string, tag = "4")]
    description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FieldViolation {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

/// A gRPC error's details, decoded: the type names in order, and the
/// `ErrorInfo` and `ResourceInfo` when present.
struct Rich {
    types: Vec<String>,
    info: Option<ErrorInfo>,
    resource: Option<ResourceInfo>,
    bad: Option<BadRequest>,
}

fn rich(s: &tonic::Status) -> Rich {
    let st =
        RpcStatus::decode(s.details()).expect("grpc-status-details-bin is a google.rpc.Status");
    assert_eq!(st.code, s.code() as i32);
    assert_eq!(st.message, s.message());
    let mut r = Rich {
        types: vec![],
        info: None,
        resource: None,
        bad: None,
    };
    for d in st.details {
        let name = d
            .type_url
            .strip_prefix("type.googleapis.com/")
            .expect("type URL prefix")
            .to_string();
        match name.as_str() {
            "google.rpc.ErrorInfo" => r.info = Some(ErrorInfo::decode(&*d.value).unwrap()),
            "google.rpc.ResourceInfo" => {
                r.resource = Some(ResourceInfo::decode(&*d.value).unwrap())
            }
            "google.rpc.BadRequest" => r.bad = Some(BadRequest::decode(&*d.value).unwrap()),
            _ => {}
        }
        r.types.push(name);
    }
    r
}

async fn body(r: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    r.json().await.expect("JSON error body")
}

fn types(v: &Value) -> Vec<&str> {
    v["details"]
        .as_array()
        .map(|a| a.iter().map(|d| d["@type"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

async fn raw(sc: &Sidecar) -> pb::dapr_client::DaprClient<tonic::transport::Channel> {
    pb::dapr_client::DaprClient::connect(sc.grpc())
        .await
        .expect("connect")
}

fn bus(scopes: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bus\nspec:\n  type: pubsub.in-memory\n  version: v1\n  metadata:\n  - name: publishingScopes\n    value: \"{scopes}\"\n"
    )
}

#[tokio::test]
async fn state_errors_carry_daprd_details() {
    let sc = Sidecar::start(Options {
        resources: vec![memory_component("mem")],
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());

    // Unknown store: ErrorInfo only, with the app id over HTTP.
    let v = body(
        c.get(format!("{base}/v1.0/state/nope/k"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_STATE_STORE_NOT_FOUND");
    assert_eq!(v["message"], "state store nope is not found");
    assert_eq!(types(&v), ["type.googleapis.com/google.rpc.ErrorInfo"]);
    assert_eq!(v["details"][0]["reason"], "DAPR_STATE_NOT_FOUND");
    assert_eq!(v["details"][0]["domain"], "dapr.io");
    assert_eq!(v["details"][0]["metadata"]["appID"], sc.app_id.as_str());

    // Illegal key: BadRequest, ResourceInfo, ErrorInfo — daprd's order.
    let v = body(
        c.post(format!("{base}/v1.0/state/mem"))
            .body(r#"[{"key":"a||b","value":1}]"#)
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_MALFORMED_REQUEST");
    assert_eq!(
        types(&v),
        [
            "type.googleapis.com/google.rpc.BadRequest",
            "type.googleapis.com/google.rpc.ResourceInfo",
            "type.googleapis.com/google.rpc.ErrorInfo"
        ]
    );
    assert_eq!(v["details"][0]["field_violations"][0]["field"], "a||b");
    assert_eq!(v["details"][1]["resource_type"], "state");
    assert_eq!(v["details"][1]["resource_name"], "mem");
    assert_eq!(v["details"][2]["reason"], "DAPR_STATE_ILLEGAL_KEY");
    assert_eq!(v["details"][2]["metadata"], Value::Null);

    // A query the store can't run: ResourceInfo + DAPR_STATE_QUERY_FAILED.
    let v = body(
        c.post(format!("{base}/v1.0-alpha1/state/mem/query"))
            .body(r#"{"filter":{"XOR":{}}}"#)
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_STATE_QUERY");
    assert_eq!(v["details"][1]["reason"], "DAPR_STATE_QUERY_FAILED");

    // An ETag conflict over HTTP is a plain error in daprd.
    let key = unique("k");
    let save = |etag: Option<&str>| {
        let item = match etag {
            Some(e) => format!(r#"[{{"key":"{key}","value":1,"etag":"{e}"}}]"#),
            None => format!(r#"[{{"key":"{key}","value":1}}]"#),
        };
        c.post(format!("{base}/v1.0/state/mem")).body(item).send()
    };
    assert_eq!(save(None).await.unwrap().status(), StatusCode::NO_CONTENT);
    let etag = c
        .get(format!("{base}/v1.0/state/mem/{key}"))
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(save(None).await.unwrap().status(), StatusCode::NO_CONTENT);
    let v = body(save(Some(&etag)).await.unwrap(), StatusCode::CONFLICT).await;
    assert_eq!(v["errorCode"], "ERR_STATE_SAVE");
    assert!(v.get("details").is_none(), "{v}");

    // gRPC: the same details in grpc-status-details-bin.
    let mut g = raw(&sc).await;
    let e = g
        .get_state(pb::GetStateRequest {
            store_name: "nope".into(),
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let r = rich(&e);
    assert_eq!(r.types, ["google.rpc.ErrorInfo"]);
    let info = r.info.unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("DAPR_STATE_NOT_FOUND", "dapr.io")
    );
    assert!(
        info.metadata.is_empty(),
        "daprd's gRPC lookup adds no app id"
    );

    let e = g
        .get_state(pb::GetStateRequest {
            store_name: "mem".into(),
            key: "a||b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let r = rich(&e);
    assert_eq!(
        r.types,
        [
            "google.rpc.BadRequest",
            "google.rpc.ResourceInfo",
            "google.rpc.ErrorInfo"
        ]
    );
    assert_eq!(r.bad.unwrap().field_violations[0].field, "a||b");
    let res = r.resource.unwrap();
    assert_eq!(
        (res.resource_type.as_str(), res.resource_name.as_str()),
        ("state", "mem")
    );
    assert_eq!(r.info.unwrap().reason, "DAPR_STATE_ILLEGAL_KEY");

    // A store failure over gRPC: ErrorInfo with the error code as reason.
    let e = g
        .save_state(pb::SaveStateRequest {
            store_name: "mem".into(),
            states: vec![dapr::dapr::proto::common::v1::StateItem {
                key: key.clone(),
                value: b"1".to_vec(),
                etag: Some(Etag { value: etag }),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Aborted);
    let r = rich(&e);
    assert_eq!(r.types, ["google.rpc.ErrorInfo"]);
    assert_eq!(r.info.unwrap().reason, "ERR_STATE_SAVE");
}

#[tokio::test]
async fn pubsub_errors_carry_daprd_details() {
    let sc = Sidecar::start(Options {
        app_id: "richapp".into(),
        resources: vec![bus("richapp=allowed")],
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());

    // Unknown pubsub: ErrorInfo with the request's metadata.
    let v = body(
        c.post(format!("{base}/v1.0/publish/nope/t?metadata.x=1"))
            .body("{}")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_PUBSUB_NOT_FOUND");
    assert_eq!(types(&v), ["type.googleapis.com/google.rpc.ErrorInfo"]);
    assert_eq!(v["details"][0]["reason"], "DAPR_PUBSUB_NOT_FOUND");
    assert_eq!(v["details"][0]["metadata"]["x"], "1");

    // A topic outside the app's publishing scopes.
    let v = body(
        c.post(format!("{base}/v1.0/publish/bus/secret"))
            .body("{}")
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_PUBSUB_FORBIDDEN");
    assert_eq!(
        types(&v),
        [
            "type.googleapis.com/google.rpc.ResourceInfo",
            "type.googleapis.com/google.rpc.ErrorInfo"
        ]
    );
    assert_eq!(v["details"][0]["resource_type"], "pubsub");
    assert_eq!(v["details"][0]["resource_name"], "bus");
    assert_eq!(v["details"][1]["reason"], "DAPR_PUBSUB_FORBIDDEN");
    assert_eq!(v["details"][1]["metadata"]["topic"], "secret");

    // A bulk body that isn't a list of entries.
    let v = body(
        c.post(format!("{base}/v1.0-alpha1/publish/bulk/bus/allowed"))
            .body(r#"{"not":"a list"}"#)
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_PUBSUB_EVENTS_SER");
    assert_eq!(v["details"][1]["reason"], "DAPR_PUBSUB_UNMARSHAL_EVENTS");
    assert_eq!(v["details"][1]["metadata"]["appID"], "richapp");

    // gRPC.
    let mut g = raw(&sc).await;
    let e = g
        .publish_event(pb::PublishEventRequest {
            pubsub_name: "nope".into(),
            topic: "t".into(),
            data: b"{}".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let r = rich(&e);
    assert_eq!(r.types, ["google.rpc.ErrorInfo"]);
    assert_eq!(r.info.unwrap().reason, "DAPR_PUBSUB_NOT_FOUND");

    let e = g
        .publish_event(pb::PublishEventRequest {
            pubsub_name: "bus".into(),
            topic: "secret".into(),
            data: b"{}".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let r = rich(&e);
    assert_eq!(r.types, ["google.rpc.ResourceInfo", "google.rpc.ErrorInfo"]);
    assert_eq!(r.resource.unwrap().resource_name, "bus");
    let info = r.info.unwrap();
    assert_eq!(info.reason, "DAPR_PUBSUB_FORBIDDEN");
    assert_eq!(info.metadata["topic"], "secret");
}

#[tokio::test]
async fn secrets_and_invocation_errors_stay_plain() {
    let sc = Sidecar::start(Options {
        resources: vec!["apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: env\nspec:\n  type: secretstores.local.env\n  version: v1\n".into()],
        ..Default::default()
    });
    let (c, base) = (Client::new(), sc.http());

    let v = body(
        c.get(format!("{base}/v1.0/secrets/nope/k"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_SECRET_STORE_NOT_FOUND");
    assert!(v.get("details").is_none(), "{v}");

    // This sidecar has no app: invoking itself fails plainly.
    let r = c
        .post(format!("{base}/v1.0/invoke/{}/method/m", sc.app_id))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let v: Value = r.json().await.unwrap();
    assert!(v["errorCode"].as_str().is_some(), "{v}");
    assert!(v.get("details").is_none(), "{v}");

    let mut g = raw(&sc).await;
    let e = g
        .get_secret(pb::GetSecretRequest {
            store_name: "nope".into(),
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.details().is_empty());
    let e = g
        .invoke_service(pb::InvokeServiceRequest {
            id: sc.app_id.clone(),
            message: Some(dapr::dapr::proto::common::v1::InvokeRequest {
                method: "m".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert!(e.details().is_empty());
}

#[tokio::test]
async fn query_on_a_store_without_it() {
    let redis = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: r\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n";
    let sc = Sidecar::start(Options {
        resources: vec![redis.into()],
        ..Default::default()
    });
    let v = body(
        Client::new()
            .post(format!("{}/v1.0-alpha1/state/r/query", sc.http()))
            .body("{}")
            .send()
            .await
            .unwrap(),
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert_eq!(v["errorCode"], "ERR_STATE_STORE_NOT_SUPPORTED");
    assert_eq!(v["message"], "state store does not support querying");
    assert_eq!(v["details"][0]["resource_name"], "r");
    assert_eq!(
        v["details"][1]["reason"],
        "DAPR_STATE_QUERYING_NOT_SUPPORTED"
    );

    let e = raw(&sc)
        .await
        .query_state_alpha1(pb::QueryStateRequest {
            store_name: "r".into(),
            query: "{}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    assert_eq!(
        rich(&e).info.unwrap().reason,
        "DAPR_STATE_QUERYING_NOT_SUPPORTED"
    );
}
