//! The pub/sub RPCs of the Dapr service: publish, bulk publish and
//! streaming subscriptions. Each runs the shared chain first.

use std::pin::Pin;

use futures::Stream;
use spar_filters::handlers::pubsub::{BulkEntry, PubSubRequest, PublishRequest};
use spar_filters::{Request, Response};
use spar_proto::runtime as pb;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::convert;
use super::dapr::{metadata_str, unexpected, DaprApi, R};
use crate::subscriber::stream;

pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeTopicEventsResponseAlpha1, Status>> + Send>>;

impl DaprApi {
    pub(super) async fn publish(&self, req: GrpcRequest<pb::PublishEventRequest>) -> R<()> {
        let m = req.get_ref();
        let header = |k: &str| metadata_str(&req, k);
        let typed = Request::PubSub(PubSubRequest::Publish(PublishRequest {
            pubsub: m.pubsub_name.clone(),
            topic: m.topic.clone(),
            data: bytes::Bytes::copy_from_slice(&m.data),
            content_type: Some(m.data_content_type.clone()).filter(|c| !c.is_empty()),
            metadata: m.metadata.clone().into_iter().collect(),
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
        }));
        match self
            .call("/dapr.proto.runtime.v1.Dapr/PublishEvent", &req, Ok(typed))
            .await?
        {
            Response::Empty => Ok(GrpcResponse::new(())),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn bulk_publish(
        &self,
        req: GrpcRequest<pb::BulkPublishRequest>,
        route: &'static str,
    ) -> R<pb::BulkPublishResponse> {
        let m = req.get_ref();
        let typed = Request::PubSub(PubSubRequest::BulkPublish {
            pubsub: m.pubsub_name.clone(),
            topic: m.topic.clone(),
            entries: m
                .entries
                .iter()
                .map(|e| BulkEntry {
                    entry_id: e.entry_id.clone(),
                    event: bytes::Bytes::copy_from_slice(&e.event),
                    content_type: e.content_type.clone(),
                    metadata: e.metadata.clone().into_iter().collect(),
                })
                .collect(),
            metadata: m.metadata.clone().into_iter().collect(),
            traceparent: metadata_str(&req, "traceparent"),
        });
        match self.call(route, &req, Ok(typed)).await? {
            Response::BulkPublished(f) => Ok(GrpcResponse::new(pb::BulkPublishResponse {
                failed_entries: f
                    .0
                    .into_iter()
                    .map(|(entry_id, error)| pb::BulkPublishResponseFailedEntry { entry_id, error })
                    .collect(),
            })),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn subscribe_stream(
        &self,
        mut req: GrpcRequest<tonic::Streaming<pb::SubscribeTopicEventsRequestAlpha1>>,
    ) -> R<EventStream> {
        let init = stream::initial(req.get_mut())
            .await
            .map_err(|e| convert::status(&e))?;
        let typed = Request::PubSub(PubSubRequest::Subscribe {
            pubsub: init.pubsub_name.clone(),
            topic: init.topic.clone(),
        });
        match self
            .call_with(
                "/dapr.proto.runtime.v1.Dapr/SubscribeTopicEventsAlpha1",
                req.metadata(),
                0,
                Ok(typed),
            )
            .await?
        {
            Response::Empty => {}
            _ => return Err(unexpected()),
        }
        let rx = stream::open(self.rt.clone(), init, req.into_inner())
            .await
            .map_err(|e| convert::status(&e))?;
        Ok(GrpcResponse::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
