//! Start-up wiring: YAML → components → runtime → filter chain. Runs once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spar_components::BuildContext;
use spar_config::{Component, Configuration, Resources};
use spar_filters::access_control::{AccessControl, DEFAULT_TRUST_DOMAIN};
use spar_filters::builtin::api_log::ApiLog;
use spar_filters::builtin::server_metrics::MetricsOptions;
use spar_filters::builtin::{build_chain, ChainConfig};
use spar_filters::metrics::{ComponentMetrics, Metrics};
use spar_filters::runtime::Live;
use spar_filters::runtime::{AppConnection, AppHealthConfig};
use spar_filters::spiffe::SpiffeId;
use spar_filters::{Chain, Runtime};

use crate::cli::RunArgs;

pub struct Booted {
    pub rt: Arc<Runtime>,
    /// Name resolution, to announce or register this sidecar once it serves.
    pub names: NameResolution,
    /// Where peer sidecars reach this one (`--dapr-internal-grpc-port`).
    pub internal_port: u16,
    pub chain: Chain,
    pub metrics: Option<Arc<Metrics>>,
    pub max_body: usize,
    /// This sidecar's workload identity when `--enable-mtls` is on.
    pub mtls: Option<Arc<crate::security::Identity>>,
    /// The callee-side policy from `spec.accessControl`.
    pub acl: Option<AccessControl>,
    /// Rebuilds the live set and the chain (hot reload).
    pub builder: Arc<Builder>,
    /// The resources and Configuration in service.
    pub resources: Resources,
    /// `--scheduler-host-address`: the Jobs API's scheduler.
    pub scheduler: Option<Arc<crate::scheduler::SchedulerClient>>,
    pub config: Option<Configuration>,
}

/// Everything a (re)build needs besides the YAML itself.
pub struct Builder {
    pub app_id: String,
    pub namespace: Option<String>,
    pub ctx: BuildContext,
    pub metrics: Option<Arc<Metrics>>,
    pub component_metrics: Option<ComponentMetrics>,
    /// `--enable-api-logging` when given; else the Configuration decides.
    pub enable_api_logging: Option<bool>,
    pub api_token: Option<String>,
    pub max_body: usize,
    /// `--allowed-origins`, when set: the chain's CORS filter.
    pub cors: Option<Arc<spar_filters::builtin::cors::Cors>>,
}

impl Builder {
    /// Components, endpoints, resiliency, tracing and API logging from the
    /// resources and Configuration; unchanged components are carried over
    /// from `prev`. A resiliency error fails the build (start-up, or the
    /// reload is refused).
    pub async fn live(
        &self,
        resources: &Resources,
        config: Option<&Configuration>,
        prev: Option<&crate::components::Prev<'_>>,
        keep_tracer: Option<Arc<spar_filters::trace::Tracer>>,
    ) -> Result<Live, String> {
        let mut loaded = crate::components::load(
            &resources.components,
            config,
            &self.app_id,
            self.namespace.as_deref(),
            &self.ctx,
            prev,
        )
        .await;
        // At start-up a component that failed stops the sidecar, unless it
        // says `ignoreErrors` (daprd's rule); a reload keeps what ran before.
        if prev.is_none() && !loaded.fatal.is_empty() {
            return Err(loaded.fatal.join("; "));
        }
        if let Some(m) = &self.component_metrics {
            loaded.state.with_metrics(m.clone());
        }
        let endpoints = crate::components::http_endpoints(
            &resources.http_endpoints,
            &loaded.secret_stores,
            &mut loaded.failed,
        )
        .await;
        // The flag turns API logging on; the Configuration can too, and sets
        // its options.
        let api_log_spec = config
            .and_then(|c| c.spec.logging.as_ref())
            .and_then(|l| l.api_logging.clone())
            .unwrap_or_default();
        let api_log = self
            .enable_api_logging
            .unwrap_or(api_log_spec.enabled)
            .then_some(ApiLog {
                obfuscate_urls: api_log_spec.obfuscate_urls,
                omit_health_checks: api_log_spec.omit_health_checks,
            });
        // Component kinds name resiliency targets in metrics (`statestore_x`).
        let kinds: std::collections::HashMap<&str, &'static str> = resources
            .components
            .iter()
            .map(|c| {
                let t = c.spec.type_.as_str();
                let kind = if t.starts_with("state.") {
                    "statestore"
                } else if t.starts_with("pubsub.") {
                    "pubsub"
                } else if t.starts_with("secretstores.") {
                    "secretstore"
                } else if t.starts_with("configuration.") {
                    "configuration"
                } else if t.starts_with("lock.") {
                    "lock"
                } else if t.starts_with("conversation.") {
                    "conversation"
                } else if t.starts_with("crypto.") {
                    "crypto"
                } else if t.starts_with("bindings.") {
                    "binding"
                } else {
                    "component"
                };
                (c.metadata.name.as_str(), kind)
            })
            .collect();
        let resiliency = spar_filters::resiliency::Resiliency::compile(
            &resources.resiliencies,
            spar_filters::resiliency::Labels {
                metrics: self.metrics.clone(),
                app_id: self.app_id.clone(),
                namespace: self.namespace.clone().unwrap_or_default(),
            },
            |name| kinds.get(name).copied().unwrap_or("component"),
        )?;
        let tracer = match keep_tracer {
            Some(t) => t,
            None => Arc::new(crate::telemetry::start(
                config.and_then(|c| c.spec.tracing.as_ref()),
                &self.app_id,
            )?),
        };
        Ok(Live {
            state: loaded.state,
            secrets: loaded.secrets,
            pubsubs: loaded.pubsubs,
            configuration: loaded.configuration,
            locks: loaded.locks,
            conversations: loaded.conversations,
            crypto: loaded.crypto,
            bindings: loaded.bindings,
            outbox: spar_filters::outbox::Outboxes::from_components(&resources.components),
            endpoints,
            components: loaded.infos,
            failed_components: loaded.failed,
            resiliency,
            tracer,
            api_log,
        })
    }

