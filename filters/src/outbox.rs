//! The transactional outbox, as daprd runs it: a state store with
//! `outboxPublishPubsub` and `outboxPublishTopic` publishes every upsert of
//! a transaction as a CloudEvent once the transaction has committed.
//!
//! Two phases, so nothing is published for a transaction that failed and
//! nothing is lost when a broker is down after the commit:
//! 1. before the transaction runs, each upsert's event goes to an internal
//!    topic (`{namespace}{appId}{topic}outbox` on `outboxPubsub`) with id
//!    `outbox-{uuid}`, and a marker item of that key is added to the
//!    transaction;
//! 2. the sidecar's internal subscription (`proxy/src/subscriber/outbox.rs`)
//!    receives it, waits until the marker exists (the transaction
//!    committed), publishes the event to the user's topic, then deletes
//!    the marker.
//!
//! The names, the marker and the event's fields are daprd's, so spar and
//! daprd sidecars of one app can share the internal topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use spar_components::pubsub::{Message, PubSubError};
use spar_components::state::{Concurrency, Consistency, Operation, SetRequest};

use crate::handlers::pubsub::PubSubComponent;
use crate::handlers::state::{SaveItem, TxOp};
use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::ApiError;

/// Component metadata names (matched exactly, as daprd does).
const PUBLISH_PUBSUB: &str = "outboxPublishPubsub";
const PUBLISH_TOPIC: &str = "outboxPublishTopic";
const OUTBOX_PUBSUB: &str = "outboxPubsub";
const DISCARD_WHEN_MISSING: &str = "outboxDiscardWhenMissingState";
/// Operation metadata: this upsert is not saved, its value is what the
/// event for the same key carries.
pub const PROJECTION: &str = "outbox.projection";
/// The marker's value; daprd writes the string "0" (stored as JSON).
pub const MARKER_VALUE: &[u8] = b"\"0\"";

/// One state store's outbox settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Where the events go: `outboxPublishPubsub` / `outboxPublishTopic`.
    pub publish_pubsub: String,
    pub publish_topic: String,
    /// Carries the internal messages: `outboxPubsub`, default the publish one.
    pub outbox_pubsub: String,
    /// `outboxDiscardWhenMissingState`: drop an internal message whose
    /// marker never shows up instead of leaving it to the broker to redeliver.
    pub discard_when_missing_state: bool,
}

/// The outbox settings of every state store that has them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outboxes {
    by_store: HashMap<String, Arc<OutboxConfig>>,
    /// daprd's namespace: `NAMESPACE`, `default` when unset.
    namespace: String,
}

/// kit's `IsTruthy`.
pub fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "t" | "on" | "1"
    )
}

impl Outboxes {
    /// From the state store components: an outbox needs both the publish
    /// pubsub and topic, as daprd requires.
    pub fn from_components(components: &[spar_config::Component]) -> Self {
        let mut by_store = HashMap::new();
        for c in components.iter().filter(|c| c.kind_prefix() == "state") {
            let get = |k: &str| {
                c.spec
                    .metadata
                    .iter()
                    .rev()
                    .find(|m| m.name == k)
                    .and_then(|m| m.value.as_ref())
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default()
            };
            let (publish_pubsub, publish_topic) = (get(PUBLISH_PUBSUB), get(PUBLISH_TOPIC));
            if publish_pubsub.is_empty() || publish_topic.is_empty() {
                continue;
            }
            let outbox_pubsub = Some(get(OUTBOX_PUBSUB))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| publish_pubsub.clone());
            by_store.insert(
                c.name().to_string(),
                Arc::new(OutboxConfig {
                    publish_pubsub,
                    publish_topic,
                    outbox_pubsub,
                    discard_when_missing_state: truthy(&get(DISCARD_WHEN_MISSING)),
                }),
            );
        }
        Outboxes {
            by_store,
            namespace: std::env::var("NAMESPACE").unwrap_or_else(|_| "default".into()),
        }
    }

    pub fn get(&self, store: &str) -> Option<&Arc<OutboxConfig>> {
        if self.by_store.is_empty() {
            return None;
        }
        self.by_store.get(store)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<OutboxConfig>)> {
        self.by_store.iter()
    }

    /// The internal topic for a store's outbox: daprd's
    /// `{namespace}{appId}{publishTopic}outbox`.
    pub fn internal_topic(&self, app_id: &str, c: &OutboxConfig) -> String {
        format!("{}{app_id}{}outbox", self.namespace, c.publish_topic)
    }
}

