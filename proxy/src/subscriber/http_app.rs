//! Delivery to an HTTP app, as daprd: a POST of the CloudEvent
//! (`application/cloudevents+json`) to the route; 2xx with `{"status":
//! "SUCCESS" | "RETRY" | "DROP"}` (an empty or non-JSON body is SUCCESS),
//! 404 is DROP, anything else RETRY. Bulk subscriptions POST one JSON
//! envelope of entries and read one status per entry back. Programmatic
//! subscriptions come from `GET /dapr/subscribe`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Value};
use spar_components::pubsub::{Ack, Message};
use spar_filters::Runtime;

use super::delivery::{forwarded_metadata, Event, Sink};
use super::sub::field;
use super::Sub;

const APP_TIMEOUT: Duration = Duration::from_secs(60);
const BULK_EVENT_TYPE: &str = "com.dapr.event.sent.bulk";

pub struct HttpApp {
    rt: Arc<Runtime>,
    client: reqwest::Client,
    base: String,
}

fn status_of(v: &Value) -> Ack {
    match v.as_str().map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("SUCCESS") => Ack::Success,
        Some("DROP") => Ack::Drop,
        Some("RETRY") => Ack::Retry,
        Some(other) => {
            tracing::warn!(status = %other, "unknown status from the app: retrying");
            Ack::Retry
        }
    }
}

impl HttpApp {
    pub fn new(rt: Arc<Runtime>, addr: std::net::SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        HttpApp {
            rt,
            client,
            base: format!("http://{addr}"),
        }
    }

    /// POSTs to the app; `None` when there was no answer or it was not 2xx
    /// (the status says which).
    async fn post(
        &self,
        sub: &Sub,
        path: &str,
        body: bytes::Bytes,
        content_type: &str,
        trace: Option<&str>,
        msg: Option<&Message>,
    ) -> Result<bytes::Bytes, Ack> {
        let mut req = self
            .client
            .post(format!("{}/{}", self.base, path.trim_start_matches('/')))
            .timeout(APP_TIMEOUT);
        for (k, v) in msg.into_iter().flat_map(forwarded_metadata) {
            if let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) {
                req = req.header(k, v);
            }
        }
        let mut req = req
            .header("content-type", content_type)
            .header("pubsubname", &sub.pubsub)
            .body(body);
        if let Some(t) = trace {
            req = req.header("traceparent", t);
        }
        if let Some(t) = &self.rt.app_token {
            req = req.header("dapr-api-token", t);
        }
        let resp = req.send().await.map_err(|e| {
            tracing::warn!(topic = %sub.topic, "delivery to the app failed: {e}");
            Ack::Retry
        })?;
        match resp.status().as_u16() {
            404 => {
                tracing::error!(topic = %sub.topic, path, "the app answered 404: dropping");
                Err(Ack::Drop)
            }
            200..=299 => Ok(resp.bytes().await.unwrap_or_default()),
            _ => Err(Ack::Retry),
        }
    }

    /// The app's `GET /dapr/subscribe`.
    pub async fn subscriptions(&self) -> Vec<Sub> {
        let resp = match self
            .client
            .get(format!("{}/dapr/subscribe", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r,
            Ok(_) => return Vec::new(),
            Err(e) => {
                tracing::warn!("GET /dapr/subscribe failed: {e}");
                return Vec::new();
            }
        };
        let list: Vec<Value> = resp.json().await.unwrap_or_default();
        list.iter()
            .filter_map(|v| {
                Sub::from_programmatic(v)
                    .map_err(|e| tracing::error!("ignoring subscription from the app: {e}"))
                    .ok()
            })
            .collect()
    }
}

#[async_trait]
impl Sink for HttpApp {
    async fn deliver(&self, sub: &Sub, ev: &Event) -> Ack {
        let body = match self
            .post(
                sub,
                &ev.path,
                ev.body.clone(),
                "application/cloudevents+json",
                ev.traceparent(),
                Some(&ev.msg),
            )
            .await
        {
            Ok(b) => b,
            Err(ack) => return ack,
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => status_of(field(&v, "status").unwrap_or(&Value::Null)),
            Err(_) => Ack::Success,
        }
    }

    async fn deliver_bulk(&self, sub: &Sub, evs: &[&Event]) -> Vec<Ack> {
        let Some(first) = evs.first() else {
            return Vec::new();
        };
        // Entries as daprd writes them: a CloudEvent object, or with
        // rawPayload the broker's bytes in base64 as application/octet-stream.
        let ids: Vec<String> = evs
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let entries: Vec<Value> = evs
            .iter()
            .zip(&ids)
            .map(|(e, id)| {
                let (event, content_type) = if sub.raw_payload {
                    (
                        Value::String(
                            base64::engine::general_purpose::STANDARD.encode(&e.msg.data),
                        ),
                        "application/octet-stream",
                    )
                } else {
                    (e.ce.clone(), "application/cloudevents+json")
                };
                json!({
                    "entryId": id,
                    "event": event,
                    "metadata": e.msg.metadata,
                    "contentType": content_type,
                })
            })
            .collect();
        let envelope = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "type": BULK_EVENT_TYPE,
            "topic": sub.topic,
            "pubsubname": sub.pubsub,
            "metadata": {"pubsubName": sub.pubsub},
            "entries": entries,
        });
        let body = bytes::Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default());
        let resp = match self
            .post(
                sub,
                &first.path,
                body,
                "application/json",
                first.traceparent(),
                None,
            )
            .await
        {
            Ok(b) => b,
            Err(ack) => return vec![ack; evs.len()],
        };
        // One status per entry id; an entry the app did not answer is
        // retried.
        let mut acks = vec![Ack::Retry; evs.len()];
        let statuses = serde_json::from_slice::<Value>(&resp).ok();
        for s in statuses
            .as_ref()
            .and_then(|v| field(v, "statuses"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = field(s, "entryId")
                .and_then(Value::as_str)
                .and_then(|id| ids.iter().position(|x| x == id));
            if let Some(a) = i.and_then(|i| acks.get_mut(i)) {
                *a = status_of(field(s, "status").unwrap_or(&Value::Null));
            }
        }
        acks
    }
}
