//! `spar sentry`: the certificate authority sidecars ask for their workload
//! certificates (Dapr's `dapr.proto.sentry.v1.CA/SignCertificate`, served
//! over TLS with sentry's own SPIFFE identity). Flags follow Dapr's sentry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::Args;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use spar_filters::spiffe::SpiffeId;
use spar_proto::sentry::{
    ca_server::{Ca as CaService, CaServer},
    sign_certificate_request::TokenValidator,
    SignCertificateRequest, SignCertificateResponse,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::{Request, Response, Status};

use super::ca::{Ca, CaFiles};
use super::tls::pem_certs;

#[derive(Debug, Args, Clone)]
pub struct SentryArgs {
    /// Directory with the root and issuer certificates and the issuer key;
    /// created with new ones on first start.
    #[arg(long = "issuer-credentials", default_value = "~/.spar/certs")]
    pub issuer_credentials: String,
    #[arg(long = "issuer-ca-filename", default_value = "ca.crt")]
    pub issuer_ca_filename: String,
    #[arg(long = "issuer-certificate-filename", default_value = "issuer.crt")]
    pub issuer_certificate_filename: String,
    #[arg(long = "issuer-key-filename", default_value = "issuer.key")]
    pub issuer_key_filename: String,
    /// Trust domain of sentry's own identity (the sidecars' control-plane trust domain).
    #[arg(long = "trust-domain", default_value = "localhost")]
    pub trust_domain: String,
    #[arg(long = "port", default_value_t = 50001)]
    pub port: u16,
    #[arg(long = "listen-address", default_value = "0.0.0.0")]
    pub listen_address: String,
    /// Configuration file: `spec.mtls.workloadCertTTL` (default 24h) and
    /// `allowedClockSkew` (default 15m).
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    #[arg(long = "log-as-json", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_as_json: bool,
}

struct Signer {
    ca: Ca,
    ttl: Duration,
    skew: Duration,
    roots: Vec<Vec<u8>>,
}

#[tonic::async_trait]
impl CaService for Signer {
    async fn sign_certificate(
        &self,
        req: Request<SignCertificateRequest>,
    ) -> Result<Response<SignCertificateResponse>, Status> {
        let r = req.into_inner();
        match TokenValidator::try_from(r.token_validator) {
            Ok(TokenValidator::Unknown | TokenValidator::Insecure) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "only the insecure token validator is available in self-hosted mode",
                ))
            }
        }
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !valid(&r.id) {
            return Err(Status::invalid_argument(format!(
                "invalid app id {:?}",
                r.id
            )));
        }
        if !valid(&r.namespace) {
            return Err(Status::invalid_argument(format!(
                "invalid namespace {:?}",
                r.namespace
            )));
        }
        let td = if r.trust_domain.is_empty() {
            spar_filters::access_control::DEFAULT_TRUST_DOMAIN
        } else {
            &r.trust_domain
        };
        if !valid(td) {
            return Err(Status::invalid_argument(format!(
                "invalid trust domain {td:?}"
            )));
        }
        let id = SpiffeId::new(td, &r.namespace, &r.id);
        let (pem, until) = self
            .ca
            .sign_workload(&r.certificate_signing_request, &id, self.ttl, self.skew)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(%id, "signed workload certificate");
        let secs = until
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        Ok(Response::new(SignCertificateResponse {
            workload_certificate: pem.into_bytes(),
            trust_chain_certificates: self.roots.clone(),
            valid_until: Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            }),
            jwt: None,
        }))
    }
}

pub fn run(args: SentryArgs) -> i32 {
    crate::logging::init(&args.log_level, args.log_as_json, "");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spar sentry: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("sentry: {e}");
            eprintln!("spar sentry: {e}");
            1
        }
    }
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(p),
    }
}

async fn serve(args: SentryArgs) -> Result<(), String> {
    let (mut ttl, mut skew) = (Duration::from_secs(24 * 3600), Duration::from_secs(15 * 60));
    if let Some(path) = &args.config {
        let cfg = spar_config::load_configuration(path).map_err(|e| e.to_string())?;
        if let Some(m) = cfg.spec.mtls {
            if !m.workload_cert_ttl.is_empty() {
                ttl = spar_config::parse_duration(&m.workload_cert_ttl)?;
            }
            if !m.allowed_clock_skew.is_empty() {
                skew = spar_config::parse_duration(&m.allowed_clock_skew)?;
            }
        }
    }
    let files = CaFiles {
        dir: expand_home(&args.issuer_credentials),
        root_cert: args.issuer_ca_filename.clone(),
        issuer_cert: args.issuer_certificate_filename.clone(),
        issuer_key: args.issuer_key_filename.clone(),
    };
    let ca = Ca::load_or_create(&files, &args.trust_domain).map_err(|e| e.to_string())?;
    let namespace = std::env::var("NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let sentry_id = SpiffeId::new(&args.trust_domain, &namespace, "dapr-sentry");
    let (chain_pem, key) = ca
        .sign_server(
            &sentry_id,
            &["localhost", "dapr-sentry", "127.0.0.1", "::1"],
            Duration::from_secs(365 * 24 * 3600),
        )
        .map_err(|e| e.to_string())?;
    let chain = pem_certs(chain_pem.as_bytes())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let roots = pem_certs(ca.root_pem.as_bytes())?
        .iter()
        .map(|c| pem_encode(c))
        .collect();

    let addr: SocketAddr = format!("{}:{}", args.listen_address, args.port)
        .parse()
        .map_err(|e| format!("bad listen address: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listening on {addr}: {e}"))?;
    tracing::info!(%addr, id = %sentry_id, ttl = ?ttl, "sentry serving");

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<TlsConn, std::io::Error>>(64);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                if let Ok(Ok(s)) = hs {
                    let _ = tx.send(Ok(TlsConn(s))).await;
                }
            });
        }
    });
    let signer = Arc::new(Signer {
        ca,
        ttl,
        skew,
        roots,
    });
    tonic::transport::Server::builder()
        .add_service(CaServer::from_arc(signer))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            crate::signals::terminated(),
        )
        .await
        .map_err(|e| e.to_string())
}

fn pem_encode(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// A TLS connection as tonic's incoming stream wants it.
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
