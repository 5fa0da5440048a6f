//! Delivery of one broker message to the app over HTTP, as daprd: a POST of
//! the CloudEvent (`application/cloudevents+json`) to the matching route;
//! 2xx with `{"status": "SUCCESS" | "RETRY" | "DROP"}` (an empty or non-JSON
//! body is SUCCESS), 404 is DROP, anything else is RETRY. RETRY is tried
//! again with backoff; when the retries are used up the message goes to the
//! subscription's dead-letter topic if it has one, else back to the broker
//! for redelivery.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use spar_components::pubsub::{Ack, Handler, Message, PubSub};
use spar_filters::cloudevent;
use spar_filters::Runtime;

use super::Sub;

/// Attempts after the first, and the first backoff (doubling).
const RETRIES: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(100);
const APP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Deliverer {
    rt: Arc<Runtime>,
    sub: Arc<Sub>,
    broker: Arc<dyn PubSub>,
    client: reqwest::Client,
    base: String,
}

impl Deliverer {
    pub fn new(
        rt: Arc<Runtime>,
        sub: Arc<Sub>,
        broker: Arc<dyn PubSub>,
        client: reqwest::Client,
        base: String,
    ) -> Self {
        Deliverer {
            rt,
            sub,
            broker,
            client,
            base,
        }
    }

    async fn post(
        &self,
        path: &str,
        body: bytes::Bytes,
        content_type: &str,
        trace: Option<&str>,
    ) -> Ack {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .timeout(APP_TIMEOUT)
            .header("content-type", content_type)
            .header("pubsubname", &self.sub.pubsub)
            .body(body);
        if let Some(t) = trace {
            req = req.header("traceparent", t);
        }
        if let Some(t) = &self.rt.app_token {
            req = req.header("dapr-api-token", t);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic = %self.sub.topic, "delivery to the app failed: {e}");
                return Ack::Retry;
            }
        };
        let code = resp.status().as_u16();
        if code == 404 {
            tracing::error!(topic = %self.sub.topic, path, "the app answered 404: dropping the message");
            return Ack::Drop;
        }
        if !(200..300).contains(&code) {
            return Ack::Retry;
        }
        let body = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            v.get("status")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase)
        }) {
            None => Ack::Success,
            Some(s) if s == "SUCCESS" || s.is_empty() => Ack::Success,
            Some(s) if s == "DROP" => Ack::Drop,
            Some(s) if s == "RETRY" => Ack::Retry,
            Some(other) => {
                tracing::warn!(topic = %self.sub.topic, status = %other, "unknown status from the app: retrying");
                Ack::Retry
            }
        }
    }
}

#[async_trait]
impl Handler for Deliverer {
    async fn handle(&self, msg: Message) -> Ack {
        let sub = &self.sub;
        let (body, ct, event) = if sub.raw_payload {
            let ct = msg
                .metadata
                .get("contentType")
                .cloned()
                .unwrap_or_else(|| "application/octet-stream".into());
            (msg.data.clone(), ct, None)
        } else {
            let ev = cloudevent::read(&msg.data, &sub.pubsub, &sub.topic);
            if cloudevent::expired(&ev) {
                tracing::warn!(topic = %sub.topic, "message expired (ttlInSeconds): dropping");
                return Ack::Drop;
            }
            let body = bytes::Bytes::from(serde_json::to_vec(&ev).unwrap_or_default());
            (body, "application/cloudevents+json".to_string(), Some(ev))
        };
        let Some(path) = sub.route(event.as_ref()) else {
            tracing::warn!(topic = %sub.topic, "no route matches the event and there is no default: dropping");
            return Ack::Drop;
        };
        let trace = event
            .as_ref()
            .and_then(|e| e.get("traceparent"))
            .and_then(Value::as_str);
        let mut backoff = BACKOFF;
        for attempt in 0..=RETRIES {
            match self.post(path, body.clone(), &ct, trace).await {
                Ack::Retry if attempt < RETRIES => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Ack::Retry => break,
                done => return done,
            }
        }
        if let Some(dlt) = &sub.dead_letter {
            let dead = Message {
                topic: dlt.clone(),
                data: msg.data.clone(),
                metadata: msg.metadata.clone(),
            };
            match self.broker.publish(&dead).await {
                Ok(()) => {
                    tracing::warn!(topic = %sub.topic, dead_letter = %dlt, "delivery failed: message moved to the dead-letter topic");
                    return Ack::Success;
                }
                Err(e) => {
                    tracing::error!(dead_letter = %dlt, "publishing to the dead-letter topic failed: {e}")
                }
            }
        }
        Ack::Retry
    }
}
