//! Bindings over a message broker, reusing the pub/sub component for its
//! connection, acknowledgements and redelivery: output `create` publishes
//! to the binding's `topic` (a call's `topic` metadata overrides it), input
//! subscribes to it (wildcards where the broker allows them) as the
//! binding's consumer group (`consumerID`, default the component's name).
//! An event the app refuses is a RETRY to the broker component: MQTT calls
//! the handler again with backoff until the app takes it (PUBACK only
//! then), so nothing is lost while the sidecar runs and an unacknowledged
//! message comes again when the session resumes.
//!
//! `bindings.mqtt3`: `url`, `topic` (required), `qos`, `retain`,
//! `cleanSession`, `consumerID`, TLS as `pubsub.mqtt3`; events carry the
//! message's concrete `topic` (and `retained`) as metadata.
//!
//! `bindings.rabbitmq`: `pubsub.rabbitmq` in queue mode — one queue,
//! `queueName`, on the default exchange, as daprd's binding (other
//! producers and consumers of that queue interoperate); a refused event is
//! requeued (`requeueInFailure`, default true). Connection metadata as
//! `pubsub.rabbitmq` (`host` or `connectionString`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    ops, Binding, BindingError, Event, EventHandler, InvokeRequest, InvokeResponse, Reading,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::pubsub::{Ack, Handler, Message, PubSub, SubscribeRequest};

pub struct BrokerBinding {
    broker: Arc<dyn PubSub>,
    topic: String,
    group: String,
}

pub fn build_mqtt(
    c: &spar_config::Component,
    ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let m = Meta::new(c);
    let topic = m.required("topic")?;
    let broker = crate::pubsub::mqtt::build(c, ctx)?;
    Ok(Arc::new(BrokerBinding {
        broker,
        topic,
        group: m.str("consumerID").unwrap_or_else(|| c.name().to_string()),
    }))
}

pub fn build_rabbitmq(
    c: &spar_config::Component,
    ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let m = Meta::new(c);
    let queue = m.required("queueName")?;
    let broker = crate::pubsub::rabbitmq::build_queue(c, ctx)?;
    Ok(Arc::new(BrokerBinding {
        broker,
        topic: queue,
        group: c.name().to_string(),
    }))
}

/// The broker's messages as binding events: SUCCESS when the app took it,
/// RETRY when not.
struct ToApp(Arc<dyn EventHandler>);

#[async_trait]
impl Handler for ToApp {
    async fn handle(&self, msg: Message) -> Ack {
        let mut metadata = msg.metadata;
        metadata.insert("topic".into(), msg.topic);
        let ev = Event {
            data: msg.data.to_vec(),
            metadata,
        };
        match self.0.handle(ev).await {
            Ok(_) => Ack::Success,
            Err(_) => Ack::Retry,
        }
    }
}

#[async_trait]
impl Binding for BrokerBinding {
    async fn init(&self) -> Result<(), BindingError> {
        self.broker
            .init()
            .await
            .map_err(|e| BindingError::Backend(e.to_string()))
    }

    fn operations(&self) -> &[&'static str] {
        &[ops::CREATE]
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        if req.operation != ops::CREATE {
            return Err(BindingError::Unsupported(format!(
                "operation {} is not supported",
                req.operation
            )));
        }
        let mut metadata = req.metadata;
        let topic = metadata
            .remove("topic")
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.topic.clone());
        self.broker
            .publish(&Message {
                topic,
                data: req.data.into(),
                metadata,
            })
            .await
            .map_err(|e| BindingError::Backend(e.to_string()))?;
        Ok(None)
    }

    fn is_input(&self) -> bool {
        true
    }

    async fn read(&self, handler: Arc<dyn EventHandler>) -> Result<Reading, BindingError> {
        let req = SubscribeRequest {
            topic: self.topic.clone(),
            consumer_group: self.group.clone(),
            // One event at a time, in the broker's order, as daprd's.
            max_in_flight: 1,
            metadata: Default::default(),
        };
        self.broker
            .subscribe(req, Arc::new(ToApp(handler)))
            .await
            .map_err(|e| BindingError::Backend(e.to_string()))
    }
}
