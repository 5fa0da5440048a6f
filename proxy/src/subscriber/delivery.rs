//! What happens to one broker message on its way to the app, whatever the
//! transport: read (or, for `rawPayload`, build) the CloudEvent, drop it when
//! expired, pick the route, hand it to the app through a [`Sink`], try again
//! with backoff on RETRY, and when the app gives up on it (DROP) or the
//! retries are used up, move it to the dead-letter topic if there is one.
//! Without a dead-letter topic a message the app could not take goes back
//! to the broker (RETRY) and a dropped one is acknowledged, as daprd does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use spar_components::pubsub::{Ack, Handler, Message, PubSub};
use spar_filters::cloudevent;
use spar_filters::metrics::ComponentMetrics;
use spar_filters::resiliency::{Policy, Verdict};

use spar_filters::trace::{SpanContext, SpanKind, Tracer};

use super::Sub;

/// Attempts after the first, and the first backoff (doubling).
pub const RETRIES: u32 = 3;
pub const BACKOFF: Duration = Duration::from_millis(100);

/// One event ready for the app.
#[derive(Debug)]
pub struct Event {
    /// The CloudEvent as a JSON object.
    pub ce: Value,
    /// Its JSON text, as HTTP apps receive it (the broker's bytes when they
    /// already were a CloudEvent: nothing is re-encoded).
    pub body: Bytes,
    /// The route chosen for it (empty for gRPC apps without routes).
    pub path: String,
    /// The message as the broker carried it, for the dead-letter topic.
    pub msg: Message,
    /// The delivery span's `traceparent`, when tracing is on.
    pub trace: Option<String>,
}

impl Event {
    /// What the app gets as `traceparent`: the delivery span, else the
    /// publisher's context from the CloudEvent.
    pub fn traceparent(&self) -> Option<&str> {
        self.trace
            .as_deref()
            .or_else(|| self.ce.get("traceparent").and_then(Value::as_str))
            // An outbox event carries an empty one, as daprd's do.
            .filter(|t| !t.is_empty())
    }
}

/// The broker message's metadata that travels to the app as headers (HTTP)
/// or gRPC metadata, as daprd sends it; what the sidecar sets itself
/// (framing, content type, tracing, the app token) is left out.
pub fn forwarded_metadata(msg: &Message) -> impl Iterator<Item = (String, &str)> {
    const OWN: [&str; 11] = [
        "content-type",
        // Set by spar's publish for its own use.
        "contenttype",
        "content-length",
        "transfer-encoding",
        "connection",
        "host",
        "te",
        "traceparent",
        "tracestate",
        "dapr-api-token",
        "pubsubname",
    ];
    msg.metadata.iter().filter_map(|(k, v)| {
        let k = k.to_ascii_lowercase();
        (!OWN.contains(&k.as_str()) && !k.starts_with("grpc-") && !k.starts_with(':'))
            .then_some((k, v.as_str()))
    })
}

/// The way to the app: HTTP, gRPC `AppCallback`, or a streaming
/// subscription.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn deliver(&self, sub: &Sub, ev: &Event) -> Ack;

    /// One status per event, in order. All events share `ev.path`.
    async fn deliver_bulk(&self, sub: &Sub, evs: &[&Event]) -> Vec<Ack> {
        futures::future::join_all(evs.iter().map(|e| self.deliver(sub, e))).await
    }
}

/// The event for a message, or the answer when it never reaches the app.
pub fn prepare(sub: &Sub, msg: Message) -> Result<Event, (Ack, Message)> {
    // The message's topic: the concrete one under a wildcard subscription.
    let (ce, body) = if sub.raw_payload {
        let ce = cloudevent::from_raw(&msg.data, &sub.pubsub, &msg.topic);
        let body = Bytes::from(serde_json::to_vec(&ce).unwrap_or_default());
        (ce, body)
    } else {
        match serde_json::from_slice::<Value>(&msg.data) {
            Ok(ce @ Value::Object(_)) if cloudevent::looks_like(&ce) => (ce, msg.data.clone()),
            _ => {
                // Not a CloudEvent (published raw to a topic read without
                // rawPayload): deliver it wrapped rather than lose it.
                let ce = cloudevent::from_raw(&msg.data, &sub.pubsub, &msg.topic);
                let body = Bytes::from(serde_json::to_vec(&ce).unwrap_or_default());
                (ce, body)
            }
        }
    };
    if cloudevent::expired(&ce) {
        tracing::warn!(topic = %sub.topic, "message expired (ttlInSeconds): dropping");
        return Err((Ack::Drop, msg));
    }
    let Some(path) = sub.route(&ce).map(str::to_owned) else {
        tracing::warn!(topic = %sub.topic, "no route matches the event and there is no default: dropping");
        return Err((Ack::Drop, msg));
    };
    Ok(Event {
        ce,
        body,
        path,
        msg,
        trace: None,
    })
}

/// Retries, dead letters and the broker's answer for one subscription.
pub struct Deliverer {
    pub sub: Arc<Sub>,
    pub broker: Arc<dyn PubSub>,
    pub sink: Arc<dyn Sink>,
    pub metrics: Option<ComponentMetrics>,
    /// The component's inbound resiliency policy: replaces the built-in
    /// retries when set.
    pub policy: Option<Arc<Policy>>,
    pub tracer: Arc<Tracer>,
}

/// daprd's ingress labels for an outcome: (process_status, status).
fn outcome(a: Ack) -> (&'static str, &'static str) {
    match a {
        Ack::Success => ("success", ""),
        Ack::Retry => ("retry", ""),
        Ack::Drop => ("drop", "success"),
    }
}

