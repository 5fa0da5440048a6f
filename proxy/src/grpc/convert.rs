//! protobuf ↔ typed request/response conversions for the Dapr service.

use prost::Message;
use spar_components::state::{Concurrency, Consistency};
use spar_filters::error::Detail;
use spar_filters::handlers::state::{DeleteItem, SaveItem};
use spar_filters::{ApiError, Protocol};
use spar_proto::common::{state_options, StateItem, StateOptions};
use spar_proto::google::rpc;

/// The gRPC status for an error; the details daprd attaches ride in
/// `grpc-status-details-bin` as an encoded `google.rpc.Status`.
pub fn status(e: &ApiError) -> tonic::Status {
    let code = tonic::Code::from_i32(e.grpc_code());
    let message = e.to_string();
    let details = e.details(Protocol::Grpc);
    if details.is_empty() {
        return tonic::Status::new(code, message);
    }
    let st = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: details.iter().map(any).collect(),
    };
    tonic::Status::with_details(code, message, st.encode_to_vec().into())
}

fn any(d: &Detail) -> prost_types::Any {
    let value = match d {
        Detail::ErrorInfo { reason, metadata } => rpc::ErrorInfo {
            reason: (*reason).to_string(),
            domain: spar_filters::error_details::DOMAIN.to_string(),
            metadata: metadata.clone().unwrap_or_default().into_iter().collect(),
        }
        .encode_to_vec(),
        Detail::ResourceInfo {
            resource_type,
            resource_name,
            description,
        } => rpc::ResourceInfo {
            resource_type: (*resource_type).to_string(),
            resource_name: resource_name.clone(),
            owner: String::new(),
            description: description.clone(),
        }
        .encode_to_vec(),
        Detail::BadRequest { field, description } => rpc::BadRequest {
            field_violations: vec![rpc::bad_request::FieldViolation {
                field: field.clone(),
                description: description.clone(),
            }],
        }
        .encode_to_vec(),
        Detail::Help { url, description } => rpc::Help {
            links: vec![rpc::help::Link {
                description: (*description).to_string(),
                url: (*url).to_string(),
            }],
        }
        .encode_to_vec(),
    };
    prost_types::Any {
        type_url: format!("type.googleapis.com/{}", d.type_name()),
        value,
    }
}

pub fn consistency(v: i32) -> Consistency {
    if v == state_options::StateConsistency::ConsistencyStrong as i32 {
        Consistency::Strong
    } else {
        Consistency::Eventual
    }
}

pub fn concurrency(o: Option<&StateOptions>) -> Concurrency {
    match o {
        Some(o)
            if o.concurrency == state_options::StateConcurrency::ConcurrencyFirstWrite as i32 =>
        {
            Concurrency::FirstWrite
        }
        _ => Concurrency::LastWrite,
    }
}

pub fn save_item(s: StateItem) -> SaveItem {
    SaveItem {
        concurrency: concurrency(s.options.as_ref()),
        consistency: s
            .options
            .as_ref()
            .map_or(Consistency::Eventual, |o| consistency(o.consistency)),
        key: s.key,
        value: s.value,
        etag: s.etag.map(|e| e.value),
        metadata: s.metadata,
    }
}

pub fn delete_item(s: StateItem) -> DeleteItem {
    DeleteItem {
        concurrency: concurrency(s.options.as_ref()),
        key: s.key,
        etag: s.etag.map(|e| e.value),
        metadata: s.metadata,
    }
}