/// How the front end handed over the values: HTTP's are JSON text, gRPC's
/// raw bytes. daprd's event data differs accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueForm {
    Json,
    Raw,
}

/// Takes the projections (`outbox.projection` true) out of a transaction:
/// they are never saved. Returns them by key, the first one per key.
pub fn take_projections(ops: &mut Vec<TxOp>) -> HashMap<String, SaveItem> {
    let mut out = HashMap::new();
    let mut i = 0;
    while i < ops.len() {
        let is_projection = matches!(&ops[i], TxOp::Upsert(it)
            if it.metadata.get(PROJECTION).is_some_and(|v| truthy(v)));
        if !is_projection {
            i += 1;
            continue;
        }
        if let TxOp::Upsert(it) = ops.remove(i) {
            out.entry(it.key.clone()).or_insert(it);
        }
    }
    out
}

/// The event data and content type for one upsert (its projection's value
/// when there is one), as daprd derives them: the `contentType` metadata;
/// a JSON string's text unless the content type is JSON.
fn payload(it: &SaveItem, form: ValueForm) -> (Vec<u8>, Option<String>) {
    let ct = it.metadata.get("contentType").filter(|c| !c.is_empty());
    let data = match form {
        ValueForm::Raw => it.value.clone(),
        ValueForm::Json if ct.is_some_and(|c| c.eq_ignore_ascii_case("application/json")) => {
            it.value.clone()
        }
        // daprd formats the decoded value with `%v`: a string as its text.
        // Other JSON stays JSON text (Go would print its own map syntax).
        ValueForm::Json => match serde_json::from_slice::<Value>(&it.value) {
            Ok(Value::String(s)) => s.into_bytes(),
            _ => it.value.clone(),
        },
    };
    (data, ct.cloned())
}

fn base_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The internal CloudEvent, built as components-contrib's
/// `NewCloudEventsEnvelope` builds it, then the operation's metadata
/// copied in as attributes (all but `data` and `id`).
#[allow(clippy::too_many_arguments)]
pub fn internal_event(
    id: &str,
    source: &str,
    outbox_pubsub: &str,
    content_type: Option<&str>,
    data: &[u8],
    traceparent: &str,
    tracestate: &str,
    metadata: &HashMap<String, String>,
) -> Value {
    let ct = content_type.unwrap_or(crate::cloudevent::DEFAULT_CONTENT_TYPE);
    let mut ev = Map::new();
    let base = base_type(ct);
    if base == "application/json" {
        let v = serde_json::from_slice::<Value>(data)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(data)));
        ev.insert("data".into(), v);
    } else if base == "application/octet-stream" || base == "application/cloudevents+protobuf" {
        ev.insert(
            "data_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(data)),
        );
    } else {
        ev.insert("data".into(), json!(String::from_utf8_lossy(data)));
    }
    ev.insert("id".into(), json!(id));
    ev.insert("specversion".into(), json!("1.0"));
    ev.insert("datacontenttype".into(), json!(ct));
    ev.insert("source".into(), json!(source));
    ev.insert("type".into(), json!(crate::cloudevent::EVENT_TYPE));
    ev.insert("topic".into(), json!(""));
    ev.insert("pubsubname".into(), json!(outbox_pubsub));
    ev.insert("traceid".into(), json!(traceparent));
    ev.insert("traceparent".into(), json!(""));
    ev.insert("tracestate".into(), json!(tracestate));
    ev.insert(
        "time".into(),
        json!(crate::cloudevent::rfc3339(SystemTime::now())),
    );
    for (k, v) in metadata {
        if k != "data" && k != "id" {
            ev.insert(k.clone(), json!(v));
        }
    }
    Value::Object(ev)
}

