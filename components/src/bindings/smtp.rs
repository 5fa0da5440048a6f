//! `bindings.smtp`: an output binding sending mail (`create`), as daprd's.
//! Component metadata: `host`, `port` (default 25), `user` + `password`
//! (AUTH PLAIN), `skipTLSVerify`, and defaults for `emailFrom`, `emailTo`,
//! `emailCC`, `emailBCC`, `subject`, `priority` (1–5) that a call's
//! metadata overrides. The call's data is the body (`text/html`, as
//! daprd's). Port 465 speaks TLS from the start; elsewhere STARTTLS is
//! used when the server offers it. spar's own small client: one connection
//! per mail, every step bounded by `timeout` (default 10 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::{ops, Binding, BindingError, InvokeRequest, InvokeResponse};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Smtp {
    host: String,
    port: u16,
    auth: Option<(String, String)>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    /// Defaults for the per-call fields.
    defaults: HashMap<&'static str, String>,
}

const FIELDS: [&str; 6] = [
    "emailFrom",
    "emailTo",
    "emailCC",
    "emailBCC",
    "subject",
    "priority",
];

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let m = Meta::new(c);
    let host = m.required("host")?;
    let port = m.int("port", 25u16)?;
    let auth = match (m.str("user"), m.str("password")) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => return Err(m.error("user", "user and password go together")),
    };
    let tls = if m.bool("skipTLSVerify", false)? {
        no_verify::config()
    } else {
        crate::redis_wire::system_roots_config().map_err(|e| m.error("host", e))?
    };
    let mut defaults = HashMap::new();
    for f in FIELDS {
        if let Some(v) = m.str(f) {
            defaults.insert(f, v);
        }
    }
    if let Some(p) = defaults.get("priority") {
        priority(p).map_err(|e| m.error("priority", e))?;
    }
    Ok(Arc::new(Smtp {
        host,
        port,
        auth,
        tls: Arc::new(tls),
        timeout: m.duration("timeout", Duration::from_secs(10))?,
        defaults,
    }))
}

fn priority(p: &str) -> Result<u8, String> {
    p.parse::<u8>()
        .ok()
        .filter(|n| (1..=5).contains(n))
        .ok_or_else(|| format!("priority {p:?} must be a number from 1 to 5"))
}

fn addresses(v: Option<&String>) -> Vec<String> {
    v.map(|s| {
        s.split([';', ','])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

/// A connection and the reply reader on it.
struct Session {
    io: BufReader<Box<dyn Io>>,
    timeout: Duration,
}

fn failed(e: impl std::fmt::Display) -> BindingError {
    BindingError::Backend(format!("smtp binding error: {e}"))
}

async fn bounded<T>(
    timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, BindingError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(|e| failed(format!("{what}: {e}"))),
        Err(_) => Err(failed(format!("{what}: no answer within {timeout:?}"))),
    }
}

impl Session {
    /// One reply (all its lines): the code and the text.
    async fn reply(&mut self) -> Result<(u16, String), BindingError> {
        let mut text = String::new();
        let timeout = self.timeout;
        loop {
            let mut line = String::new();
            let n = match tokio::time::timeout(timeout, self.io.read_line(&mut line)).await {
                Ok(r) => r.map_err(|e| failed(format!("reading: {e}")))?,
                Err(_) => return Err(failed("the server did not answer")),
            };
            if n == 0 || line.len() < 4 {
                return Err(failed("the server closed the connection"));
            }
            let code: u16 = line[..3]
                .parse()
                .map_err(|_| failed(format!("bad reply {line:?}")))?;
            text.push_str(line[4..].trim_end());
            text.push('\n');
            if line.as_bytes()[3] != b'-' {
                return Ok((code, text));
            }
        }
    }

    /// Sends a command and expects a reply of class `want` (2 or 3).
    async fn command(&mut self, cmd: &str, want: u16) -> Result<String, BindingError> {
        let line = format!("{cmd}\r\n");
        let io = self.io.get_mut();
        match tokio::time::timeout(self.timeout, io.write_all(line.as_bytes())).await {
            Ok(r) => r.map_err(|e| failed(format!("writing: {e}")))?,
            Err(_) => return Err(failed("writing timed out")),
        }
        let (code, text) = self.reply().await?;
        if code / 100 != want {
            let verb = cmd.split(' ').next().unwrap_or(cmd);
            let shown = if verb == "AUTH" { "AUTH" } else { cmd };
            return Err(failed(format!("{shown}: {code} {}", text.trim())));
        }
        Ok(text)
    }
}

impl Smtp {
    async fn connect(&self) -> Result<Session, BindingError> {
        let mut s = Session {
            io: BufReader::new(Box::new(tokio::io::empty()) as Box<dyn Io>),
            timeout: self.timeout,
        };
        let tcp = bounded(
            self.timeout,
            "connect",
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await?;
        s.io = BufReader::new(if self.port == 465 {
            self.tls(Box::new(tcp)).await?
        } else {
            Box::new(tcp)
        });
        let (code, text) = s.reply().await?;
        if code != 220 {
            return Err(failed(format!("greeting: {code} {}", text.trim())));
        }
        let ehlo = s.command("EHLO spar", 2).await?;
        if self.port != 465 && ehlo.lines().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
            s.command("STARTTLS", 2).await?;
            let io = std::mem::replace(&mut s.io, BufReader::new(Box::new(tokio::io::empty())));
            s.io = BufReader::new(self.tls(io.into_inner()).await?);
            s.command("EHLO spar", 2).await?;
        }
        if let Some((user, pass)) = &self.auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
            s.command(&format!("AUTH PLAIN {token}"), 2).await?;
        }
        Ok(s)
    }

    async fn tls(&self, io: Box<dyn Io>) -> Result<Box<dyn Io>, BindingError> {
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| failed(format!("host {:?}: {e}", self.host)))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone());
        let stream = bounded(self.timeout, "TLS handshake", tls.connect(name, io)).await?;
        Ok(Box::new(stream))
    }
}

