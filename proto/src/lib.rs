//! Dapr's gRPC wire types (and the OTLP trace types spar exports spans with), generated from the `.proto` files in this crate.
//! Package paths mirror the protobuf packages so generated cross-references resolve.

pub mod dapr {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.common.v1");
            }
        }
        pub mod runtime {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.runtime.v1");
            }
        }
        pub mod sentry {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.sentry.v1");
            }
        }
        pub mod scheduler {
            pub mod v1 {
                tonic::include_proto!("dapr.proto.scheduler.v1");
            }
        }
    }
}

/// spar's own messages between `spar scheduler` nodes (Raft traffic).
pub mod spar {
    pub mod scheduler {
        pub mod v1 {
            tonic::include_proto!("spar.scheduler.v1");
        }
    }
}

pub use dapr::proto::common::v1 as common;
pub use dapr::proto::runtime::v1 as runtime;
pub use dapr::proto::scheduler::v1 as scheduler;
pub use dapr::proto::sentry::v1 as sentry;
pub use spar::scheduler::v1 as raft;

/// `google.rpc.Status` and the error details Dapr's rich errors carry.
pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// OTLP traces (`opentelemetry.proto.*`), for span export.
pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        pub mod resource {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        pub mod trace {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.trace.v1");
            }
        }
        pub mod collector {
            pub mod trace {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.collector.trace.v1");
                }
            }
        }
    }
}

pub mod otlp {
    pub use crate::opentelemetry::proto::collector::trace::v1 as collector;
    pub use crate::opentelemetry::proto::common::v1 as common;
    pub use crate::opentelemetry::proto::resource::v1 as resource;
    pub use crate::opentelemetry::proto::trace::v1 as trace;
}