/// What one upsert's event carries, taken before the transaction's items
/// are consumed: its data (its projection's, when there is one), content
/// type and the operation's own metadata.
pub struct EventParts {
    data: Vec<u8>,
    content_type: Option<String>,
    metadata: HashMap<String, String>,
}

/// The events of a transaction's upserts, in order (deletes publish none).
pub fn event_parts(
    ops: &[TxOp],
    projections: &HashMap<String, SaveItem>,
    form: ValueForm,
) -> Vec<EventParts> {
    ops.iter()
        .filter_map(|op| match op {
            TxOp::Upsert(it) => {
                let (data, content_type) = payload(projections.get(&it.key).unwrap_or(it), form);
                Some(EventParts {
                    data,
                    content_type,
                    metadata: it.metadata.clone(),
                })
            }
            TxOp::Delete(_) => None,
        })
        .collect()
}

/// Publishes one internal event per upsert (phase one) and returns the
/// marker items to add to the transaction. Fails with `ERR_PUBLISH_OUTBOX`
/// as daprd does; the transaction must then not run.
pub async fn publish_internal(
    live: &Live,
    app_id: &str,
    c: &OutboxConfig,
    events: Vec<EventParts>,
    traceparent: &str,
    tracestate: &str,
) -> Result<Vec<Operation>, ApiError> {
    let fail = |reason: String| ApiError::PubSubOutbox {
        app_id: app_id.to_string(),
        reason,
    };
    let topic = live.outbox.internal_topic(app_id, c);
    let mut markers = Vec::with_capacity(events.len());
    for e in events {
        let id = format!("outbox-{}", uuid::Uuid::new_v4());
        let ev = internal_event(
            &id,
            app_id,
            &c.outbox_pubsub,
            e.content_type.as_deref(),
            &e.data,
            traceparent,
            tracestate,
            &e.metadata,
        );
        let msg = Message {
            topic: topic.clone(),
            data: Bytes::from(serde_json::to_vec(&ev).map_err(|e| fail(e.to_string()))?),
            metadata: HashMap::new(),
        };
        publish(live, app_id, &c.outbox_pubsub, &msg)
            .await
            .map_err(fail)?;
        markers.push(Operation::Upsert(SetRequest {
            key: id,
            value: MARKER_VALUE.to_vec(),
            etag: None,
            concurrency: Concurrency::LastWrite,
            consistency: Consistency::Eventual,
            ttl: None,
            metadata: HashMap::new(),
        }));
    }
    Ok(markers)
}

