//! The cryptography building block: Dapr's encryption scheme
//! (`dapr.io/enc/v1`: gRPC `EncryptAlpha1`/`DecryptAlpha1` streams, HTTP
//! `PUT /v1.0-alpha1/crypto/{name}/encrypt|decrypt`) and the subtle
//! operations (`Subtle*Alpha1`, `POST /v1.0-alpha1/subtlecrypto/{name}/…`),
//! over the crypto components.
//!
//! For a stream the handler does the part that needs the component — the
//! file key wrapped (encrypt) or unwrapped (decrypt, once the front end has
//! read the header) — under the component's resiliency policy, and hands
//! the front end a [`Sealer`] / [`Opener`] that processes the data one
//! 64 KiB segment at a time, so the sidecar never holds more than that.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use spar_components::crypto::scheme::{
    self, Cipher, FileKey, Header, KeyWrap, Opener, SchemeError, Sealer,
};
use spar_components::crypto::{CryptoError, CryptoProvider, Format, Key, Params};

use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::{ApiError, ApiResult, Response, Runtime};

/// The crypto components by name.
#[derive(Default, Clone)]
pub struct CryptoProviders {
    map: HashMap<String, Arc<dyn CryptoProvider>>,
}

impl CryptoProviders {
    pub fn insert(&mut self, name: String, p: Arc<dyn CryptoProvider>) {
        self.map.insert(name, p);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn CryptoProvider>> {
        self.map.get(name)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// daprd's checks, in its order: none configured, no name, unknown name.
    fn provider(&self, name: &str) -> Result<Arc<dyn CryptoProvider>, ApiError> {
        if self.map.is_empty() {
            return Err(ApiError::CryptoProvidersNotConfigured);
        }
        if name.is_empty() {
            return Err(ApiError::BadRequest("missing component name".into()));
        }
        self.map
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::CryptoProviderNotFound(name.into()))
    }
}

#[derive(Debug, Clone, Default)]
pub struct EncryptOptions {
    pub component: String,
    pub key_name: String,
    pub key_wrap_algorithm: String,
    pub data_encryption_cipher: String,
    pub omit_decryption_key_name: bool,
    pub decryption_key_name: String,
}

#[derive(Debug, Clone, Default)]
pub struct DecryptOptions {
    pub component: String,
    /// Overrides the key name in the document's manifest.
    pub key_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubtleOp {
    GetKey,
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    Sign,
    Verify,
}

/// One subtle call; which fields matter depends on `op` (`data` is the
/// plaintext, ciphertext, key, wrapped key or digest).
#[derive(Debug, Clone)]
pub struct Subtle {
    pub op: SubtleOp,
    pub component: String,
    pub key_name: String,
    pub algorithm: String,
    pub data: Vec<u8>,
    pub nonce: Vec<u8>,
    pub tag: Vec<u8>,
    pub associated_data: Vec<u8>,
    pub signature: Vec<u8>,
    /// `SubtleGetKey`: 0 PEM, 1 JSON.
    pub format: i32,
}

impl Subtle {
    pub fn new(op: SubtleOp, component: String) -> Self {
        Subtle {
            op,
            component,
            key_name: String::new(),
            algorithm: String::new(),
            data: Vec::new(),
            nonce: Vec::new(),
            tag: Vec::new(),
            associated_data: Vec::new(),
            signature: Vec::new(),
            format: 0,
        }
    }
}

#[derive(Debug)]
pub enum CryptoRequest {
    /// `body`: the whole plaintext (HTTP); `None` opens a stream (gRPC).
    Encrypt {
        opts: EncryptOptions,
        body: Option<bytes::Bytes>,
    },
    Decrypt {
        opts: DecryptOptions,
        body: Option<bytes::Bytes>,
    },
    Subtle(Box<Subtle>),
}

pub enum CryptoResponse {
    /// A stream's encryption: send `header`, then feed the sealer.
    Encrypting {
        header: Vec<u8>,
        sealer: Sealer,
    },
    /// A stream's decryption: read the header, then [`Decrypting::open`].
    Decrypting(Decrypting),
    /// A whole body, encrypted or decrypted (HTTP).
    Data(Vec<u8>),
    Subtle(SubtleResult),
}

impl std::fmt::Debug for CryptoResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoResponse::Encrypting { .. } => f.write_str("Encrypting"),
            CryptoResponse::Decrypting(_) => f.write_str("Decrypting"),
            CryptoResponse::Data(d) => write!(f, "Data({} bytes)", d.len()),
            CryptoResponse::Subtle(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug)]
pub enum SubtleResult {
    Key { name: String, public_key: String },
    Encrypted { ciphertext: Vec<u8>, tag: Vec<u8> },
    Decrypted(Vec<u8>),
    Wrapped { wrapped_key: Vec<u8>, tag: Vec<u8> },
    Unwrapped(Vec<u8>),
    Signed(Vec<u8>),
    Verified(bool),
}

/// A decryption authorised and bound to its component, waiting for the
/// document's header.
pub struct Decrypting {
    provider: Arc<dyn CryptoProvider>,
    component: String,
    key_name: String,
    live: Arc<Live>,
    metrics: Option<crate::metrics::ComponentMetrics>,
}

impl Decrypting {
    /// Unwraps the file key named by the header (or the caller) and checks
    /// the header's MAC. As daprd does, a key that cannot be unwrapped is
    /// not reported as such: the MAC check fails instead, so a caller
    /// cannot probe which keys exist.
    pub async fn open(&self, h: &Header) -> Result<Opener, ApiError> {
        let key_name = if self.key_name.is_empty() {
            &h.key_name
        } else {
            &self.key_name
        };
        if key_name.is_empty() {
            return Err(op_error(SchemeError::KeyNameMissing));
        }
        let started = Instant::now();
        let params = Params {
            key_name,
            algorithm: h.key_wrap.algorithm(),
            ..Default::default()
        };
        let r = guarded(&self.live, &self.component, || {
            self.provider.unwrap_key(&h.wrapped_key, params)
        })
        .await;
        if let Some(m) = &self.metrics {
            m.crypto(&self.component, "crypto_op", r.is_ok(), started);
        }
        let fk: [u8; 32] = match r {
            Ok(k) => k.try_into().unwrap_or([0u8; 32]),
            Err(e) => {
                tracing::debug!(component = %self.component, "unwrapping the file key failed: {e}");
                [0u8; 32]
            }
        };
        let key = FileKey::import(fk, h.nonce_prefix, h.cipher);
        key.verify(h).map_err(op_error)?;
        Ok(Opener::new(key))
    }
}

fn op_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::Crypto(e.to_string())
}

