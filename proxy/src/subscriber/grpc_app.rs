//! Delivery to a gRPC app (`--app-protocol grpc`), as daprd: each event is
//! an `AppCallback/OnTopicEvent` call whose answer is SUCCESS / RETRY /
//! DROP; UNIMPLEMENTED is DROP, any other error RETRY. Bulk subscriptions
//! call `OnBulkTopicEvent`, falling back to `AppCallbackAlpha`'s
//! `OnBulkTopicEventAlpha1` for older SDKs. Programmatic subscriptions come
//! from `ListTopicSubscriptions`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use spar_components::pubsub::Ack;
use spar_filters::{cloudevent, Runtime};
use spar_proto::runtime::{
    self as pb, app_callback_alpha_client::AppCallbackAlphaClient,
    app_callback_client::AppCallbackClient,
};
use tonic::transport::Channel;

use super::delivery::{forwarded_metadata, Event, Sink};
use super::Sub;

const APP_TIMEOUT: Duration = Duration::from_secs(60);

/// The CloudEvent attributes that have fields of their own in
/// `TopicEventRequest`; every other attribute travels in `extensions`.
const OWN_FIELDS: [&str; 7] = [
    "id",
    "source",
    "datacontenttype",
    "type",
    "specversion",
    "data",
    "data_base64",
];

fn text(ev: &Value, k: &str) -> String {
    ev.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn to_proto(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(to_proto).collect(),
        }),
        Value::Object(_) => Kind::StructValue(extensions(v, &[])),
    };
    prost_types::Value { kind: Some(kind) }
}

fn extensions(ev: &Value, skip: &[&str]) -> prost_types::Struct {
    prost_types::Struct {
        fields: ev
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), to_proto(v)))
            .collect(),
    }
}

/// The gRPC form of an event (also what streaming subscribers receive).
pub fn topic_event(sub: &Sub, ev: &Event) -> Result<pb::TopicEventRequest, String> {
    let ce = &ev.ce;
    Ok(pb::TopicEventRequest {
        id: text(ce, "id"),
        source: text(ce, "source"),
        r#type: text(ce, "type"),
        spec_version: text(ce, "specversion"),
        data_content_type: text(ce, "datacontenttype"),
        data: cloudevent::data_bytes(ce)?,
        // The concrete topic, also under a wildcard subscription.
        topic: ev.msg.topic.clone(),
        pubsub_name: sub.pubsub.clone(),
        path: ev.path.clone(),
        extensions: Some(extensions(ce, &OWN_FIELDS)),
    })
}

fn ack_of(status: i32) -> Ack {
    use pb::topic_event_response::TopicEventResponseStatus as S;
    match S::try_from(status) {
        Ok(S::Success) => Ack::Success,
        Ok(S::Drop) => Ack::Drop,
        Ok(S::Retry) | Err(_) => Ack::Retry,
    }
}

fn ack_of_error(sub: &Sub, e: &tonic::Status) -> Ack {
    if e.code() == tonic::Code::Unimplemented {
        tracing::warn!(topic = %sub.topic, "the app does not implement topic events: dropping");
        Ack::Drop
    } else {
        tracing::warn!(topic = %sub.topic, "delivery to the app failed: {e}");
        Ack::Retry
    }
}

pub struct GrpcApp {
    rt: Arc<Runtime>,
    channel: Channel,
    /// The app answered UNIMPLEMENTED to `OnBulkTopicEvent`: use the alpha.
    bulk_alpha: AtomicBool,
}

impl GrpcApp {
    pub fn new(rt: Arc<Runtime>, addr: std::net::SocketAddr) -> Result<Self, String> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(GrpcApp {
            rt,
            channel,
            bulk_alpha: AtomicBool::new(false),
        })
    }

    fn request<T>(&self, msg: T, trace: Option<&str>) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(APP_TIMEOUT);
        let md = req.metadata_mut();
        if let Some(t) = self.rt.app_token.as_deref().and_then(|t| t.parse().ok()) {
            md.insert("dapr-api-token", t);
        }
        if let Some(t) = trace.and_then(|t| t.parse().ok()) {
            md.insert("traceparent", t);
        }
        req
    }

    /// A bulk call, with `pubsubname` as gRPC metadata as daprd sends it.
    fn bulk_request(
        &self,
        msg: pb::TopicEventBulkRequest,
        trace: Option<&str>,
    ) -> tonic::Request<pb::TopicEventBulkRequest> {
        let pubsub = msg.pubsub_name.parse().ok();
        let mut req = self.request(msg, trace);
        if let Some(v) = pubsub {
            req.metadata_mut().insert("pubsubname", v);
        }
        req
    }

    /// The app's `ListTopicSubscriptions`.
    pub async fn subscriptions(&self) -> Vec<Sub> {
        let mut c = AppCallbackClient::new(self.channel.clone());
        let mut req = tonic::Request::new(());
        req.set_timeout(Duration::from_secs(5));
        let started = Instant::now();
        let r = c.list_topic_subscriptions(req).await;
        self.record(
            "/dapr.proto.runtime.v1.AppCallback/ListTopicSubscriptions",
            &r,
            started,
        );
        match r {
            Ok(r) => r
                .into_inner()
                .subscriptions
                .iter()
                .filter_map(|t| {
                    Sub::from_grpc(t)
                        .map_err(|e| tracing::error!("ignoring subscription from the app: {e}"))
                        .ok()
                })
                .collect(),
            Err(e) if e.code() == tonic::Code::Unimplemented => Vec::new(),
            Err(e) => {
                tracing::warn!("ListTopicSubscriptions failed: {e}");
                Vec::new()
            }
        }
    }

    async fn bulk_call(
        &self,
        req: pb::TopicEventBulkRequest,
        trace: Option<&str>,
    ) -> Result<pb::TopicEventBulkResponse, tonic::Status> {
        if !self.bulk_alpha.load(Ordering::Relaxed) {
            let mut c = AppCallbackClient::new(self.channel.clone());
            let started = Instant::now();
            let r = c
                .on_bulk_topic_event(self.bulk_request(req.clone(), trace))
                .await;
            self.record(
                "/dapr.proto.runtime.v1.AppCallback/OnBulkTopicEvent",
                &r,
                started,
            );
            match r {
                Err(e) if e.code() == tonic::Code::Unimplemented => {
                    self.bulk_alpha.store(true, Ordering::Relaxed);
                }
                r => return r.map(tonic::Response::into_inner),
            }
        }
        let mut c = AppCallbackAlphaClient::new(self.channel.clone());
        let started = Instant::now();
        let r = c
            .on_bulk_topic_event_alpha1(self.bulk_request(req, trace))
            .await;
        self.record(
            "/dapr.proto.runtime.v1.AppCallbackAlpha/OnBulkTopicEventAlpha1",
            &r,
            started,
        );
        r.map(tonic::Response::into_inner)
    }

    /// daprd's gRPC client metrics for a call to the app.
    fn record<T>(&self, method: &str, r: &Result<T, tonic::Status>, started: Instant) {
        if let Some(m) = &self.rt.metrics {
            let code = r.as_ref().map_or_else(|e| e.code() as i32, |_| 0);
            m.grpc_client(method, code, started);
        }
    }
}

