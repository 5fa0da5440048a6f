//! Generates the Dapr gRPC types with tonic. protoc comes from the system
//! (Debian's protobuf-compiler), or from $PROTOC when set.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "dapr/proto/common/v1/common.proto",
        "dapr/proto/runtime/v1/invoke.proto",
        "dapr/proto/runtime/v1/state.proto",
        "dapr/proto/runtime/v1/metadata.proto",
        "dapr/proto/runtime/v1/secret.proto",
        "dapr/proto/runtime/v1/appcallback.proto",
        "dapr/proto/runtime/v1/pubsub.proto",
        "dapr/proto/runtime/v1/configuration.proto",
        "dapr/proto/runtime/v1/lock.proto",
        "dapr/proto/runtime/v1/ai.proto",
        "dapr/proto/runtime/v1/crypto.proto",
        "dapr/proto/runtime/v1/binding.proto",
        "dapr/proto/runtime/v1/jobs.proto",
        "dapr/proto/runtime/v1/dapr.proto",
        "dapr/proto/sentry/v1/sentry.proto",
        "dapr/proto/scheduler/v1/scheduler.proto",
        "spar/scheduler/v1/raft.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
        "opentelemetry/proto/common/v1/common.proto",
        "opentelemetry/proto/resource/v1/resource.proto",
        "opentelemetry/proto/trace/v1/trace.proto",
        "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    ];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&files, &["."])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