/// Runs a component call under its `component_outbound` policy. Only
/// backend failures (a JWKS that cannot be fetched, a key file that cannot
/// be read) are worth retrying; a wrong key stays wrong.
async fn guarded<T, F, Fut>(live: &Live, component: &str, op: F) -> Result<T, CryptoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CryptoError>>,
{
    let Some(p) = live.resiliency.component_outbound(component) else {
        let mut op = op;
        return op().await;
    };
    p.run(op, |r| match r {
        Err(CryptoError::Backend(_) | CryptoError::KeyLoad(_)) => Verdict::Failed(None),
        _ => Verdict::Success,
    })
    .await
    .map_err(|r| match r {
        Refused::Failed(e) => e,
        Refused::Timeout(d) => {
            CryptoError::Backend(format!("timeout after {d:?} (resiliency policy)"))
        }
        Refused::BreakerOpen => CryptoError::Backend("circuit breaker is open".into()),
    })
}

pub async fn handle(rt: &Runtime, req: CryptoRequest) -> ApiResult {
    let live = rt.live();
    let out = match req {
        CryptoRequest::Encrypt { opts, body } => {
            let (header, mut sealer) = encrypting(rt, &live, &opts).await?;
            match body {
                None => CryptoResponse::Encrypting { header, sealer },
                Some(body) => {
                    let mut out = header;
                    out.reserve(body.len() + body.len().div_ceil(scheme::SEGMENT) * scheme::TAG);
                    sealer
                        .push(&body, &mut |s| out.extend_from_slice(&s))
                        .map_err(op_error)?;
                    if let Some(s) = sealer.finish() {
                        out.extend_from_slice(&s);
                    }
                    CryptoResponse::Data(out)
                }
            }
        }
        CryptoRequest::Decrypt { opts, body } => {
            let d = Decrypting {
                provider: live.crypto.provider(&opts.component)?,
                component: opts.component,
                key_name: opts.key_name,
                live: live.clone(),
                metrics: rt.metrics.clone(),
            };
            match body {
                None => CryptoResponse::Decrypting(d),
                Some(body) => CryptoResponse::Data(decrypt_whole(&d, &body).await?),
            }
        }
        CryptoRequest::Subtle(s) => CryptoResponse::Subtle(subtle(rt, &live, *s).await?),
    };
    Ok(Response::Crypto(Box::new(out)))
}

