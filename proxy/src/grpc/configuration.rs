//! The configuration RPCs of the Dapr service. `SubscribeConfiguration`
//! answers with a server stream: its first message carries the
//! subscription id, each later one the items that changed. The stream's
//! pump takes changes from the subscription's feed one batch at a time and
//! waits for the client to read them (a channel of two messages), so a slow
//! client leaves changes coalescing in the feed, not queued here. The
//! subscription ends when the client goes away, on
//! `UnsubscribeConfiguration`, or at shutdown.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use spar_components::configuration::Items;
use spar_filters::handlers::configuration::{ConfigurationRequest, ConfigurationResponse, Deliver};
use spar_filters::{Request, Response, Runtime};
use spar_proto::common::ConfigurationItem;
use spar_proto::runtime as pb;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::dapr::{unexpected, DaprApi, R};

pub type ConfigurationStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeConfigurationResponse, Status>> + Send>>;

fn items(i: Items) -> std::collections::HashMap<String, ConfigurationItem> {
    i.into_iter()
        .map(|(k, v)| {
            (
                k,
                ConfigurationItem {
                    value: v.value,
                    version: v.version,
                    metadata: v.metadata,
                },
            )
        })
        .collect()
}

impl DaprApi {
    pub(super) async fn get_configuration_rpc(
        &self,
        req: GrpcRequest<pb::GetConfigurationRequest>,
        route: &'static str,
    ) -> R<pb::GetConfigurationResponse> {
        let m = req.get_ref();
        let typed = Request::Configuration(ConfigurationRequest::Get {
            store: m.store_name.clone(),
            keys: m.keys.clone(),
            metadata: m.metadata.clone(),
        });
        match self.call(route, &req, Ok(typed)).await? {
            Response::Configuration(ConfigurationResponse::Items(i)) => {
                Ok(GrpcResponse::new(pb::GetConfigurationResponse {
                    items: items(i),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn subscribe_configuration_rpc(
        &self,
        req: GrpcRequest<pb::SubscribeConfigurationRequest>,
        route: &'static str,
    ) -> R<ConfigurationStream> {
        let m = req.get_ref();
        let typed = Request::Configuration(ConfigurationRequest::Subscribe {
            store: m.store_name.clone(),
            keys: m.keys.clone(),
            metadata: m.metadata.clone(),
            deliver: Deliver::Stream,
        });
        let s = match self.call(route, &req, Ok(typed)).await? {
            Response::Configuration(ConfigurationResponse::Subscribed(s)) => s,
            _ => return Err(unexpected()),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(pump(self.rt.clone(), s.id, s.feed, tx));
        Ok(GrpcResponse::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    pub(super) async fn unsubscribe_configuration_rpc(
        &self,
        req: GrpcRequest<pb::UnsubscribeConfigurationRequest>,
        route: &'static str,
    ) -> R<pb::UnsubscribeConfigurationResponse> {
        // daprd looks the id up among all subscriptions, whatever store the
        // request names.
        let typed = Request::Configuration(ConfigurationRequest::Unsubscribe {
            store: None,
            id: req.get_ref().id.clone(),
        });
        match self.call(route, &req, Ok(typed)).await? {
            Response::Configuration(ConfigurationResponse::Unsubscribed) => {
                Ok(GrpcResponse::new(pb::UnsubscribeConfigurationResponse {
                    ok: true,
                    message: String::new(),
                }))
            }
            Response::Configuration(ConfigurationResponse::NotSubscribed(message)) => {
                Ok(GrpcResponse::new(pb::UnsubscribeConfigurationResponse {
                    ok: false,
                    message,
                }))
            }
            _ => Err(unexpected()),
        }
    }
}

/// Sends the id, then each batch of changes, until the feed closes or the
/// client is gone; then removes the subscription (stopping its watch).
async fn pump(
    rt: Arc<Runtime>,
    id: String,
    feed: Arc<spar_components::configuration::Feed>,
    tx: tokio::sync::mpsc::Sender<Result<pb::SubscribeConfigurationResponse, Status>>,
) {
    let first = pb::SubscribeConfigurationResponse {
        id: id.clone(),
        items: Default::default(),
    };
    if tx.send(Ok(first)).await.is_ok() {
        loop {
            let batch = tokio::select! {
                b = feed.next() => b,
                _ = tx.closed() => None,
            };
            let Some(batch) = batch else { break };
            let msg = pb::SubscribeConfigurationResponse {
                id: id.clone(),
                items: items(batch),
            };
            if tx.send(Ok(msg)).await.is_err() {
                break;
            }
        }
    }
    rt.configuration_subscriptions.remove(&id, None);
}
