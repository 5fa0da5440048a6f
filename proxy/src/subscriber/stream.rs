//! Streaming subscriptions (`SubscribeTopicEventsAlpha1`): the app opens a
//! bidirectional stream, names the topic in its first message, then gets
//! each event as a `TopicEventRequest` and answers it by id. The
//! subscription lives as long as the stream: when the app goes away, the
//! events it had not answered go back to the broker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use spar_components::pubsub::{Ack, SubscribeRequest};
use spar_filters::{ApiError, Runtime};
use spar_proto::runtime as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::delivery::{Deliverer, Event, Sink};
use super::grpc_app::topic_event;
use super::Sub;

type Out = Result<pb::SubscribeTopicEventsResponseAlpha1, Status>;
use pb::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as In;
use pb::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as Resp;

/// Events sent and not yet answered, by CloudEvent id (a redelivered
/// duplicate waits behind the first).
#[derive(Default)]
struct Pending {
    closed: bool,
    by_id: HashMap<String, VecDeque<oneshot::Sender<Ack>>>,
}

struct StreamSink {
    tx: mpsc::Sender<Out>,
    pending: Mutex<Pending>,
}

impl StreamSink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self, id: &str, ack: Ack) {
        let mut p = self.lock();
        if let Some(q) = p.by_id.get_mut(id) {
            if let Some(w) = q.pop_front() {
                let _ = w.send(ack);
            }
            if q.is_empty() {
                p.by_id.remove(id);
            }
        }
    }

    /// The stream ended: every waiting event goes back to the broker.
    fn close(&self) {
        let mut p = self.lock();
        p.closed = true;
        p.by_id.clear();
    }
}

#[async_trait]
impl Sink for StreamSink {
    async fn deliver(&self, sub: &Sub, ev: &Event) -> Ack {
        let msg = match topic_event(sub, ev) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(topic = %sub.topic, "unreadable event: {e}");
                return Ack::Retry;
            }
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.lock();
            if p.closed {
                return Ack::Retry;
            }
            p.by_id.entry(msg.id.clone()).or_default().push_back(tx);
        }
        let out = pb::SubscribeTopicEventsResponseAlpha1 {
            subscribe_topic_events_response_type: Some(Resp::EventMessage(msg)),
        };
        if self.tx.send(Ok(out)).await.is_err() {
            return Ack::Retry;
        }
        rx.await.unwrap_or(Ack::Retry)
    }
}

fn ack_of(status: Option<pb::TopicEventResponse>) -> Ack {
    use pb::topic_event_response::TopicEventResponseStatus as S;
    match status.map(|s| S::try_from(s.status)) {
        Some(Ok(S::Success)) | None => Ack::Success,
        Some(Ok(S::Drop)) => Ack::Drop,
        Some(Ok(S::Retry)) | Some(Err(_)) => Ack::Retry,
    }
}

/// Reads the stream's first message, which must name the topic.
pub async fn initial(
    inbound: &mut tonic::Streaming<pb::SubscribeTopicEventsRequestAlpha1>,
) -> Result<pb::SubscribeTopicEventsRequestInitialAlpha1, ApiError> {
    let first = inbound
        .next()
        .await
        .and_then(Result::ok)
        .and_then(|m| m.subscribe_topic_events_request_type);
    match first {
        Some(In::InitialRequest(init)) => Ok(init),
        _ => Err(ApiError::PubSubRequestMetadata {
            pubsub: String::new(),
            metadata: Default::default(),
            reason: "the first message on the stream must be an initial request".into(),
        }),
    }
}

/// Subscribes for one stream (the chain has already checked the component
/// and the topic's scopes) and returns the outbound half; the subscription
/// ends with the stream.
pub async fn open(
    rt: Arc<Runtime>,
    init: pb::SubscribeTopicEventsRequestInitialAlpha1,
    mut inbound: tonic::Streaming<pb::SubscribeTopicEventsRequestAlpha1>,
) -> Result<mpsc::Receiver<Out>, ApiError> {
    let max_in_flight = super::max_in_flight(&rt);
    let live = rt.live();
    let c = live
        .pubsubs
        .get(&init.pubsub_name)
        .cloned()
        .ok_or_else(|| ApiError::PubSubNotFound {
            pubsub: init.pubsub_name.clone(),
            metadata: Default::default(),
        })?;
    let sub = Sub::streaming(
        init.pubsub_name.clone(),
        init.topic.clone(),
        init.metadata.clone().into_iter().collect(),
        init.dead_letter_topic.clone(),
    )
    .map_err(|reason| ApiError::PubSubRequestMetadata {
        pubsub: init.pubsub_name.clone(),
        metadata: Default::default(),
        reason,
    })?;
    let (tx, rx) = mpsc::channel(max_in_flight.max(1));
    let sink = Arc::new(StreamSink {
        tx: tx.clone(),
        pending: Mutex::default(),
    });
    let sub = Arc::new(sub);
    let deliverer = Arc::new(Deliverer {
        sub: sub.clone(),
        broker: c.broker.clone(),
        sink: sink.clone(),
        metrics: rt.metrics.clone(),
        policy: live.resiliency.component_inbound(&sub.pubsub).cloned(),
        tracer: live.tracer.clone(),
    });
    let req = SubscribeRequest {
        topic: sub.topic.clone(),
        consumer_group: c.consumer_group.clone(),
        max_in_flight,
        metadata: sub.metadata.clone(),
    };
    let running =
        c.broker
            .subscribe(req, deliverer)
            .await
            .map_err(|e| ApiError::PubSubRequestMetadata {
                pubsub: sub.pubsub.clone(),
                metadata: Default::default(),
                reason: format!("subscribe failed: {e}"),
            })?;
    let info = super::info(&sub);
    rt.add_subscriptions([info]);
    let initial = pb::SubscribeTopicEventsResponseAlpha1 {
        subscribe_topic_events_response_type: Some(Resp::InitialResponse(
            pb::SubscribeTopicEventsResponseInitialAlpha1 {},
        )),
    };
    let _ = tx.send(Ok(initial)).await;
    tracing::info!(pubsub = %sub.pubsub, topic = %sub.topic, "streaming subscription opened");
    tokio::spawn(async move {
        while let Some(Ok(m)) = inbound.next().await {
            if let Some(In::EventProcessed(p)) = m.subscribe_topic_events_request_type {
                sink.answer(&p.id, ack_of(p.status));
            }
        }
        sink.close();
        running.close().await;
        rt.remove_subscription(&sub.pubsub, &sub.topic, sub.kind);
        tracing::info!(pubsub = %sub.pubsub, topic = %sub.topic, "streaming subscription closed");
    });
    Ok(rx)
}