    /// The filter chain for this Configuration and live set.
    pub fn chain(
        &self,
        config: Option<&Configuration>,
        resources: &Resources,
        rt: &Arc<Runtime>,
        live: &Live,
    ) -> Result<Chain, String> {
        let metrics_options = config
            .and_then(|c| c.metric())
            .and_then(|m| m.http.as_ref())
            .map(|h| MetricsOptions {
                increased_cardinality: h.increased_cardinality.unwrap_or(false),
                path_matching: h.path_matching.clone(),
                exclude_verbs: h.exclude_verbs.unwrap_or(false),
            })
            .unwrap_or_default();
        build_chain(
            ChainConfig {
                api_token: self.api_token.clone(),
                max_body_bytes: self.max_body,
                metrics: self.metrics.clone(),
                metrics_options,
                pipeline: pipeline(config, resources)?,
                api_log: live.api_log,
                cors: self.cors.clone(),
                tracer: live.tracer.clone(),
                pii: !live.conversations.is_empty(),
            },
            rt.clone(),
        )
    }
}

/// The default data directory: `$HOME/.spar/data`.
pub fn data_dir(args: &RunArgs) -> PathBuf {
    args.data_dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".spar")
            .join("data")
    })
}

/// With no `--resources-path` at all, a first user still gets a working
/// state store (`statestore`, SQLite under the data directory), pub/sub
/// (`pubsub`, in memory) — daprd's default names — a configuration store
/// (`configstore`, SQLite, edited with `sqlite3`) and a lock store
/// (`lockstore`, SQLite, so every sidecar on the machine shares its locks).
fn default_components(dir: &std::path::Path) -> Vec<Component> {
    let file = |name: &str| dir.join(name).display().to_string();
    let (db, config_db, locks) = (
        file("spar-state.db"),
        file("spar-configuration.db"),
        file("spar-lock.db"),
    );
    vec![
        Component::new("statestore", "state.sqlite", &[("connectionString", &db)]),
        Component::new("pubsub", "pubsub.in-memory", &[]),
        Component::new(
            "configstore",
            "configuration.sqlite",
            &[("connectionString", &config_db)],
        ),
        Component::new("lockstore", "lock.sqlite", &[("connectionString", &locks)]),
    ]
}

