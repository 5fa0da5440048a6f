//! Automatic state encryption for any store: `primaryEncryptionKey` (and
//! optionally `secondaryEncryptionKey`, for rotation) component metadata,
//! usually given through `secretKeyRef`.
//!
//! Same format as daprd, so data written by either stays readable by the
//! other: AES-GCM with the hex-decoded key (16, 24 or 32 bytes), stored as
//! `base64(nonce ‖ ciphertext)` + `||` + the key's name (the secret name the
//! key came from). New writes use the primary key; reads pick the key by name,
//! so values written under the old key stay readable after rotation.

use std::sync::Arc;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::query::{Query, QueryResponse};
use super::{
    BulkItem, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest, StateError,
    StateStore,
};
use crate::build::BuildError;

const SEPARATOR: &[u8] = b"||";

enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<AesGcm<Aes192, U12>>),
    A256(Box<Aes256Gcm>),
}

pub struct Key {
    name: String,
    cipher: Cipher,
}

impl Key {
    /// `hex_key`: 32, 48 or 64 hex digits (AES-128/192/256).
    pub fn new(name: &str, hex_key: &str) -> Result<Key, String> {
        let bytes = decode_hex(hex_key.trim())?;
        let cipher = match bytes.len() {
            16 => Cipher::A128(Box::new(
                Aes128Gcm::new_from_slice(&bytes).map_err(|e| e.to_string())?,
            )),
            24 => Cipher::A192(Box::new(
                AesGcm::<Aes192, U12>::new_from_slice(&bytes).map_err(|e| e.to_string())?,
            )),
            32 => Cipher::A256(Box::new(
                Aes256Gcm::new_from_slice(&bytes).map_err(|e| e.to_string())?,
            )),
            n => {
                return Err(format!(
                    "the key is {n} bytes; AES needs 16, 24 or 32 (32, 48 or 64 hex digits)"
                ))
            }
        };
        Ok(Key {
            name: name.to_string(),
            cipher,
        })
    }

    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, StateError> {
        let fail = |_| StateError::Backend("encryption failed".into());
        let mut out = match &self.cipher {
            Cipher::A128(c) => {
                let n = Aes128Gcm::generate_nonce(&mut OsRng);
                [n.to_vec(), c.encrypt(&n, plain).map_err(fail)?].concat()
            }
            Cipher::A192(c) => {
                let n = AesGcm::<Aes192, U12>::generate_nonce(&mut OsRng);
                [n.to_vec(), c.encrypt(&n, plain).map_err(fail)?].concat()
            }
            Cipher::A256(c) => {
                let n = Aes256Gcm::generate_nonce(&mut OsRng);
                [n.to_vec(), c.encrypt(&n, plain).map_err(fail)?].concat()
            }
        };
        let mut text = B64.encode(&out).into_bytes();
        out.clear();
        text.extend_from_slice(SEPARATOR);
        text.extend_from_slice(self.name.as_bytes());
        Ok(text)
    }

    fn open(&self, b64: &[u8]) -> Result<Vec<u8>, StateError> {
        let raw = B64
            .decode(b64)
            .map_err(|_| StateError::Backend("stored value is not valid encrypted data".into()))?;
        if raw.len() < 12 {
            return Err(StateError::Backend(
                "stored value is too short to be encrypted data".into(),
            ));
        }
        let (nonce, ct) = raw.split_at(12);
        let r = match &self.cipher {
            Cipher::A128(c) => c.decrypt(nonce.into(), ct),
            Cipher::A192(c) => c.decrypt(nonce.into(), ct),
            Cipher::A256(c) => c.decrypt(nonce.into(), ct),
        };
        r.map_err(|_| {
            StateError::Backend(format!(
                "cannot decrypt with key {:?}: wrong key or tampered data",
                self.name
            ))
        })
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the key must be hex digits (e.g. from `openssl rand -hex 32`)".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

pub struct EncryptedStore {
    inner: Arc<dyn StateStore>,
    primary: Key,
    secondary: Option<Key>,
}

/// The key's name: the secret it was resolved from, empty for a plain value.
fn key_name(c: &spar_config::Component, field: &str) -> String {
    c.spec
        .metadata
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(field))
        .and_then(|m| m.secret_key_ref.as_ref())
        .map(|r| r.name.clone())
        .unwrap_or_default()
}

/// Wraps `store` when the component asks for encryption; otherwise returns it.
pub fn wrap_if_configured(
    c: &spar_config::Component,
    store: Arc<dyn StateStore>,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let m = crate::meta::Meta::new(c);
    let key = |field: &str| -> Result<Option<Key>, BuildError> {
        match m.str(field).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => Key::new(&key_name(c, field), &v)
                .map(Some)
                .map_err(|e| m.error(field, e)),
        }
    };
    let Some(primary) = key("primaryEncryptionKey")? else {
        if m.str("secondaryEncryptionKey").is_some() {
            return Err(m.error("secondaryEncryptionKey", "needs a primaryEncryptionKey too"));
        }
        return Ok(store);
    };
    Ok(Arc::new(EncryptedStore {
        inner: store,
        primary,
        secondary: key("secondaryEncryptionKey")?,
    }))
}

