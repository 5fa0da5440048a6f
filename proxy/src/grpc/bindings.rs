//! `InvokeBinding` of the Dapr service, through the shared chain and the
//! one bindings handler. The component's answer metadata goes back twice,
//! as daprd does: in the message and as `metadata.{key}` response
//! metadata (on an error too).

use spar_filters::handlers::bindings::BindingRequest;
use spar_filters::{Request, Response};
use spar_proto::runtime as pb;
use tonic::metadata::MetadataMap;
use tonic::Response as GrpcResponse;

use super::dapr::{unexpected, DaprApi, R};

const ROUTE: &str = "/dapr.proto.runtime.v1.Dapr/InvokeBinding";

/// Adds what the handler left in the context to a metadata map.
fn with_headers(map: &mut MetadataMap, headers: Vec<(std::borrow::Cow<'static, str>, String)>) {
    if headers.is_empty() {
        return;
    }
    let mut h = std::mem::take(map).into_headers();
    super::answer_headers::add(&mut h, headers);
    *map = MetadataMap::from_headers(h);
}

impl DaprApi {
    pub(super) async fn invoke_binding(
        &self,
        req: tonic::Request<pb::InvokeBindingRequest>,
    ) -> R<pb::InvokeBindingResponse> {
        use prost::Message;
        let len = req.get_ref().encoded_len();
        let (metadata, _, m) = req.into_parts();
        let typed = Request::Binding(Box::new(BindingRequest {
            name: m.name,
            operation: m.operation,
            data: m.data,
            metadata: m.metadata,
        }));
        let (r, mut ctx) = self.run(ROUTE, &metadata, len, Ok(typed)).await;
        let headers = std::mem::take(&mut ctx.answer_headers);
        match r {
            Ok(Response::Binding(b)) => {
                let b = b.map(|b| *b).unwrap_or_default();
                let mut resp = GrpcResponse::new(pb::InvokeBindingResponse {
                    data: b.data,
                    metadata: b.metadata,
                });
                with_headers(resp.metadata_mut(), headers);
                Ok(resp)
            }
            Ok(_) => Err(unexpected()),
            Err(mut status) => {
                with_headers(status.metadata_mut(), headers);
                Err(status)
            }
        }
    }
}