/// Validates the options, wraps a fresh file key with the component and
/// writes the header.
async fn encrypting(
    rt: &Runtime,
    live: &Arc<Live>,
    o: &EncryptOptions,
) -> Result<(Vec<u8>, Sealer), ApiError> {
    let provider = live.crypto.provider(&o.component)?;
    // The gRPC front end checks these before the chain, with its own
    // wording (daprd's order there); HTTP reads them from headers.
    if o.key_name.is_empty() {
        return Err(ApiError::BadRequest(
            "missing header 'dapr-key-name'".into(),
        ));
    }
    if o.key_wrap_algorithm.is_empty() {
        return Err(ApiError::BadRequest(
            "missing header 'dapr-key-wrap-algorithm'".into(),
        ));
    }
    let key_wrap = KeyWrap::from_name(&o.key_wrap_algorithm).ok_or_else(|| {
        op_error(format!(
            "option Algorithm is not valid: algorithm {} is not supported",
            o.key_wrap_algorithm.to_ascii_uppercase()
        ))
    })?;
    let cipher = if o.data_encryption_cipher.is_empty() {
        Cipher::AesGcm
    } else {
        Cipher::from_name(&o.data_encryption_cipher).ok_or_else(|| {
            op_error(format!(
                "option Cipher is not valid: cipher {} is not supported",
                o.data_encryption_cipher.to_ascii_uppercase()
            ))
        })?
    };
    let fk = FileKey::generate(cipher);
    let started = Instant::now();
    let params = Params {
        key_name: &o.key_name,
        algorithm: key_wrap.algorithm(),
        ..Default::default()
    };
    let r = guarded(live, &o.component, || {
        provider.wrap_key(fk.file_key(), params)
    })
    .await;
    if let Some(m) = &rt.metrics {
        m.crypto(&o.component, "crypto_op", r.is_ok(), started);
    }
    let (wrapped, _tag) = r.map_err(|e| op_error(format!("failed to wrap the file key: {e}")))?;
    let manifest_name = if o.omit_decryption_key_name {
        ""
    } else if !o.decryption_key_name.is_empty() {
        &o.decryption_key_name
    } else {
        &o.key_name
    };
    let header = fk.header(manifest_name, key_wrap, &wrapped, cipher);
    Ok((header, Sealer::new(fk)))
}

