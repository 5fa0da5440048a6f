//! `crypto.dapr.jwks`: keys from a JSON Web Key Set, found by `kid`. The
//! `jwks` metadata is the set itself (JSON, optionally base64), a path to
//! a file holding it, or an `http(s)://` URL. A file is read again when it
//! changes; a URL is fetched at init (within `requestTimeout`, default
//! 30 s) and again, at most every `minRefreshInterval` (default 10 m), in
//! the background when a key is looked up (the lookup answers from the set
//! already loaded and never waits for the network) — a failed refresh
//! keeps that set.

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
    inner: Arc<Inner>,
}

struct Inner {
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
            inner: Arc::new(Inner {
                source: Source::Inline,
                loaded: RwLock::new(Some(Loaded {
                    keys,
                    file_mtime: None,
                    fetched: None,
                })),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        }));
    };
    Ok(Arc::new(Jwks {
        inner: Arc::new(Inner {
            source,
            loaded: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }),
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

impl Inner {
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
                let got = match tokio::time::timeout(*timeout, fetch).await {
                    Err(_) => Err(CryptoError::Backend(format!(
                        "failed to fetch JWKS: timed out after {timeout:?}"
                    ))),
                    Ok(Err(e)) => Err(CryptoError::Backend(format!("failed to fetch JWKS: {e}"))),
                    Ok(Ok(body)) => parse_set(&body),
                };
                match got {
                    Ok(keys) => Loaded {
                        keys,
                        file_mtime: None,
                        fetched: Some(Instant::now()),
                    },
                    Err(e) => {
                        // The next try waits a refresh interval too, so an
                        // endpoint that is down is not asked on every lookup.
                        let mut g = self.loaded.write().unwrap_or_else(|e| e.into_inner());
                        if let Some(l) = g.as_mut() {
                            l.fetched = Some(Instant::now());
                        }
                        return Err(e);
                    }
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
        self.inner.load().await
    }

    async fn key(&self, kid: &str) -> Result<Arc<Key>, CryptoError> {
        let inner = &self.inner;
        if inner.stale() {
            let loaded = inner
                .loaded
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
            let refresh_in_background = loaded && matches!(inner.source, Source::Url { .. });
            // A refresh already running will do.
            let running = inner.refreshing.try_lock().is_err();
            if refresh_in_background {
                if !running {
                    // Answer from the set in hand; a failed refresh keeps
                    // it, as daprd's cache does.
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        if let Err(e) = inner.load().await {
                            tracing::warn!("error while refreshing JWKS: {e}");
                        }
                    });
                }
            } else if let Err(e) = inner.load().await {
                if inner.lookup(kid).is_none() {
                    return Err(e);
                }
                tracing::warn!("error while reloading JWKS: {e}");
            }
        }
        inner
            .lookup(kid)
            .unwrap_or_else(|| Err(CryptoError::Backend("no JWKS loaded".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kid: &str) -> String {
        let mut k = Key::parse(
            super::super::conformance::SYMMETRIC_256_B64.as_bytes(),
            super::super::Format::Guess,
        )
        .unwrap();
        k.kid = Some(kid.into());
        serde_json::json!({"keys": [k.to_jwk()]}).to_string()
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, set("first")).unwrap();
        let c = spar_config::Component::new(
            "j",
            "crypto.dapr.jwks",
            &[("jwks", file.to_str().unwrap())],
        );
        let p = build(&c, &Default::default()).unwrap();
        p.init().await.unwrap();
        assert!(p.key("first").await.is_ok());
        assert_eq!(p.key("second").await.unwrap_err(), CryptoError::KeyNotFound);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, set("second")).unwrap();
        assert!(p.key("second").await.is_ok());
        // A broken file keeps the set loaded.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "{broken").unwrap();
        assert!(p.key("second").await.is_ok());
    }

    #[test]
    fn bad_metadata_is_refused() {
        for v in [
            "not json",
            r#"{"keys": 5}"#,
            r#"{"keys": [{"kty": "nope"}]}"#,
        ] {
            let c = spar_config::Component::new("j", "crypto.dapr.jwks", &[("jwks", v)]);
            assert!(build(&c, &Default::default()).is_err(), "{v}");
        }
        let c = spar_config::Component::new("j", "crypto.dapr.jwks", &[]);
        assert!(build(&c, &Default::default()).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_url_fails_init() {
        // A port nothing listens on: refused at once.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = format!("http://127.0.0.1:{port}/jwks");
        let c = spar_config::Component::new(
            "j",
            "crypto.dapr.jwks",
            &[("jwks", url.as_str()), ("requestTimeout", "2s")],
        );
        let p = build(&c, &Default::default()).unwrap();
        let e = p.init().await.unwrap_err();
        assert!(e.to_string().contains("failed to fetch JWKS"), "{e}");
    }

    /// A minimal HTTP/1.1 server answering every request with the body in
    /// `body` (500 when it is empty); counts requests.
    async fn serve(
        body: Arc<std::sync::Mutex<String>>,
        hits: Arc<std::sync::atomic::AtomicUsize>,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let body = body.clone();
                let hits = hits.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let b = body.lock().unwrap().clone();
                    let status = if b.is_empty() { "500 Oops" } else { "200 OK" };
                    let r = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                        b.len()
                    );
                    let _ = s.write_all(r.as_bytes()).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn a_url_is_refreshed_in_the_background_and_kept_when_down() {
        let body = Arc::new(std::sync::Mutex::new(set("first")));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let url = serve(body.clone(), hits.clone()).await;
        let c = spar_config::Component::new(
            "j",
            "crypto.dapr.jwks",
            &[("jwks", url.as_str()), ("minRefreshInterval", "1s")],
        );
        let p = build(&c, &Default::default()).unwrap();
        p.init().await.unwrap();
        assert!(p.key("first").await.is_ok());
        *body.lock().unwrap() = set("second");
        // Within the interval: no new fetch.
        assert_eq!(p.key("second").await.unwrap_err(), CryptoError::KeyNotFound);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Past it: the lookup answers from the old set and triggers a
        // refresh; the new key shows up once it is done.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.key("second").await.is_err() {
            assert!(Instant::now() < deadline, "the set was never refreshed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The endpoint fails: the set in hand keeps serving.
        body.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = hits.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..20 {
            assert!(p.key("second").await.is_ok());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = hits.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            after - before <= 1,
            "{} fetches for 20 lookups",
            after - before
        );
    }
}
