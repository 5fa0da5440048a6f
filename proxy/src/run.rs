//! `spar run`: wires the front ends, background tasks and the app process,
//! and owns the shutdown sequence.
//!
//! Threads: pingora runs the HTTP API and the metrics endpoint on the main
//! thread's server (its own runtimes); the gRPC API has its own thread and
//! runtime (`grpc::spawn`); a small tokio runtime runs subscriptions, the app
//! supervisor, signal handling and health probes. All share the same `Chain`
//! and `Runtime` (`Arc`s), so no state is duplicated. One
//! `watch` flag is the single stop switch every part listens to.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs as PingoraRunArgs, Server};
use pingora::services::listening::Service;
use tokio::sync::watch;

use crate::boot::{boot, Booted};
use crate::cli::RunArgs;
use crate::http::internal::InternalApi;
use crate::http::server::ApiServer;
use crate::http::HttpApi;
use crate::metrics_server::MetricsApp;
use crate::signals::StopSignal;
use crate::{app_channel, grpc, launcher, signals};

fn addrs(hosts: &[String], port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for h in hosts {
        let found = (h.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve listen address {h}: {e}"))?;
        out.extend(found);
    }
    out.dedup();
    Ok(out)
}

/// Fails fast with a clear message when a port is taken, before pingora
/// (which would only log the bind failure from its own thread).
fn check_free(addrs: &[SocketAddr], what: &str) -> Result<(), String> {
    for a in addrs {
        std::net::TcpListener::bind(a).map_err(|e| format!("{what} cannot listen on {a}: {e}"))?;
    }
    Ok(())
}

/// Threads per API listener (public HTTP, internal, gRPC): 1 unless
/// `SPAR_HTTP_THREADS` asks for more.
fn http_threads() -> usize {
    match std::env::var("SPAR_HTTP_THREADS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=256).contains(&n) => n,
            _ => {
                tracing::warn!(value = %v, "SPAR_HTTP_THREADS must be 1 to 256; using 1");
                1
            }
        },
        Err(_) => 1,
    }
}

/// Go's `strconv.ParseBool` truths, as daprd reads its environment switches.
fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(str::trim),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True" | "y" | "Y" | "yes" | "YES" | "on" | "ON")
    )
}

pub fn run(args: RunArgs) -> i32 {
    // daprd's one-shot commands.
    if args.version {
        println!("{}", crate::cli::runtime_version());
        return 0;
    }
    if args.build_info {
        println!(
            "Version: {}\nGit Commit: {}\nGit Version: spar-{}",
            crate::cli::runtime_version(),
            option_env!("SPAR_GIT_COMMIT").unwrap_or("unknown"),
            env!("CARGO_PKG_VERSION")
        );
        return 0;
    }
    if args.wait {
        crate::wait::outbound_ready(args.dapr_http_port);
        return 0;
    }
    let log_file = match &args.log_file {
        Some(p) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("spar: --log-file {}: {e}", p.display());
                return 1;
            }
        },
        None => None,
    };
    crate::logging::init_to(&args.log_level, args.log_as_json, &args.app_id, log_file);
    if let Err(e) = args.check() {
        tracing::error!("{e}");
        eprintln!("spar: {e}");
        return 1;
    }
    for line in args.accepted_only() {
        tracing::info!("{line}");
    }
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("spar: {e}");
            1
        }
    }
}

