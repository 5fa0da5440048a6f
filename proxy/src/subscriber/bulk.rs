//! Bulk subscribe: messages the broker hands over one at a time are
//! gathered into batches of at most `maxMessagesCount`, waiting no longer
//! than `maxAwaitDurationMs` for a batch to fill, and delivered to the app in
//! one call per route; each message's handler call returns that message's
//! own status, so the broker still acknowledges message by message.

use std::sync::Arc;

use async_trait::async_trait;
use spar_components::pubsub::{Ack, Handler, Message};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::delivery::{prepare, Deliverer, Event};
use super::sub::Bulk;

type Waiting = (Event, oneshot::Sender<Ack>);

pub struct Batcher {
    deliverer: Arc<Deliverer>,
    tx: mpsc::Sender<Waiting>,
}

impl Batcher {
    pub fn new(deliverer: Arc<Deliverer>, bulk: Bulk) -> Self {
        let (tx, rx) = mpsc::channel(bulk.max_count);
        tokio::spawn(batches(rx, deliverer.clone(), bulk));
        Batcher { deliverer, tx }
    }
}

#[async_trait]
impl Handler for Batcher {
    async fn handle(&self, msg: Message) -> Ack {
        match prepare(&self.deliverer.sub, msg) {
            Err((ack, msg)) => {
                if let Some(m) = &self.deliverer.metrics {
                    let sub = &self.deliverer.sub;
                    m.ingress_bulk(&sub.pubsub, &sub.topic, &["drop"], 0.0);
                }
                self.deliverer.settle(&msg, ack).await
            }
            Ok(ev) => {
                let (tx, rx) = oneshot::channel();
                if self.tx.send((ev, tx)).await.is_err() {
                    return Ack::Retry;
                }
                rx.await.unwrap_or(Ack::Retry)
            }
        }
    }
}

/// Runs until every handler (and so every sender) is gone.
async fn batches(mut rx: mpsc::Receiver<Waiting>, d: Arc<Deliverer>, bulk: Bulk) {
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + bulk.max_await;
        let mut batch = vec![first];
        while batch.len() < bulk.max_count {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(w)) => batch.push(w),
                _ => break,
            }
        }
        // One call per route, in arrival order within each.
        while !batch.is_empty() {
            let path = batch[0].0.path.clone();
            let (same, rest): (Vec<Waiting>, Vec<Waiting>) =
                batch.into_iter().partition(|(e, _)| e.path == path);
            batch = rest;
            let (evs, waiters): (Vec<Event>, Vec<oneshot::Sender<Ack>>) = same.into_iter().unzip();
            let acks = d.deliver_bulk(&evs).await;
            for (w, a) in waiters.into_iter().zip(acks) {
                let _ = w.send(a);
            }
        }
    }
}