/// A publish as daprd's publisher adapter makes it: the component, its
/// publishing scopes, its outbound resiliency policy. Errors are daprd's
/// messages.
pub async fn publish(live: &Live, app_id: &str, pubsub: &str, msg: &Message) -> Result<(), String> {
    let c: &Arc<PubSubComponent> = live
        .pubsubs
        .get(pubsub)
        .ok_or_else(|| format!("pubsub '{pubsub}' not found"))?;
    if !c.scopes.may_publish(&msg.topic) {
        return Err(ApiError::PubSubForbidden {
            pubsub: pubsub.to_string(),
            topic: msg.topic.clone(),
            app_id: app_id.to_string(),
        }
        .to_string());
    }
    let sent = match live.resiliency.component_outbound(pubsub) {
        None => c.broker.publish(msg).await,
        Some(policy) => policy
            .run(
                || c.broker.publish(msg),
                |r| match r {
                    Err(PubSubError::Backend(_)) => Verdict::Failed(None),
                    _ => Verdict::Success,
                },
            )
            .await
            .map_err(|r| match r {
                Refused::Failed(e) => e,
                Refused::Timeout(d) => {
                    PubSubError::Backend(format!("timeout after {d:?} (resiliency policy)"))
                }
                Refused::BreakerOpen => PubSubError::Backend("circuit breaker is open".into()),
            }),
    };
    sent.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(y: &str) -> spar_config::Component {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn settings_from_the_state_component() {
        let with = comp(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: s\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: outboxPublishPubsub\n    value: ps\n  - name: outboxPublishTopic\n    value: orders\n  - name: outboxDiscardWhenMissingState\n    value: \"true\"\n",
        );
        let without_topic = comp(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: t\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: outboxPublishPubsub\n    value: ps\n",
        );
        let o = Outboxes::from_components(&[with, without_topic]);
        let c = o.get("s").unwrap().clone();
        assert_eq!(c.outbox_pubsub, "ps", "defaults to the publish pubsub");
        assert!(c.discard_when_missing_state);
        assert!(o.get("t").is_none(), "both publish settings are needed");
        let o = Outboxes {
            namespace: "ns".into(),
            ..o
        };
        assert_eq!(o.internal_topic("app", &c), "nsappordersoutbox");
    }

    fn item(key: &str, value: &[u8], md: &[(&str, &str)]) -> SaveItem {
        SaveItem {
            key: key.into(),
            value: value.to_vec(),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn projections_leave_the_transaction() {
        let mut ops = vec![
            TxOp::Upsert(item("a", b"1", &[])),
            TxOp::Upsert(item("a", b"2", &[(PROJECTION, "true")])),
            TxOp::Upsert(item("a", b"3", &[(PROJECTION, "yes")])),
            TxOp::Upsert(item("b", b"4", &[(PROJECTION, "false")])),
        ];
        let p = take_projections(&mut ops);
        assert_eq!(ops.len(), 2);
        assert_eq!(p["a"].value, b"2", "the first projection of a key");
    }

    #[test]
    fn payloads_as_daprd_derives_them() {
        let (d, ct) = payload(&item("k", br#""2""#, &[]), ValueForm::Json);
        assert_eq!((d.as_slice(), ct), (&b"2"[..], None));
        let (d, ct) = payload(
            &item("k", br#"{"a":1}"#, &[("contentType", "application/json")]),
            ValueForm::Json,
        );
        assert_eq!(d, br#"{"a":1}"#);
        assert_eq!(ct.as_deref(), Some("application/json"));
        let (d, _) = payload(&item("k", br#""2""#, &[]), ValueForm::Raw);
        assert_eq!(d, br#""2""#);
    }

    #[test]
    fn internal_event_fields() {
        let md: HashMap<String, String> = [("data", "x"), ("id", "y"), ("my.attr", "v")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = internal_event("outbox-1", "app", "ps", None, b"2", "00-tp", "ts", &md);
        assert_eq!(e["id"], "outbox-1");
        assert_eq!(e["data"], "2");
        assert_eq!(e["datacontenttype"], "text/plain");
        assert_eq!(e["source"], "app");
        assert_eq!(e["type"], "com.dapr.event.sent");
        assert_eq!(e["topic"], "");
        assert_eq!(e["pubsubname"], "ps");
        assert_eq!(e["traceid"], "00-tp");
        assert_eq!(e["traceparent"], "");
        assert_eq!(e["my.attr"], "v");
        let e = internal_event(
            "i",
            "a",
            "p",
            Some("application/json"),
            br#"{"n":1}"#,
            "",
            "",
            &HashMap::new(),
        );
        assert_eq!(e["data"], json!({"n": 1}));
        let e = internal_event(
            "i",
            "a",
            "p",
            Some("application/octet-stream"),
            &[0, 255],
            "",
            "",
            &HashMap::new(),
        );
        assert_eq!(e["data_base64"], "AP8=");
    }
}
