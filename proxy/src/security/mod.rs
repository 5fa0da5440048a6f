//! mTLS between sidecars: `spar sentry` (the CA), the sidecar's rotating
//! workload identity, and the SPIFFE-aware TLS pieces both use.

pub mod ca;
pub mod identity;
pub mod scheduler;
pub mod sentry;
pub mod tls;

pub use identity::{Identity, MtlsOptions};