pub async fn boot(args: &RunArgs) -> Result<Booted, String> {
    let app_id = if args.app_id.is_empty() {
        "spar".to_string()
    } else {
        args.app_id.clone()
    };
    let max_body = args.max_body_bytes()?;
    let data_dir = data_dir(args);

    let resources = if args.resources_path.is_empty() {
        Resources {
            components: default_components(&data_dir),
            ..Default::default()
        }
    } else {
        Resources::load_dirs(&args.resources_path)
            .map_err(|e| e.to_string())?
            .for_app(&app_id)
    };
    for w in &resources.warnings {
        tracing::warn!("{w}");
    }
    let config: Option<Configuration> = if args.config.is_empty() {
        None
    } else {
        Some(spar_config::load_configurations(&args.config).map_err(|e| e.to_string())?)
    };

    let metrics = args.enable_metrics.then(|| Arc::new(Metrics::new()));
    let metric_spec = config.as_ref().and_then(|c| c.metric());
    let metrics = match metric_spec.and_then(|m| m.enabled) {
        Some(false) => None,
        _ => metrics,
    };

    let namespace = std::env::var("NAMESPACE").ok().filter(|s| !s.is_empty());
    let builder = Builder {
        app_id: app_id.clone(),
        namespace: namespace.clone(),
        ctx: BuildContext {
            data_dir: data_dir.clone(),
        },
        component_metrics: metrics.clone().map(|m| ComponentMetrics {
            metrics: m,
            app_id: app_id.clone(),
            namespace: namespace.clone().unwrap_or_default(),
        }),
        metrics: metrics.clone(),
        enable_api_logging: args.enable_api_logging(),
        api_token: std::env::var("DAPR_API_TOKEN").ok(),
        max_body,
        cors: spar_filters::builtin::cors::Cors::parse(&args.allowed_origins),
    };
    let live = builder
        .live(&resources, config.as_ref(), None, None)
        .await?;

    let internal_port = internal_port(args)?;
    let names = name_resolution(args, config.as_ref(), internal_port)?;
    let mut rt = Runtime::new(app_id, live);
    rt.metrics = builder.component_metrics.clone();
    rt.resolver = names.resolver.clone();
    let access = config.as_ref().and_then(|c| c.spec.access_control.as_ref());
    let mtls = if args.enable_mtls {
        let trust_domain = access
            .map(|a| a.trust_domain.as_str())
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TRUST_DOMAIN);
        Some(obtain_identity(args, &rt, trust_domain).await?)
    } else {
        None
    };
    let scheduler = if args
        .scheduler_host_address
        .iter()
        .any(|a| !a.trim().is_empty())
    {
        let namespace = rt.namespace.clone().unwrap_or_else(|| "default".into());
        let c = crate::scheduler::SchedulerClient::new(
            &args.scheduler_host_address,
            rt.app_id.clone(),
            namespace,
            scheduler_tls(args, mtls.as_ref())?,
        )?;
        Some(Arc::new(c))
    } else {
        None
    };
    rt.jobs = scheduler
        .clone()
        .map(|c| c as Arc<dyn spar_filters::handlers::jobs::JobsBackend>);
    rt.enabled_features = config
        .as_ref()
        .map(|c| {
            c.spec
                .features
                .iter()
                .filter(|f| f.enabled)
                .map(|f| f.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let (interval, timeout, threshold) = args.health_probe()?;
    rt.app = args.app_port().map(|port| AppConnection {
        port,
        protocol: args.effective_app_protocol(),
        channel_address: args.app_channel_address.clone(),
        max_concurrency: args.app_max_concurrency,
        health: args.enable_app_health_check.then(|| AppHealthConfig {
            path: args.app_health_check_path.clone(),
            interval,
            timeout,
            threshold,
        }),
        programmatic_subscriptions: args.programmatic_subscriptions(),
    });
    let rt = Arc::new(rt);
    let chain = builder.chain(config.as_ref(), &resources, &rt, &rt.live())?;
    tracing::info!(filters = ?chain.names(), "filter chain built");
    let acl = AccessControl::build(access);
    Ok(Booted {
        rt,
        names,
        internal_port,
        chain,
        metrics,
        max_body,
        mtls,
        acl,
        builder: Arc::new(builder),
        resources,
        config,
        scheduler,
    })
}

/// Under mTLS the scheduler connection presents this sidecar's certificate
/// and requires the scheduler's identity, `spiffe://{control-plane trust
/// domain}/ns/{control-plane namespace}/dapr-scheduler`, as daprd.
fn scheduler_tls(
    args: &RunArgs,
    mtls: Option<&Arc<crate::security::Identity>>,
) -> Result<Option<crate::security::tls::TlsConnector>, String> {
    mtls.map(|id| {
        id.client_config(Some(SpiffeId::new(
            &args.control_plane_trust_domain,
            &args.control_plane_namespace,
            "dapr-scheduler",
        )))
        .map(crate::security::tls::TlsConnector::new)
    })
    .transpose()
}

/// `--enable-mtls`: trust anchors from `--trust-anchors-file` or
/// `DAPR_TRUST_ANCHORS`, then a first certificate from sentry (start-up
/// fails if none comes within 30 s).
async fn obtain_identity(
    args: &RunArgs,
    rt: &Runtime,
    trust_domain: &str,
) -> Result<Arc<crate::security::Identity>, String> {
    let sentry = args
        .sentry_address
        .clone()
        .ok_or("--enable-mtls needs --sentry-address")?;
    let anchors = match &args.trust_anchors_file {
        Some(p) => {
            std::fs::read(p).map_err(|e| format!("--trust-anchors-file {}: {e}", p.display()))?
        }
        None => std::env::var("DAPR_TRUST_ANCHORS")
            .map(String::into_bytes)
            .map_err(|_| {
                "--enable-mtls needs trust anchors: --trust-anchors-file or DAPR_TRUST_ANCHORS"
            })?,
    };
    let ns = rt.namespace.as_deref().unwrap_or("default");
    crate::security::Identity::obtain(
        crate::security::MtlsOptions {
            sentry_address: sentry,
            trust_anchors_pem: anchors,
            id: SpiffeId::new(trust_domain, ns, &rt.app_id),
            sentry_id: SpiffeId::new(
                &args.control_plane_trust_domain,
                &args.control_plane_namespace,
                "dapr-sentry",
            ),
            token: std::env::var("DAPR_SENTRY_TOKEN").ok(),
        },
        Duration::from_secs(30),
    )
    .await
}

/// The components the Configuration's `httpPipeline` handlers name, in
/// order.
pub(crate) fn pipeline(
    config: Option<&Configuration>,
    res: &Resources,
) -> Result<Vec<Component>, String> {
    let Some(handlers) = config
        .and_then(|c| c.spec.http_pipeline.as_ref())
        .map(|p| &p.handlers)
    else {
        return Ok(Vec::new());
    };
    handlers
        .iter()
        .map(|h| {
            let comp = res
                .components
                .iter()
                .find(|c| c.name() == h.name && c.spec.type_ == h.type_)
                .ok_or_else(|| {
                    format!(
                        "httpPipeline handler {:?} ({}): no component with that name and type",
                        h.name, h.type_
                    )
                })?;
            Ok(comp.clone())
        })
        .collect()
}

/// `--dapr-internal-grpc-port`, or a free port on the first listen address.
fn internal_port(args: &RunArgs) -> Result<u16, String> {
    if let Some(p) = args.internal_port() {
        return Ok(p);
    }
    let host = args
        .internal_hosts()
        .into_iter()
        .next()
        .unwrap_or_else(|| "0.0.0.0".into());
    std::net::TcpListener::bind((host.as_str(), 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free internal port on {host}: {e}"))
}

/// The resolver calls go through, plus the concrete one that announces or
/// registers this sidecar once it serves.
#[derive(Default)]
pub struct NameResolution {
    pub resolver: Option<Arc<dyn spar_resolvers::Resolver>>,
    pub mdns: Option<Arc<spar_resolvers::mdns::MdnsResolver>>,
    pub consul: Option<Arc<spar_resolvers::consul::ConsulResolver>>,
}

/// The Configuration's `spec.nameResolution.component`: `mdns` (default) or
/// `kubernetes` (`configuration.clusterDomain`, default `cluster.local`;
/// spar also takes `configuration.dnsServer: host:port`).
fn name_resolution(
    args: &RunArgs,
    config: Option<&Configuration>,
    internal_port: u16,
) -> Result<NameResolution, String> {
    let spec = config.and_then(|c| c.spec.name_resolution.as_ref());
    let component = spec
        .map(|s| s.component.to_ascii_lowercase())
        .filter(|c| !c.is_empty());
    let opt = |k: &str| {
        spec.and_then(|s| s.configuration.get(k))
            .and_then(|v| v.as_str().map(str::to_owned))
    };
    match component.as_deref() {
        None | Some("mdns") => {
            // Loopback-only sidecars keep mDNS traffic on loopback.
            let loopback_only = args.listen_hosts().iter().all(|h| {
                h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
                    || h == "localhost"
            });
            match spar_resolvers::mdns::MdnsResolver::start(loopback_only) {
                Ok(r) => Ok(NameResolution {
                    resolver: Some(r.clone()),
                    mdns: Some(r),
                    consul: None,
                }),
                Err(e) => {
                    // Everything but invocation of other apps still works.
                    tracing::warn!("name resolution unavailable: {e}");
                    Ok(NameResolution::default())
                }
            }
        }
        Some("kubernetes") => {
            let dns = opt("dnsServer")
                .map(|s| {
                    s.parse::<std::net::SocketAddr>()
                        .map_err(|e| format!("nameResolution dnsServer {s:?}: {e}"))
                })
                .transpose()?;
            let domain = opt("clusterDomain").unwrap_or_else(|| "cluster.local".into());
            let ns = std::env::var("NAMESPACE").unwrap_or_else(|_| "default".into());
            let r = spar_resolvers::kubernetes::KubernetesResolver::new(
                dns,
                &domain,
                &ns,
                internal_port,
            )?;
            Ok(NameResolution {
                resolver: Some(Arc::new(r)),
                ..Default::default()
            })
        }
        Some("consul") => {
            let cfg = spec.map(|s| s.configuration.clone()).unwrap_or_default();
            let r = Arc::new(spar_resolvers::consul::ConsulResolver::new(&cfg)?);
            Ok(NameResolution {
                resolver: Some(r.clone()),
                consul: Some(r),
                ..Default::default()
            })
        }
        Some(other) => Err(format!(
            "nameResolution component {other:?} is not supported (supported: mdns, kubernetes, consul)"
        )),
    }
}