/// The message as sent: headers, then the body with lines starting with a
/// dot doubled and CRLF line ends.
fn message(f: &HashMap<&str, String>, to: &[String], cc: &[String], body: &[u8]) -> Vec<u8> {
    let mut m = String::new();
    m.push_str(&format!("From: {}\r\n", f["emailFrom"]));
    m.push_str(&format!("To: {}\r\n", to.join(", ")));
    if !cc.is_empty() {
        m.push_str(&format!("Cc: {}\r\n", cc.join(", ")));
    }
    if let Some(s) = f.get("subject") {
        m.push_str(&format!("Subject: {s}\r\n"));
    }
    if let Some(p) = f.get("priority") {
        m.push_str(&format!("X-Priority: {p}\r\n"));
    }
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n");
    let mut out = m.into_bytes();
    for line in String::from_utf8_lossy(body).split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[async_trait]
impl Binding for Smtp {
    fn operations(&self) -> &[&'static str] {
        &[ops::CREATE]
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        if req.operation != ops::CREATE {
            return Err(BindingError::Unsupported(format!(
                "operation {} is not supported",
                req.operation
            )));
        }
        let mut f = self.defaults.clone();
        for k in FIELDS {
            if let Some(v) = req.metadata.get(k).filter(|v| !v.is_empty()) {
                f.insert(k, v.clone());
            }
        }
        for k in ["emailFrom", "emailTo"] {
            if !f.contains_key(k) {
                return Err(BindingError::BadRequest(format!(
                    "smtp binding error: {k} property not supplied in configuration- or request-metadata"
                )));
            }
        }
        if let Some(p) = f.get("priority") {
            priority(p).map_err(BindingError::BadRequest)?;
        }
        let (to, cc, bcc) = (
            addresses(f.get("emailTo")),
            addresses(f.get("emailCC")),
            addresses(f.get("emailBCC")),
        );
        let mut s = self.connect().await?;
        s.command(&format!("MAIL FROM:<{}>", f["emailFrom"]), 2)
            .await?;
        for r in to.iter().chain(&cc).chain(&bcc) {
            s.command(&format!("RCPT TO:<{r}>"), 2).await?;
        }
        s.command("DATA", 3).await?;
        let msg = message(&f, &to, &cc, &req.data);
        let io = s.io.get_mut();
        match tokio::time::timeout(self.timeout, io.write_all(&msg)).await {
            Ok(r) => r.map_err(|e| failed(format!("writing: {e}")))?,
            Err(_) => return Err(failed("writing timed out")),
        }
        let (code, text) = s.reply().await?;
        if code / 100 != 2 {
            return Err(failed(format!("DATA: {code} {}", text.trim())));
        }
        let _ = s.command("QUIT", 2).await;
        Ok(None)
    }
}

/// `skipTLSVerify`: a TLS client that accepts any server certificate.
mod no_verify {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct Any(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn config() -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Any(provider)))
            .with_no_client_auth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_addresses() {
        assert_eq!(
            addresses(Some(&"a@x; b@x ,c@x".into())),
            ["a@x", "b@x", "c@x"]
        );
        let f: HashMap<&str, String> = [
            ("emailFrom", "me@x".to_string()),
            ("subject", "Hi".to_string()),
        ]
        .into();
        let m = String::from_utf8(message(&f, &["a@x".into()], &[], b"line\n.dot")).unwrap();
        assert!(m.starts_with("From: me@x\r\nTo: a@x\r\nSubject: Hi\r\n"));
        assert!(m.ends_with("\r\n\r\nline\r\n..dot\r\n.\r\n"));
        assert!(priority("3").is_ok() && priority("9").is_err());
    }
}