impl EncryptedStore {
    fn decrypt(&self, stored: &[u8]) -> Result<Vec<u8>, StateError> {
        let at = stored
            .windows(SEPARATOR.len())
            .rposition(|w| w == SEPARATOR)
            .ok_or_else(|| {
                StateError::Backend("stored value is not encrypted (no key name)".into())
            })?;
        let (b64, name) = (&stored[..at], &stored[at + SEPARATOR.len()..]);
        let keys = std::iter::once(&self.primary).chain(self.secondary.as_ref());
        let mut last = None;
        for k in keys.filter(|k| k.name.as_bytes() == name) {
            match k.open(b64) {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            StateError::Backend(format!(
                "value was encrypted with key {:?}, which is not configured",
                String::from_utf8_lossy(name)
            ))
        }))
    }

    fn decrypt_item(&self, mut item: Item) -> Result<Item, StateError> {
        item.data = self.decrypt(&item.data)?;
        Ok(item)
    }

    fn encrypt_set(&self, r: &SetRequest) -> Result<SetRequest, StateError> {
        let mut r = r.clone();
        r.value = self.primary.seal(&r.value)?;
        Ok(r)
    }
}

#[async_trait]
impl StateStore for EncryptedStore {
    fn features(&self) -> Features {
        // Ciphertext can't be filtered or sorted.
        Features {
            query: false,
            ..self.inner.features()
        }
    }

    async fn init(&self) -> Result<(), StateError> {
        self.inner.init().await
    }

    fn missing_key_etag_conflicts(&self) -> bool {
        self.inner.missing_key_etag_conflicts()
    }

    async fn get(&self, req: &GetRequest) -> Result<Option<Item>, StateError> {
        self.inner
            .get(req)
            .await?
            .map(|i| self.decrypt_item(i))
            .transpose()
    }

    async fn bulk_get(&self, reqs: &[GetRequest]) -> Result<Vec<BulkItem>, StateError> {
        let items = self.inner.bulk_get(reqs).await?;
        Ok(items
            .into_iter()
            .map(|b| match b.item {
                Some(i) => match self.decrypt_item(i) {
                    Ok(i) => BulkItem::found(b.key, Some(i)),
                    Err(e) => BulkItem::failed(b.key, e.to_string()),
                },
                None => b,
            })
            .collect())
    }

    async fn set(&self, req: &SetRequest) -> Result<(), StateError> {
        self.inner.set(&self.encrypt_set(req)?).await
    }

    async fn delete(&self, req: &DeleteRequest) -> Result<(), StateError> {
        self.inner.delete(req).await
    }

    async fn transact(&self, ops: &[Operation]) -> Result<(), StateError> {
        let ops = ops
            .iter()
            .map(|op| match op {
                Operation::Upsert(r) => self.encrypt_set(r).map(Operation::Upsert),
                Operation::Delete(r) => Ok(Operation::Delete(r.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.transact(&ops).await
    }

    async fn query(&self, _prefix: &str, _q: &Query) -> Result<QueryResponse, StateError> {
        Err(StateError::NotSupported("query on an encrypted store"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;

    const K1: &str = "000102030405060708090a0b0c0d0e0f";
    const K2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn store(
        inner: Arc<dyn StateStore>,
        primary: (&str, &str),
        secondary: Option<(&str, &str)>,
    ) -> EncryptedStore {
        EncryptedStore {
            inner,
            primary: Key::new(primary.0, primary.1).unwrap(),
            secondary: secondary.map(|(n, k)| Key::new(n, k).unwrap()),
        }
    }

    fn set(key: &str, v: &[u8]) -> SetRequest {
        SetRequest {
            key: key.into(),
            value: v.to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn round_trip_ciphertext_and_rotation() {
        let raw: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let old = store(raw.clone(), ("old", K1), None);
        old.set(&set("k", b"plaintext value")).await.unwrap();
        let stored = raw.get(&GetRequest::new("k")).await.unwrap().unwrap().data;
        assert!(
            !stored.windows(9).any(|w| w == b"plaintext"),
            "stored bytes are not the plaintext"
        );
        assert!(stored.ends_with(b"||old"));
        assert_eq!(
            old.get(&GetRequest::new("k")).await.unwrap().unwrap().data,
            b"plaintext value"
        );

        // Rotate: new primary, old key as secondary. Old values still read;
        // new writes use the new key.
        let rotated = store(raw.clone(), ("new", K2), Some(("old", K1)));
        assert_eq!(
            rotated
                .get(&GetRequest::new("k"))
                .await
                .unwrap()
                .unwrap()
                .data,
            b"plaintext value"
        );
        rotated.set(&set("k2", b"fresh")).await.unwrap();
        assert!(raw
            .get(&GetRequest::new("k2"))
            .await
            .unwrap()
            .unwrap()
            .data
            .ends_with(b"||new"));
        // Without the old key, old values fail clearly instead of returning garbage.
        let only_new = store(raw, ("new", K2), None);
        let err = only_new.get(&GetRequest::new("k")).await.unwrap_err();
        assert!(err.to_string().contains("old"), "{err}");
    }

    #[tokio::test]
    async fn same_name_tries_both_keys() {
        let raw: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        store(raw.clone(), ("", K1), None)
            .set(&set("k", b"v"))
            .await
            .unwrap();
        let both = store(raw, ("", K2), Some(("", K1)));
        assert_eq!(
            both.get(&GetRequest::new("k")).await.unwrap().unwrap().data,
            b"v"
        );
    }

    #[test]
    fn key_validation() {
        assert!(Key::new("k", "abc").is_err());
        assert!(Key::new("k", "zz0102030405060708090a0b0c0d0e0f").is_err());
        assert!(Key::new("k", "0001").is_err());
        assert!(Key::new("k", &"ab".repeat(24)).is_ok());
    }
}
