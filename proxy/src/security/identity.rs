//! The sidecar's workload identity under mTLS: a key generated in memory, a
//! certificate for `spiffe://{trust-domain}/ns/{namespace}/{app-id}` signed by
//! sentry, renewed in the background at 70% of its lifetime. Every TLS
//! endpoint reads the current certificate at handshake time, so rotation
//! needs no restart and drops no connection.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use pingora::utils::tls::{CertKey, WrappedX509};
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use spar_filters::spiffe::SpiffeId;
use spar_proto::sentry::{ca_client::CaClient, sign_certificate_request::TokenValidator};
use tokio::sync::watch;

use super::tls::{pem_certs, root_store, SpiffeServerVerifier, TlsConnector};

/// How to reach sentry and whom to trust.
#[derive(Debug, Clone)]
pub struct MtlsOptions {
    pub sentry_address: String,
    pub trust_anchors_pem: Vec<u8>,
    pub id: SpiffeId,
    /// sentry's own identity, checked on every connection to it.
    pub sentry_id: SpiffeId,
    pub token: Option<String>,
}

/// One issued certificate with its key, in the forms each TLS stack wants.
pub struct Issued {
    pub rustls: Arc<CertifiedKey>,
    pub pingora: Arc<CertKey>,
    /// When it arrived (not its `notBefore`, which is back-dated by the
    /// allowed clock skew).
    pub received: SystemTime,
    pub not_after: SystemTime,
    pub serial: String,
}

pub struct Identity {
    pub id: SpiffeId,
    opts: MtlsOptions,
    anchors: Vec<CertificateDer<'static>>,
    /// The anchors in pingora's form, built once for every upstream peer.
    pingora_ca: Arc<[WrappedX509]>,
    current: ArcSwap<Issued>,
}

impl Identity {
    /// Gets the first certificate, retrying while sentry is not up yet
    /// (bounded: start-up fails after `wait`).
    pub async fn obtain(opts: MtlsOptions, wait: Duration) -> Result<Arc<Identity>, String> {
        let anchors =
            pem_certs(&opts.trust_anchors_pem).map_err(|e| format!("trust anchors: {e}"))?;
        root_store(&anchors)?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut backoff = Duration::from_millis(100);
        let issued = loop {
            match request(&opts, &anchors).await {
                Ok(i) => break i,
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(error = %e, "sentry: certificate request failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(format!("could not get a certificate from sentry: {e}")),
            }
        };
        tracing::info!(id = %opts.id, serial = %issued.serial, "mTLS: workload certificate issued");
        let pingora_ca: Arc<[WrappedX509]> = anchors
            .iter()
            .map(|a| WrappedX509::new(a.to_vec(), pingora::utils::tls::parse_x509))
            .collect::<Vec<_>>()
            .into();
        Ok(Arc::new(Identity {
            id: opts.id.clone(),
            opts,
            anchors,
            pingora_ca,
            current: ArcSwap::from_pointee(issued),
        }))
    }

    pub fn current(&self) -> Arc<Issued> {
        self.current.load_full()
    }

    pub fn pingora_ca(&self) -> Arc<[WrappedX509]> {
        self.pingora_ca.clone()
    }

    /// Renews at 70% of each certificate's lifetime; on failure retries
    /// every few seconds until the old one expires (and after).
    pub fn spawn_rotation(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let cur = me.current();
                let life = cur
                    .not_after
                    .duration_since(cur.received)
                    .unwrap_or_default();
                let renew_at = cur.received + life.mul_f64(0.7);
                let wait = renew_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                let mut backoff = Duration::from_millis(500);
                loop {
                    match request(&me.opts, &me.anchors).await {
                        Ok(i) => {
                            tracing::info!(serial = %i.serial, "mTLS: workload certificate renewed");
                            me.current.store(Arc::new(i));
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "mTLS: renewal failed; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = stop.changed() => return,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
        });
    }

    /// Server side (the internal listener): present the current certificate,
    /// require a client certificate chaining to the trust anchors.
    pub fn server_verifier(
        &self,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
        WebPkiClientVerifier::builder(Arc::new(root_store(&self.anchors)?))
            .build()
            .map_err(|e| e.to_string())
    }

    /// A rustls server config for a tonic listener (`spar scheduler`): the
    /// current certificate at each handshake, a client certificate from the
    /// trust anchors required, ALPN h2.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        let mut c = rustls::ServerConfig::builder()
            .with_client_cert_verifier(self.server_verifier()?)
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        c.alpn_protocols = vec![b"h2".to_vec()];
        Ok(c)
    }

    /// Client side for non-pingora HTTP/2 clients (gRPC): verify the peer
    /// against the anchors (and `expected`, when given); present our
    /// certificate.
    pub fn client_config(
        self: &Arc<Self>,
        expected: Option<SpiffeId>,
    ) -> Result<rustls::ClientConfig, String> {
        let verifier = SpiffeServerVerifier::new(root_store(&self.anchors)?, expected)?;
        Ok(rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(Resolver(self.clone()))))
    }
}

/// Hands rustls the certificate current at each handshake.
#[derive(Debug)]
pub struct Resolver(pub Arc<Identity>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish()
    }
}

impl rustls::client::ResolvesClientCert for Resolver {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().rustls.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().rustls.clone())
    }
}

/// One round trip to sentry: new key, CSR, signed certificate.
async fn request(
    opts: &MtlsOptions,
    anchors: &[CertificateDer<'static>],
) -> Result<Issued, String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(
        opts.id
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| e.to_string())?,
    )];
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| e.to_string())?;

    let verifier = SpiffeServerVerifier::new(root_store(anchors)?, Some(opts.sentry_id.clone()))?;
    let tls = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", opts.sentry_address))
            .map_err(|e| format!("bad sentry address {:?}: {e}", opts.sentry_address))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect_with_connector(TlsConnector::new(tls))
        .await
        .map_err(|e| format!("connecting to sentry at {}: {e:?}", opts.sentry_address))?;
    let resp = CaClient::new(channel)
        .sign_certificate(spar_proto::sentry::SignCertificateRequest {
            id: opts.id.app_id.clone(),
            token: opts.token.clone().unwrap_or_default(),
            trust_domain: opts.id.trust_domain.clone(),
            namespace: opts.id.namespace.clone(),
            certificate_signing_request: csr.into_bytes(),
            token_validator: TokenValidator::Insecure as i32,
        })
        .await
        .map_err(|s| format!("sentry refused: {} ({:?})", s.message(), s.code()))?
        .into_inner();

    let chain = pem_certs(&resp.workload_certificate)?;
    let leaf = chain.first().ok_or("sentry sent no certificate")?;
    if super::tls::spiffe_of(leaf).as_ref() != Some(&opts.id) {
        return Err("sentry issued a certificate for another identity".into());
    }
    let (not_after, serial) = validity(leaf)?;
    let key_der = key.serialize_der();
    let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        PrivatePkcs8KeyDer::from(key_der.clone()),
    ))
    .map_err(|e| e.to_string())?;
    let pingora = CertKey::new(chain.iter().map(|c| c.to_vec()).collect(), key_der);
    Ok(Issued {
        rustls: Arc::new(CertifiedKey::new(chain, signing)),
        pingora: Arc::new(pingora),
        received: SystemTime::now(),
        not_after,
        serial,
    })
}

fn validity(der: &[u8]) -> Result<(SystemTime, String), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let secs = cert.validity().not_after.timestamp().max(0) as u64;
    Ok((
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        cert.raw_serial_as_string(),
    ))
}
