//! Integration tests: one binary, one module per area. Every test starts the
//! real `spar` binary (see `spar_tests::Sidecar`).

mod app_channel;
mod cli;
mod conformance;
mod consul;
mod crypto;
mod discovery;
mod dropin;
mod durability;
mod encryption;
mod endpoints;
mod errors;
mod forwarding;
mod grpc_proxy;
mod h1_path;
mod invoke;
mod logging;
mod metadata;
mod metrics;
mod mtls;
mod outage;
mod outbox;
mod prometheus;
mod pubsub;
mod redis_store;
mod reload;
mod resiliency;
mod secrets;
mod state_grpc;
mod state_http;
mod subscriptions;
mod tracing;
