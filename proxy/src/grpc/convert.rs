//! protobuf ↔ typed request/response conversions for the Dapr service.

use spar_components::state::{Concurrency, Consistency};
use spar_filters::handlers::state::{DeleteItem, SaveItem};
use spar_filters::ApiError;
use spar_proto::common::{state_options, StateItem, StateOptions};

pub fn status(e: &ApiError) -> tonic::Status {
    tonic::Status::new(tonic::Code::from_i32(e.grpc_code()), e.to_string())
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