impl Deliverer {
    /// The app's final answer → the broker's: DROP and exhausted retries go
    /// to the dead-letter topic when there is one.
    pub async fn settle(&self, msg: &Message, ack: Ack) -> Ack {
        let Some(dlt) = self
            .sub
            .dead_letter
            .as_ref()
            .filter(|_| ack != Ack::Success)
        else {
            return ack;
        };
        let dead = Message {
            topic: dlt.clone(),
            data: msg.data.clone(),
            metadata: msg.metadata.clone(),
        };
        match self.broker.publish(&dead).await {
            Ok(()) => {
                tracing::warn!(topic = %self.sub.topic, dead_letter = %dlt, "message moved to the dead-letter topic");
                Ack::Success
            }
            Err(e) => {
                tracing::error!(dead_letter = %dlt, "publishing to the dead-letter topic failed: {e}");
                Ack::Retry
            }
        }
    }

    fn record(&self, ack: Ack, started: std::time::Instant) {
        if let Some(m) = &self.metrics {
            let (process, status) = outcome(ack);
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            m.ingress(&self.sub.pubsub, &self.sub.topic, process, status, ms);
        }
    }

    async fn deliver(&self, ev: &Event) -> Ack {
        if let Some(p) = &self.policy {
            let r = p
                .run(
                    || async {
                        let started = std::time::Instant::now();
                        let ack = self.sink.deliver(&self.sub, ev).await;
                        self.record(ack, started);
                        Ok::<Ack, ()>(ack)
                    },
                    |r| match r {
                        Ok(Ack::Retry) => Verdict::Failed(None),
                        _ => Verdict::Success,
                    },
                )
                .await;
            return r.unwrap_or(Ack::Retry);
        }
        let mut backoff = BACKOFF;
        for attempt in 0..=RETRIES {
            let started = std::time::Instant::now();
            let ack = self.sink.deliver(&self.sub, ev).await;
            self.record(ack, started);
            match ack {
                Ack::Retry if attempt < RETRIES => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                done => return done,
            }
        }
        Ack::Retry
    }

    /// Delivers a batch (one path) with retries of the entries the app
    /// asked to retry; one settled answer per event.
    pub async fn deliver_bulk(&self, evs: &[Event]) -> Vec<Ack> {
        let mut acks = vec![Ack::Retry; evs.len()];
        let mut todo: Vec<usize> = (0..evs.len()).collect();
        let mut backoff = BACKOFF;
        for attempt in 0..=RETRIES {
            let batch: Vec<&Event> = todo.iter().map(|&i| &evs[i]).collect();
            let started = std::time::Instant::now();
            let got = self.sink.deliver_bulk(&self.sub, &batch).await;
            if let Some(m) = &self.metrics {
                let statuses: Vec<&str> = got.iter().map(|a| outcome(*a).0).collect();
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                m.ingress_bulk(&self.sub.pubsub, &self.sub.topic, &statuses, ms);
            }
            let mut again = Vec::new();
            for (&i, a) in todo.iter().zip(got) {
                acks[i] = a;
                if a == Ack::Retry {
                    again.push(i);
                }
            }
            if again.is_empty() || attempt == RETRIES {
                break;
            }
            todo = again;
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        let mut out = Vec::with_capacity(evs.len());
        for (ev, a) in evs.iter().zip(acks) {
            out.push(self.settle(&ev.msg, a).await);
        }
        out
    }
}

#[async_trait]
impl Handler for Deliverer {
    async fn handle(&self, msg: Message) -> Ack {
        match prepare(&self.sub, msg) {
            Ok(mut ev) => {
                // daprd's delivery span: `pubsub/{topic}`, a child of the
                // publisher's context carried in the CloudEvent.
                let mut span = self.tracer.enabled().then(|| {
                    let parent = ev
                        .ce
                        .get("traceparent")
                        .and_then(Value::as_str)
                        .and_then(|t| {
                            SpanContext::parse(t, ev.ce.get("tracestate").and_then(Value::as_str))
                        });
                    let mut s = self.tracer.start(
                        parent.as_ref(),
                        format!("pubsub/{}", ev.msg.topic),
                        SpanKind::Client,
                    );
                    s.attr("messaging.system", "pubsub");
                    s.attr("messaging.destination.name", ev.msg.topic.clone());
                    s
                });
                ev.trace = span.as_ref().map(|s| s.context().traceparent());
                let ack = self.deliver(&ev).await;
                if let (Some(s), Ack::Retry) = (span.as_mut(), ack) {
                    s.error("RETRY");
                }
                drop(span);
                self.settle(&ev.msg, ack).await
            }
            Err((ack, msg)) => {
                self.record(ack, std::time::Instant::now());
                self.settle(&msg, ack).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_for_the_app() {
        let msg = Message {
            topic: "t".into(),
            data: Bytes::new(),
            metadata: [
                ("Tenant", "acme"),
                ("rawPayload", "true"),
                ("contentType", "text/plain"),
                ("Content-Type", "x"),
                ("traceparent", "00-x"),
                ("dapr-api-token", "secret"),
                ("grpc-timeout", "1S"),
                ("pubsubName", "other"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let mut got: Vec<(String, &str)> = forwarded_metadata(&msg).collect();
        got.sort();
        assert_eq!(
            got,
            vec![("rawpayload".into(), "true"), ("tenant".into(), "acme")]
        );
    }
}
