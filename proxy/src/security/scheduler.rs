//! `spar scheduler --tls-enabled`: the node's own identity,
//! `spiffe://{--trust-domain}/ns/{NAMESPACE}/dapr-scheduler`, from sentry and
//! rotated as a sidecar's (`identity.rs`). The listener presents it and
//! requires a client certificate from the trust anchors (sidecars and the
//! other nodes); calls to the other nodes present it and require theirs.

use std::sync::Arc;
use std::time::Duration;

use spar_filters::spiffe::SpiffeId;
use spar_scheduler::{SchedulerArgs, Tls, TlsSetup};
use tokio::sync::watch;

use super::tls::TlsConnector;
use super::{Identity, MtlsOptions};

/// The start-up step `spar_scheduler::run` awaits when TLS is on.
pub fn setup(args: &SchedulerArgs) -> Result<TlsSetup, String> {
    let sentry = args
        .sentry_address
        .clone()
        .ok_or("--tls-enabled needs --sentry-address")?;
    let anchors = match &args.trust_anchors_file {
        Some(p) => {
            std::fs::read(p).map_err(|e| format!("--trust-anchors-file {}: {e}", p.display()))?
        }
        None => std::env::var("DAPR_TRUST_ANCHORS")
            .map(String::into_bytes)
            .map_err(|_| {
                "--tls-enabled needs trust anchors: --trust-anchors-file or DAPR_TRUST_ANCHORS"
            })?,
    };
    let ns = std::env::var("NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let id = SpiffeId::new(&args.trust_domain, &ns, "dapr-scheduler");
    let opts = MtlsOptions {
        sentry_address: sentry,
        trust_anchors_pem: anchors,
        id: id.clone(),
        sentry_id: SpiffeId::new(&args.trust_domain, &ns, "dapr-sentry"),
        token: std::env::var("DAPR_SENTRY_TOKEN").ok(),
    };
    Ok(Box::pin(async move {
        let identity = Identity::obtain(opts, Duration::from_secs(30)).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        identity.spawn_rotation(stop_rx);
        let connector = TlsConnector::new(identity.client_config(Some(id))?);
        Ok(Tls {
            server: Arc::new(identity.server_config()?),
            connect: Arc::new(move |ep| ep.connect_with_connector_lazy(connector.clone())),
            keep: Box::new((identity, stop_tx)),
        })
    }))
}
