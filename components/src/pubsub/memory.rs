//! `pubsub.in-memory`: topics and consumer groups inside the sidecar. Each
//! group has one queue: members of a group compete for its messages, every
//! group gets every message. Messages published while a topic has no group
//! are dropped (nobody could ever receive them), as Dapr's in-memory broker.
//! Nothing survives a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use spar_config::Component;
use tokio::sync::{watch, Notify};

use super::{
    Ack, Features, Handler, InFlight, Message, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::build::{BuildContext, BuildError};

#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<Message>>,
    ready: Notify,
}

impl Queue {
    fn push(&self, m: Message) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(m);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Message> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

#[derive(Default)]
pub struct MemoryPubSub {
    /// topic → consumer group → queue
    topics: Mutex<HashMap<String, HashMap<String, Arc<Queue>>>>,
}

/// How long a message answered with RETRY waits before it is offered again.
const REDELIVERY_DELAY: Duration = Duration::from_millis(100);

pub fn build(_c: &Component, _ctx: &BuildContext) -> Result<Arc<dyn PubSub>, BuildError> {
    Ok(Arc::new(MemoryPubSub::default()))
}

#[async_trait]
impl PubSub for MemoryPubSub {
    fn features(&self) -> Features {
        Features {
            ordered: true,
            durable: false,
        }
    }

    async fn publish(&self, msg: &Message) -> Result<(), PubSubError> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(groups) = topics.get(&msg.topic) {
            for q in groups.values() {
                q.push(msg.clone());
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, PubSubError> {
        let queue = self
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(req.topic.clone())
            .or_default()
            .entry(req.consumer_group.clone())
            .or_default()
            .clone();
        let (stop_tx, mut stop) = watch::channel(false);
        let inflight = InFlight::new(req.max_in_flight);
        let task = tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    break;
                }
                let Some(msg) = queue.pop() else {
                    tokio::select! {
                        _ = queue.ready.notified() => {}
                        _ = stop.changed() => {}
                        // A notify meant for another member may be missed.
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    continue;
                };
                let (h, q) = (handler.clone(), queue.clone());
                inflight
                    .spawn(async move {
                        if h.handle(msg.clone()).await == Ack::Retry {
                            tokio::time::sleep(REDELIVERY_DELAY).await;
                            q.push(msg);
                        }
                    })
                    .await;
            }
            inflight.drain().await;
        });
        Ok(Subscription::new(stop_tx, task))
    }
}
