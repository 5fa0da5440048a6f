//! Pluggable backends, one trait per component kind.
//!
//! Each kind lives in its own module (`state`, `pubsub`, `secrets`,
//! `configuration`, `lock`, `conversation`, `crypto`) with the
//! trait, its request/response types, its implementations and a conformance
//! suite that every implementation of the kind must pass.
//! [`registry`] builds components from their YAML `spec.type`.

pub mod bindings;
pub mod build;
pub mod configuration;
pub mod conversation;
pub mod crypto;
pub mod go_json;
pub mod lock;
pub mod meta;
pub mod per_thread;
pub mod pubsub;
pub mod redis_wire;
pub mod registry;
pub mod secrets;
pub mod sql;
pub mod state;
pub mod sweep;

pub use build::{BuildContext, BuildError};
pub use registry::Registry;