#[async_trait]
impl Sink for GrpcApp {
    async fn deliver(&self, sub: &Sub, ev: &Event) -> Ack {
        let msg = match topic_event(sub, ev) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(topic = %sub.topic, "unreadable event: {e}");
                return Ack::Retry;
            }
        };
        // As daprd: the message's metadata and `pubsubname` as gRPC metadata.
        let mut req = self.request(msg, ev.traceparent());
        let md = req.metadata_mut();
        for (k, v) in forwarded_metadata(&ev.msg) {
            if let (Ok(k), Ok(v)) = (
                tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
                v.parse(),
            ) {
                md.insert(k, v);
            }
        }
        if let Ok(v) = sub.pubsub.parse() {
            md.insert("pubsubname", v);
        }
        let mut c = AppCallbackClient::new(self.channel.clone());
        let started = Instant::now();
        let r = c.on_topic_event(req).await;
        self.record(
            "/dapr.proto.runtime.v1.AppCallback/OnTopicEvent",
            &r,
            started,
        );
        match r {
            Ok(r) => ack_of(r.into_inner().status),
            Err(e) => ack_of_error(sub, &e),
        }
    }

    async fn deliver_bulk(&self, sub: &Sub, evs: &[&Event]) -> Vec<Ack> {
        let Some(first) = evs.first() else {
            return Vec::new();
        };
        let ids: Vec<String> = evs
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let mut entries = Vec::with_capacity(evs.len());
        for (ev, id) in evs.iter().zip(&ids) {
            let metadata = ev.msg.metadata.clone().into_iter().collect();
            if sub.raw_payload {
                // As daprd: the broker's bytes, not a CloudEvent.
                entries.push(pb::TopicEventBulkRequestEntry {
                    entry_id: id.clone(),
                    content_type: "application/octet-stream".into(),
                    metadata,
                    event: Some(pb::topic_event_bulk_request_entry::Event::Bytes(
                        ev.msg.data.to_vec(),
                    )),
                });
                continue;
            }
            let ce = &ev.ce;
            let data = match cloudevent::data_bytes(ce) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(topic = %sub.topic, "unreadable event: {e}");
                    return vec![Ack::Retry; evs.len()];
                }
            };
            entries.push(pb::TopicEventBulkRequestEntry {
                entry_id: id.clone(),
                content_type: "application/cloudevents+json".into(),
                metadata,
                event: Some(pb::topic_event_bulk_request_entry::Event::CloudEvent(
                    pb::TopicEventCeRequest {
                        id: text(ce, "id"),
                        source: text(ce, "source"),
                        r#type: text(ce, "type"),
                        spec_version: text(ce, "specversion"),
                        data_content_type: text(ce, "datacontenttype"),
                        data,
                        extensions: Some(extensions(ce, &OWN_FIELDS)),
                    },
                )),
            });
        }
        let req = pb::TopicEventBulkRequest {
            id: uuid::Uuid::new_v4().to_string(),
            entries,
            metadata: [("pubsubName".to_string(), sub.pubsub.clone())].into(),
            topic: sub.topic.clone(),
            pubsub_name: sub.pubsub.clone(),
            r#type: "com.dapr.event.sent.bulk".into(),
            path: first.path.clone(),
        };
        match self.bulk_call(req, first.traceparent()).await {
            Ok(r) => {
                let mut acks = vec![Ack::Retry; evs.len()];
                for s in r.statuses {
                    if let Some(a) = ids
                        .iter()
                        .position(|x| *x == s.entry_id)
                        .and_then(|i| acks.get_mut(i))
                    {
                        *a = ack_of(s.status);
                    }
                }
                acks
            }
            Err(e) => vec![ack_of_error(sub, &e); evs.len()],
        }
    }
}
