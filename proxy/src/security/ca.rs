//! The certificate authority behind `spar sentry`: a root (trust anchor) and
//! an issuer signed by it, read from the issuer-credentials directory or
//! created there on first start (as Dapr's sentry does in self-hosted mode),
//! and the signing of short-lived SPIFFE workload certificates.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use spar_filters::spiffe::SpiffeId;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {message}")]
    Files { path: PathBuf, message: String },
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// File names inside the issuer-credentials directory (Dapr's defaults).
pub struct CaFiles {
    pub dir: PathBuf,
    pub root_cert: String,
    pub issuer_cert: String,
    pub issuer_key: String,
}

pub struct Ca {
    pub root_pem: String,
    pub issuer_pem: String,
    issuer: Certificate,
    issuer_key: KeyPair,
    issuer_not_after: OffsetDateTime,
}

/// Root and issuer created on first start live one year, as Dapr's.
const CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

impl Ca {
    /// Loads the root, issuer and issuer key; creates all three when none
    /// exists. A partial set is an error rather than silently replaced.
    pub fn load_or_create(files: &CaFiles, trust_domain: &str) -> Result<Ca, CaError> {
        let root = files.dir.join(&files.root_cert);
        let cert = files.dir.join(&files.issuer_cert);
        let key = files.dir.join(&files.issuer_key);
        let present = [&root, &cert, &key].iter().filter(|p| p.exists()).count();
        if present == 0 {
            Self::create(&files.dir, &root, &cert, &key, trust_domain)?;
        } else if present < 3 {
            return Err(CaError::Files {
                path: files.dir.clone(),
                message: format!(
                    "holds only some of {}, {} and {}; provide all three or none",
                    files.root_cert, files.issuer_cert, files.issuer_key
                ),
            });
        }
        let read = |p: &Path| {
            fs::read_to_string(p).map_err(|e| CaError::Files {
                path: p.to_path_buf(),
                message: e.to_string(),
            })
        };
        let (root_pem, issuer_pem, key_pem) = (read(&root)?, read(&cert)?, read(&key)?);
        let bad = |p: &Path, e: rcgen::Error| CaError::Files {
            path: p.to_path_buf(),
            message: e.to_string(),
        };
        let issuer_key = KeyPair::from_pem(&key_pem).map_err(|e| bad(&key, e))?;
        let params = CertificateParams::from_ca_cert_pem(&issuer_pem).map_err(|e| bad(&cert, e))?;
        let issuer_not_after = params.not_after;
        // Re-signing the parsed parameters gives rcgen an issuer handle with
        // the same name and key; only its DN and key are used for signing.
        let issuer = params.self_signed(&issuer_key).map_err(|e| bad(&cert, e))?;
        Ok(Ca {
            root_pem,
            issuer_pem,
            issuer,
            issuer_key,
            issuer_not_after,
        })
    }

    fn create(dir: &Path, root: &Path, cert: &Path, key: &Path, td: &str) -> Result<(), CaError> {
        let err = |e: String| CaError::Files {
            path: dir.to_path_buf(),
            message: e,
        };
        fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let ca_params = |cn: &str, path_len: Option<u8>| {
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            dn.push(DnType::OrganizationName, td);
            p.distinguished_name = dn;
            p.is_ca = match path_len {
                Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
                None => IsCa::Ca(BasicConstraints::Unconstrained),
            };
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.not_before = now - time::Duration::minutes(15);
            p.not_after = now + CA_VALIDITY;
            p.serial_number = Some(random_serial());
            p
        };
        let root_key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
        let root_cert = ca_params("spar root CA", None)
            .self_signed(&root_key)
            .map_err(|e| err(e.to_string()))?;
        let issuer_key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
        let issuer_cert = ca_params("spar issuer", Some(0))
            .signed_by(&issuer_key, &root_cert, &root_key)
            .map_err(|e| err(e.to_string()))?;
        write(root, &root_cert.pem(), 0o644)?;
        write(cert, &issuer_cert.pem(), 0o644)?;
        write(key, &issuer_key.serialize_pem(), 0o600)?;
        tracing::info!(dir = %dir.display(), "created root and issuer certificates");
        Ok(())
    }

    /// Signs a workload certificate for `id` with the CSR's public key. The
    /// CSR's own subject and names are ignored: the identity is sentry's
    /// decision. Validity starts `skew` in the past and ends after `ttl`, never
    /// beyond the issuer's own expiry.
    pub fn sign_workload(
        &self,
        csr_pem: &[u8],
        id: &SpiffeId,
        ttl: Duration,
        skew: Duration,
    ) -> Result<(String, SystemTime), CaError> {
        let pem = std::str::from_utf8(csr_pem).map_err(|e| CaError::Csr(e.to_string()))?;
        let csr = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| CaError::Csr(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(
            id.to_string()
                .try_into()
                .map_err(|e: rcgen::Error| CaError::Sign(e.to_string()))?,
        )];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = now - time::Duration::try_from(skew).unwrap_or(time::Duration::ZERO);
        let not_after = (now + time::Duration::try_from(ttl).unwrap_or(time::Duration::DAY))
            .min(self.issuer_not_after);
        p.not_after = not_after;
        p.serial_number = Some(random_serial());
        let cert = p
            .signed_by(&csr.public_key, &self.issuer, &self.issuer_key)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let until =
            SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.unix_timestamp().max(0) as u64);
        Ok((format!("{}{}", cert.pem(), self.issuer_pem), until))
    }

    /// A serving certificate for sentry itself, with the names clients may
    /// dial it by, signed like any workload's.
    pub fn sign_server(
        &self,
        id: &SpiffeId,
        dns: &[&str],
        ttl: Duration,
    ) -> Result<(String, KeyPair), CaError> {
        let key = KeyPair::generate().map_err(|e| CaError::Sign(e.to_string()))?;
        let mut p = CertificateParams::default();
        let mut sans = vec![SanType::URI(
            id.to_string()
                .try_into()
                .map_err(|e: rcgen::Error| CaError::Sign(e.to_string()))?,
        )];
        for d in dns {
            if let Ok(ip) = d.parse() {
                sans.push(SanType::IpAddress(ip));
            } else if let Ok(name) = (*d).try_into() {
                sans.push(SanType::DnsName(name));
            }
        }
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(15);
        p.not_after = (now + time::Duration::try_from(ttl).unwrap_or(time::Duration::DAY))
            .min(self.issuer_not_after);
        p.serial_number = Some(random_serial());
        let cert = p
            .signed_by(&key, &self.issuer, &self.issuer_key)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok((format!("{}{}", cert.pem(), self.issuer_pem), key))
    }
}

fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()).map(|_| f))
        .map_err(|e| CaError::Files {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    f.flush().ok();
    Ok(())
}
