//! The `spar` binary. `proxy` accepts and wires: CLI, front ends (HTTP on
//! pingora, gRPC on tonic), the app process and shutdown. The request path
//! itself lives in `spar-filters`.

mod app_channel;
mod app_grpc;
mod boot;
mod cli;
mod components;
mod configuration_app;
mod grpc;
mod http;
mod input_bindings;
mod launcher;
mod listen_guard;
mod logging;
mod metrics_server;
mod peer_client;
mod reload;
mod resident;
mod run;
mod scheduler;
mod security;
mod signals;
mod subscriber;
mod telemetry;
mod uds;
mod validate;
mod wait;

use cli::Command;

/// mimalloc instead of glibc malloc: glibc's allocator was ≈ 14% of a
/// sidecar's CPU under load (perf); with mimalloc, max throughput +13% and
/// CPU per request −16% in A/B runs (bench/README.md). Built without
/// transparent huge pages, which otherwise add ≈ 14 MB of idle RSS.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // One TLS crypto provider for every client (Redis TLS, later mTLS):
    // ring, the one pingora is built with.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Started as `daprd`, behave as `spar run` with daprd's flags.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_stem().map(|s| s.to_owned()));
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("daprd")) {
        argv.insert(1, "run".into());
    }
    let cli = cli::parse(argv).unwrap_or_else(|e| e.exit());
    let code = match cli.command {
        Command::Run(mut args) => {
            args.settle_resource_paths();
            run::run(*args)
        }
        Command::Validate(args) => validate::run(&args),
        Command::Sentry(args) => security::sentry::run(*args),
        Command::Scheduler(args) => {
            logging::init(&args.log_level, args.log_as_json, "");
            let tls = if args.tls_enabled {
                match security::scheduler::setup(&args) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        eprintln!("spar scheduler: {e}");
                        std::process::exit(1);
                    }
                }
            } else {
                None
            };
            spar_scheduler::run(*args, tls)
        }
    };
    std::process::exit(code);
}