fn run_inner(args: RunArgs) -> Result<i32, String> {
    let started = Instant::now();
    let grace = args.grace();
    let block_shutdown = args.block_shutdown()?;
    let bg = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("spar-bg")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;

    let Booted {
        rt,
        names,
        internal_port,
        chain,
        metrics,
        max_body,
        mtls,
        acl,
        builder,
        resources,
        config,
        scheduler,
    } = bg.block_on(boot(&args))?;
    let peers = std::sync::Arc::new(crate::peer_client::PeerClient::new(mtls.as_ref())?);

    let hosts = args.listen_hosts();
    // `--unix-domain-socket DIR`: the HTTP and gRPC APIs listen on sockets
    // named as daprd names them, instead of TCP.
    let sockets = args
        .unix_domain_socket
        .as_ref()
        .map(|dir| crate::uds::Sockets::new(dir, &rt.app_id));
    let http_addrs = match &sockets {
        Some(_) => Vec::new(),
        None => addrs(&hosts, args.dapr_http_port)?,
    };
    let metrics_addrs = addrs(
        std::slice::from_ref(&args.metrics_listen_address),
        args.metrics_port,
    )?;
    check_free(&http_addrs, "HTTP API")?;
    let internal_addrs = addrs(&args.internal_hosts(), internal_port)?;
    check_free(&internal_addrs, "internal API")?;
    if metrics.is_some() {
        check_free(&metrics_addrs, "metrics server")?;
    }
    let public_addrs = match args.dapr_public_port {
        Some(p) => {
            let host = match args.dapr_public_listen_address.trim() {
                "" => "0.0.0.0".to_string(),
                h => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            };
            let a = addrs(&[host], p)?;
            check_free(&a, "public health and metadata port")?;
            a
        }
        None => Vec::new(),
    };
    let grpc_listeners = match &sockets {
        Some(s) => vec![s.bind_grpc()?],
        None => bg
            .block_on(grpc::bind(&addrs(&hosts, args.dapr_grpc_port)?))
            .map_err(|e| e.to_string())?,
    };
    if let Some(s) = &sockets {
        s.prepare_http()?;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    // Subscriptions stop here first when shutdown is blocked
    // (`--dapr-block-shutdown-duration`).
    let (quiet_tx, quiet_rx) = watch::channel(false);
    let block = |rt: &std::sync::Arc<spar_filters::Runtime>| {
        block_shutdown.map(|duration| signals::Block {
            duration,
            quiet: quiet_tx.clone(),
            rt: rt.clone(),
        })
    };
    let grpc_api = grpc::Api {
        chain: chain.clone(),
        rt: rt.clone(),
        max_body,
        max_header_list: u32::try_from(args.read_buffer_bytes()?.saturating_mul(1024))
            .unwrap_or(u32::MAX),
        peers,
        stop: stop_rx.clone(),
    };
    let grpc_task = grpc::spawn(grpc_listeners, grpc_api, http_threads())?;
    if let Some(id) = &mtls {
        let _guard = bg.enter();
        id.spawn_rotation(stop_rx.clone());
    }

    // POST /v1.0/shutdown and gRPC Shutdown flip the same stop switch.
    {
        let mut asked = rt.shutdown_requested();
        let stop = stop_tx.clone();
        bg.spawn(async move {
            signals::stopped(&mut asked).await;
            tracing::info!("shutdown requested through the API");
            stop.send_replace(true);
        });
    }

    // Configuration subscriptions end when the sidecar stops: their gRPC
    // streams complete and their deliveries to the app stop.
    {
        let rt = rt.clone();
        let mut stop = stop_rx.clone();
        bg.spawn(async move {
            signals::stopped(&mut stop).await;
            rt.configuration_subscriptions.close_all();
        });
    }

    let app_task = if args.command.is_empty() {
        None
    } else {
        let _guard = bg.enter();
        let child = launcher::spawn(&args, &rt.app_id)
            .map_err(|e| format!("cannot launch {:?}: {e}", args.command[0]))?;
        let pid = child.id();
        bg.spawn(signals::watch_signals(
            pid,
            stop_tx.clone(),
            grace,
            block(&rt),
        ));
        Some(bg.spawn(launcher::supervise(
            child,
            stop_tx.clone(),
            stop_rx.clone(),
            grace,
        )))
    };
    if app_task.is_none() {
        bg.spawn(signals::watch_signals(
            None,
            stop_tx.clone(),
            grace,
            block(&rt),
        ));
    }
    bg.spawn(app_channel::health_loop(rt.clone(), stop_rx.clone()));
    // Due jobs from the scheduler, once the app is up.
    if let Some(s) = &scheduler {
        let _guard = bg.enter();
        crate::scheduler::spawn_watchers(rt.clone(), s, stop_rx.clone());
    }
    // Subscriptions, and hot reload of resources and Configuration.
    let subscriber = bg.spawn(
        crate::reload::Reloader {
            rt: rt.clone(),
            chain: chain.clone(),
            builder,
            dirs: args.resources_path.clone(),
            config_paths: args.config.clone(),
            poll: args.reload_poll(),
            quiet: quiet_rx.clone(),
            resources,
            config,
            grace,
        }
        .run(stop_rx.clone()),
    );

    let threads = http_threads();
    let mut conf = ServerConf {
        threads,
        // One thread per listener runs as a current-thread runtime: a call
        // and its upstream connection stay on one thread, with no wake-ups
        // of idle workers (bench/README.md: −25 % CPU per request, +22 %
        // throughput on 2 cores). More threads need work stealing: pingora's
        // shared upstream pool hands connections across runtimes otherwise.
        work_stealing: threads > 1,
        grace_period_seconds: Some(0),
        // pingora's "fast" timeouts run a clock thread that wakes every
        // 10 ms for the life of the process, idle or not. Timeouts of a
        // second or more (all that spar sets by default) go to tokio's
        // timer instead, woken only when one is due; only a configured
        // timeout under a second reaching pingora still starts the thread.
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(grace.as_secs()),
        ..Default::default()
    };
    conf.daemon = false;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let api = HttpApi::new(
        chain,
        rt.clone(),
        max_body,
        metrics.clone().map(|m| (m, rt.app_id.clone())),
        mtls.clone(),
    )
    .with_max_head(args.max_head_bytes()?);
    if !public_addrs.is_empty() {
        // daprd's public port: health and metadata only, no API token.
        let mut public = Service::new(
            "dapr-public".into(),
            ApiServer::new(&server.configuration, api.public(), None),
        );
        public.threads = Some(1);
        for a in &public_addrs {
            public.add_tcp(&a.to_string());
        }
        server.add_service(public);
    }
    // As daprd, the HTTP API also speaks HTTP/2 with prior knowledge (h2c)
    // unless DAPR_HTTP_DISABLE_H2C is truthy.
    let api_h2c = (!truthy(std::env::var("DAPR_HTTP_DISABLE_H2C").ok().as_deref())).then(|| {
        let mut o = pingora::apps::HttpServerOptions::default();
        o.h2c = true;
        o
    });
    let mut http = Service::new(
        "dapr-http-api".into(),
        ApiServer::new(&server.configuration, api, api_h2c),
    );
    for a in &http_addrs {
        http.add_tcp(&a.to_string());
    }
    if let Some(s) = &sockets {
        http.add_uds(&s.http.display().to_string(), None);
    }
    server.add_service(http);
    // Peer sidecars speak HTTP/2 with prior knowledge (h2c) when not TLS.
    let h2c = mtls.is_none().then(|| {
        let mut o = pingora::apps::HttpServerOptions::default();
        o.h2c = true;
        o
    });
    // Peers' connections must finish their preface in time; at most so
    // many at once (listen_guard.rs).
    let limits = crate::listen_guard::Limits::from_env();
    let mut internal = Service::new(
        "dapr-internal-api".into(),
        crate::listen_guard::GuardedApp::new(
            ApiServer::new(
                &server.configuration,
                InternalApi::new(rt.clone(), acl, max_body),
                h2c,
            ),
            limits,
        ),
    );
    match &mtls {
        // Under mTLS: TLS with this sidecar's rotating certificate, and a
        // client certificate from the same trust anchors required.
        Some(id) => {
            for a in &internal_addrs {
                let mut tls = pingora::listeners::tls::TlsSettings::with_callbacks(Box::new(
                    crate::http::internal::PeerIdentity,
                ))
                .map_err(|e| e.to_string())?;
                tls.set_cert_resolver(std::sync::Arc::new(crate::security::identity::Resolver(
                    id.clone(),
                )));
                tls.set_client_cert_verifier(id.server_verifier()?);
                tls.enable_h2();
                internal.add_tls_with_settings(&a.to_string(), None, tls);
            }
            internal
                .endpoints()
                .set_pre_tls_callback(std::sync::Arc::new(crate::listen_guard::TlsStart(
                    limits.handshake,
                )));
        }
        None => {
            for a in &internal_addrs {
                internal.add_tcp(&a.to_string());
            }
        }
    }
    server.add_service(internal);
    // Where peers reach us: the first concrete listen address, else
    // loopback (same-host sidecars).
    let ip = internal_addrs
        .iter()
        .map(|a| a.ip())
        .find(|ip| !ip.is_unspecified())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    if let Some(m) = &names.mdns {
        let ns = rt.namespace.as_deref().unwrap_or("default");
        if let Err(e) = m.announce(&rt.app_id, ns, ip, internal_port) {
            tracing::warn!("{e}");
        }
    }
    if let Some(c) = &names.consul {
        if let Err(e) = bg.block_on(c.register(&rt.app_id, ip, internal_port, args.dapr_http_port))
        {
            tracing::warn!("{e}");
        }
    }
    if let Some(m) = metrics {
        let mut svc = Service::new("metrics".into(), HttpServer::new_app(MetricsApp(m)));
        svc.threads = Some(1);
        for a in &metrics_addrs {
            svc.add_tcp(&a.to_string());
        }
        server.add_service(svc);
    }

    rt.set_ready(true);
    if let Some(s) = &sockets {
        tracing::info!(http = %s.http.display(), grpc = %s.grpc.display(), "API listening on Unix domain sockets");
    }
    tracing::info!(
        app_id = %rt.app_id,
        http = args.dapr_http_port,
        grpc = args.dapr_grpc_port,
        internal = internal_port,
        metrics = args.metrics_port,
        startup_ms = started.elapsed().as_millis() as u64,
        "spar is ready"
    );

    // Start-up's code leaves memory once the listeners are up and the
    // first probes have run; what runs from then on faults back in.
    if std::env::var_os("SPAR_KEEP_STARTUP_CODE").is_none() {
        bg.spawn(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let n = crate::resident::drop_startup_code();
            tracing::debug!(bytes = n, "start-up code released");
        });
    }

    // Blocks until the stop switch flips and pingora has drained.
    server.run(PingoraRunArgs {
        shutdown_signal: Box::new(StopSignal(stop_rx.clone())),
    });
    rt.set_ready(false);
    stop_tx.send_replace(true);
    if let Some(s) = &sockets {
        s.remove();
    }
    if let Some(m) = &names.mdns {
        m.withdraw();
    }
    if let Some(c) = &names.consul {
        bg.block_on(c.deregister());
    }

    let code = match app_task {
        Some(t) => bg.block_on(t).unwrap_or(1),
        None => 0,
    };
    let _ = bg.block_on(async { tokio::time::timeout(grace, grpc_task).await });
    // In-flight deliveries finish (bounded by the grace period) before exit.
    let _ = bg.block_on(async { tokio::time::timeout(grace, subscriber).await });
    // Spans still queued for export go out (at most 2 s).
    bg.block_on(crate::telemetry::flush(Duration::from_secs(2)));
    bg.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(code, "spar stopped");
    Ok(code)
}