async fn decrypt_whole(d: &Decrypting, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let (h, used) = scheme::parse_header(body)
        .map_err(op_error)?
        .ok_or_else(|| op_error(scheme::incomplete_header(body)))?;
    let mut opener = d.open(&h).await?;
    let mut out = Vec::with_capacity(body.len() - used);
    opener
        .push(&body[used..], &mut |p| out.extend_from_slice(&p))
        .map_err(op_error)?;
    if let Some(p) = opener.finish().map_err(op_error)? {
        out.extend_from_slice(&p);
    }
    Ok(out)
}

async fn subtle(rt: &Runtime, live: &Live, s: Subtle) -> Result<SubtleResult, ApiError> {
    let provider = live.crypto.provider(&s.component)?;
    let c = s.component.as_str();
    let params = Params {
        key_name: &s.key_name,
        algorithm: &s.algorithm,
        nonce: &s.nonce,
        tag: &s.tag,
        associated_data: &s.associated_data,
    };
    let started = Instant::now();
    let record = |ok: bool, op: &str| {
        if let Some(m) = &rt.metrics {
            m.crypto(c, op, ok, started);
        }
    };
    // daprd answers subtle failures with a generic message (a precise one
    // could be an oracle, e.g. for CBC padding) and logs the cause.
    let generic = |what: &str, e: CryptoError| {
        tracing::debug!(component = c, "subtle {what}: {e}");
        op_error(format!("failed to {what}"))
    };
    let p = &provider;
    Ok(match s.op {
        SubtleOp::GetKey => {
            if !matches!(s.format, 0 | 1) {
                return Err(ApiError::BadRequest("invalid key format".into()));
            }
            let r = guarded(live, c, || p.get_key(&s.key_name)).await;
            record(r.is_ok(), "get");
            let key = r.map_err(|e| ApiError::CryptoGetKey {
                name: s.key_name.clone(),
                reason: e.to_string(),
            })?;
            let public_key = if s.format == 0 {
                key.public_pem().map_err(|e| ApiError::CryptoGetKey {
                    name: s.key_name.clone(),
                    reason: e.to_string(),
                })?
            } else {
                key.to_jwk().to_string()
            };
            SubtleResult::Key {
                name: s.key_name,
                public_key,
            }
        }
        SubtleOp::Encrypt => {
            let r = guarded(live, c, || p.encrypt(&s.data, params)).await;
            record(r.is_ok(), "crypto_op");
            let (ciphertext, tag) = r.map_err(|e| generic("encrypt", e))?;
            SubtleResult::Encrypted { ciphertext, tag }
        }
        SubtleOp::Decrypt => {
            let r = guarded(live, c, || p.decrypt(&s.data, params)).await;
            record(r.is_ok(), "crypto_op");
            SubtleResult::Decrypted(r.map_err(|e| generic("decrypt", e))?)
        }
        SubtleOp::WrapKey => {
            let key = Key::parse(&s.data, Format::Guess)
                .and_then(|k| k.serialize())
                .map_err(|e| op_error(format!("failed to parse plaintext key: {e}")))?;
            let r = guarded(live, c, || p.wrap_key(&key, params)).await;
            record(r.is_ok(), "crypto_op");
            let (wrapped_key, tag) = r.map_err(|e| generic("wrap key", e))?;
            SubtleResult::Wrapped { wrapped_key, tag }
        }
        SubtleOp::UnwrapKey => {
            let r = guarded(live, c, || p.unwrap_key(&s.data, params)).await;
            record(r.is_ok(), "crypto_op");
            SubtleResult::Unwrapped(r.map_err(|e| generic("unwrap key", e))?)
        }
        SubtleOp::Sign => {
            let r = guarded(live, c, || p.sign(&s.data, params)).await;
            record(r.is_ok(), "crypto_op");
            SubtleResult::Signed(r.map_err(|e| generic("sign", e))?)
        }
        SubtleOp::Verify => {
            let r = guarded(live, c, || p.verify(&s.data, &s.signature, params)).await;
            record(r.is_ok(), "crypto_op");
            SubtleResult::Verified(r.map_err(|e| generic("verify signature", e))?)
        }
    })
}
