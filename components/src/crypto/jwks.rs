//! `crypto.dapr.jwks`: keys from a JSON Web Key Set, found by `kid`. The
//! `jwks` metadata is the set itself (JSON, optionally base64), a path to
//! a file holding it, or an `http(s)://` URL. A file is read again when it
//! changes; a URL is fetched at init (within `requestTimeout`, default
//! 30 s) and again, at most every `minRefreshInterval` (default 10 m), when
//! a key is looked up — a failed refresh keeps the set already loaded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::{CryptoError, CryptoProvider, Key};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

type KeySet = HashMap<String, Arc<Key>>;

enum Source {
    Inline,
    File(PathBuf),
    Url {
        url: String,
        client: reqwest::Client,
        timeout: Duration,
        min_refresh: Duration,
    },
}

struct Loaded {
    keys: KeySet,
    /// File modification time or fetch time of `keys`.
    file_mtime: Option<SystemTime>,
    fetched: Option<Instant>,
}

pub struct Jwks {
    source: Source,
    loaded: RwLock<Option<Loaded>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn CryptoProvider>, BuildError> {
    let m = Meta::new(c);
    let jwks = m.required("jwks")?;
    let mut timeout = m.duration("requestTimeout", Duration::from_secs(30))?;
    if timeout < Duration::from_millis(1) {
        timeout = Duration::from_secs(30);
    }
    let mut min_refresh = m.duration("minRefreshInterval", Duration::from_secs(600))?;
    if min_refresh < Duration::from_secs(1) {
        min_refresh = Duration::from_secs(600);
    }
    let source = if jwks.starts_with("https://") || jwks.starts_with("http://") {
        if jwks.starts_with("http://") {
            tracing::warn!(
                component = c.name(),
                "loading a JWKS from an HTTP endpoint without TLS: not recommended in production"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| m.error("jwks", format!("HTTP client: {e}")))?;
        Source::Url {
            url: jwks,
            client,
            timeout,
            min_refresh,
        }
    } else if std::fs::metadata(&jwks).is_ok_and(|md| md.is_file()) {
        Source::File(PathBuf::from(jwks))
    } else {
        let keys = parse_inline(&jwks).map_err(|e| m.error("jwks", e))?;
        return Ok(Arc::new(Jwks {
            source: Source::Inline,
            loaded: RwLock::new(Some(Loaded {
                keys,
                file_mtime: None,
                fetched: None,
            })),
            refreshing: tokio::sync::Mutex::new(()),
        }));
    };
    Ok(Arc::new(Jwks {
        source,
        loaded: RwLock::new(None),
        refreshing: tokio::sync::Mutex::new(()),
    }))
}

/// The set given in the metadata: JSON, or base64 of it.
fn parse_inline(v: &str) -> Result<KeySet, String> {
    let decoded = STANDARD_NO_PAD.decode(v.trim_end_matches('=')).ok();
    let text = decoded.as_deref().unwrap_or(v.as_bytes());
    parse_set(text).map_err(|_| {
        "failed to parse property 'jwks': not a URL, path to local file, or JSON value (optionally base64-encoded)".to_string()
    })
}

/// A JWKS (`{"keys": [...]}`) or a single JWK, by `kid`.
pub fn parse_set(text: &[u8]) -> Result<KeySet, CryptoError> {
    let v: Value = serde_json::from_slice(text)
        .map_err(|e| CryptoError::InvalidKey(format!("invalid JWKS: {e}")))?;
    let list = match v.get("keys") {
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(CryptoError::InvalidKey("\"keys\" must be an array".into())),
        None => vec![v],
    };
    let mut out = HashMap::new();
    for k in &list {
        let key = Key::from_jwk(k)?;
        out.insert(key.kid.clone().unwrap_or_default(), Arc::new(key));
    }
    Ok(out)
}

impl Jwks {
    fn lookup(&self, kid: &str) -> Option<Result<Arc<Key>, CryptoError>> {
        let g = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let l = g.as_ref()?;
        Some(l.keys.get(kid).cloned().ok_or(CryptoError::KeyNotFound))
    }

    /// Whether the loaded set may be out of date.
    fn stale(&self) -> bool {
        let g = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let Some(l) = g.as_ref() else {
            return true;
        };
        match &self.source {
            Source::Inline => false,
            Source::File(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok() != l.file_mtime,
            Source::Url { min_refresh, .. } => {
                l.fetched.is_none_or(|t| t.elapsed() >= *min_refresh)
            }
        }
    }

    async fn load(&self) -> Result<(), CryptoError> {
        let _one = self.refreshing.lock().await;
        if !self.stale() {
            return Ok(());
        }
        let loaded = match &self.source {
            Source::Inline => return Ok(()),
            Source::File(p) => {
                let mtime = std::fs::metadata(p).and_then(|m| m.modified()).ok();
                let text = tokio::fs::read(p)
                    .await
                    .map_err(|e| CryptoError::Backend(format!("failed to read JWKS file: {e}")))?;
                Loaded {
                    keys: parse_set(&text)?,
                    file_mtime: mtime,
                    fetched: None,
                }
            }
            Source::Url {
                url,
                client,
                timeout,
                ..
            } => {
                let fetch = async {
                    let r = client.get(url).send().await?.error_for_status()?;
                    r.bytes().await
                };
                let body = tokio::time::timeout(*timeout, fetch)
                    .await
                    .map_err(|_| {
                        CryptoError::Backend(format!(
                            "failed to fetch JWKS: timed out after {timeout:?}"
                        ))
                    })?
                    .map_err(|e| CryptoError::Backend(format!("failed to fetch JWKS: {e}")))?;
                Loaded {
                    keys: parse_set(&body)?,
                    file_mtime: None,
                    fetched: Some(Instant::now()),
                }
            }
        };
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded);
        Ok(())
    }
}

#[async_trait]
impl CryptoProvider for Jwks {
    async fn init(&self) -> Result<(), CryptoError> {
        self.load().await
    }

    async fn key(&self, kid: &str) -> Result<Arc<Key>, CryptoError> {
        if self.stale() {
            if let Err(e) = self.load().await {
                // Keep serving the set already loaded, as daprd's cache does.
                if self.lookup(kid).is_none() {
                    return Err(e);
                }
                tracing::warn!("error while refreshing JWKS: {e}");
            }
        }
        self.lookup(kid)
            .unwrap_or_else(|| Err(CryptoError::Backend("no JWKS loaded".into())))
    }
}
