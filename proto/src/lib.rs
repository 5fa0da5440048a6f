//! Dapr's gRPC wire types, generated from the `.proto` files in this crate.
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
    }
}

pub use dapr::proto::common::v1 as common;
pub use dapr::proto::runtime::v1 as runtime;
pub use dapr::proto::sentry::v1 as sentry;
