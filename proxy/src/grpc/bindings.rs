//! `InvokeBinding` of the Dapr service, through the shared chain and the
//! one bindings handler; the call's gRPC metadata joins the binding's. The component's answer metadata goes back twice,
//! as daprd does: in the message and as `metadata.{key}` response
//! metadata (on an error too).

use std::collections::HashMap;

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

/// The call's gRPC metadata joins the binding's, as daprd copies it:
/// `grpc-*` keys renamed `dapr-grpc-*`, the request's own keys kept
/// (except `traceparent` / `tracestate`, which the call's win).
fn with_call_metadata(md: &mut HashMap<String, String>, call: &MetadataMap) {
    for kv in call.iter() {
        let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv else {
            continue;
        };
        let (k, Ok(v)) = (k.as_str(), v.to_str()) else {
            continue;
        };
        if k == "te" {
            continue;
        }
        let key = if k.starts_with("grpc-") {
            format!("dapr-{k}")
        } else {
            k.to_string()
        };
        if matches!(k, "traceparent" | "tracestate") || !md.contains_key(&key) {
            md.insert(key, v.to_string());
        }
    }
}

impl DaprApi {
    pub(super) async fn invoke_binding(
        &self,
        req: tonic::Request<pb::InvokeBindingRequest>,
    ) -> R<pb::InvokeBindingResponse> {
        use prost::Message;
        let len = req.get_ref().encoded_len();
        let (metadata, _, m) = req.into_parts();
        let mut md = m.metadata;
        with_call_metadata(&mut md, &metadata);
        let typed = Request::Binding(Box::new(BindingRequest {
            name: m.name,
            operation: m.operation,
            data: m.data,
            metadata: md,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_metadata_joins_as_daprd_copies_it() {
        let mut call = MetadataMap::new();
        call.insert("x-user", "u".parse().unwrap());
        call.insert("grpc-timeout", "1S".parse().unwrap());
        call.insert("traceparent", "00-a-b-01".parse().unwrap());
        call.insert("te", "trailers".parse().unwrap());
        let mut md = HashMap::from([
            ("x-user".to_string(), "mine".to_string()),
            ("traceparent".to_string(), "old".to_string()),
        ]);
        with_call_metadata(&mut md, &call);
        assert_eq!(md["x-user"], "mine");
        assert_eq!(md["dapr-grpc-timeout"], "1S");
        assert_eq!(md["traceparent"], "00-a-b-01");
        assert!(!md.contains_key("te"));
    }
}
