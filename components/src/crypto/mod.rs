//! The cryptography component kind: the [`CryptoProvider`] trait (a key
//! vault that can perform Dapr's subtle operations with the keys it
//! holds), its implementations, and Dapr's encryption scheme
//! ([`scheme`], `dapr.io/enc/v1`) that the streaming encrypt/decrypt API
//! builds on it.

pub mod conformance;
pub mod jwks;
pub mod key;
pub mod localstorage;
pub mod ops;
pub mod scheme;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use key::{Format, Key, Material};
pub use ops::Op;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    #[error("key not found")]
    KeyNotFound,
    #[error("invalid key name: {0}")]
    InvalidKeyName(String),
    #[error("failed to load key: {0}")]
    KeyLoad(String),
    #[error("failed to parse key: {0}")]
    InvalidKey(String),
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("key type mismatch")]
    KeyTypeMismatch,
    #[error("invalid nonce")]
    InvalidNonce,
    #[error("invalid tag")]
    InvalidTag,
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Backend(String),
}

/// What a subtle operation names besides its data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<'a> {
    pub key_name: &'a str,
    pub algorithm: &'a str,
    pub nonce: &'a [u8],
    pub tag: &'a [u8],
    pub associated_data: &'a [u8],
}

/// A crypto component. An implementation says how to find a key by name;
/// the operations run locally on it (as daprd's local crypto components
/// do), each checked against the key's `key_ops`, `use` and `alg`.
#[async_trait]
pub trait CryptoProvider: Send + Sync + 'static {
    /// daprd's Init: load what the component needs (a JWKS fetched once).
    async fn init(&self) -> Result<(), CryptoError> {
        Ok(())
    }

    /// A key by name, private half included.
    async fn key(&self, name: &str) -> Result<Arc<Key>, CryptoError>;

    /// The public half of an asymmetric key; a symmetric key is not found.
    async fn get_key(&self, name: &str) -> Result<Key, CryptoError> {
        self.key(name)
            .await?
            .public()
            .ok_or(CryptoError::KeyNotFound)
    }

    /// Ciphertext and tag.
    async fn encrypt(
        &self,
        plaintext: &[u8],
        p: Params<'_>,
    ) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let key = self.key(p.key_name).await?;
        ops::check(&key, Op::Encrypt, p.algorithm)?;
        ops::encrypt(&key, plaintext, p.algorithm, p.nonce, p.associated_data)
    }

    async fn decrypt(&self, ciphertext: &[u8], p: Params<'_>) -> Result<Vec<u8>, CryptoError> {
        let key = self.key(p.key_name).await?;
        ops::check(&key, Op::Decrypt, p.algorithm)?;
        if rsa_private(&key) {
            let (ct, alg, aad) = (
                ciphertext.to_vec(),
                p.algorithm.to_string(),
                p.associated_data.to_vec(),
            );
            return offload(move || ops::decrypt(&key, &ct, &alg, &[], &[], &aad)).await;
        }
        ops::decrypt(
            &key,
            ciphertext,
            p.algorithm,
            p.nonce,
            p.tag,
            p.associated_data,
        )
    }

    /// Wraps a key given as bytes (raw symmetric key, PKCS#8 or PKIX DER).
    async fn wrap_key(
        &self,
        plaintext_key: &[u8],
        p: Params<'_>,
    ) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let kek = self.key(p.key_name).await?;
        ops::check(&kek, Op::WrapKey, p.algorithm)?;
        ops::encrypt(&kek, plaintext_key, p.algorithm, p.nonce, p.associated_data)
    }

    /// The unwrapped key's bytes.
    async fn unwrap_key(&self, wrapped: &[u8], p: Params<'_>) -> Result<Vec<u8>, CryptoError> {
        let kek = self.key(p.key_name).await?;
        ops::check(&kek, Op::UnwrapKey, p.algorithm)?;
        if rsa_private(&kek) {
            let (ct, alg, aad) = (
                wrapped.to_vec(),
                p.algorithm.to_string(),
                p.associated_data.to_vec(),
            );
            return offload(move || ops::decrypt(&kek, &ct, &alg, &[], &[], &aad)).await;
        }
        ops::decrypt(
            &kek,
            wrapped,
            p.algorithm,
            p.nonce,
            p.tag,
            p.associated_data,
        )
    }

    async fn sign(&self, digest: &[u8], p: Params<'_>) -> Result<Vec<u8>, CryptoError> {
        let key = self.key(p.key_name).await?;
        ops::check(&key, Op::Sign, p.algorithm)?;
        if rsa_private(&key) {
            let (d, alg) = (digest.to_vec(), p.algorithm.to_string());
            return offload(move || ops::sign(&key, &d, &alg)).await;
        }
        ops::sign(&key, digest, p.algorithm)
    }

    async fn verify(
        &self,
        digest: &[u8],
        signature: &[u8],
        p: Params<'_>,
    ) -> Result<bool, CryptoError> {
        let key = self.key(p.key_name).await?;
        ops::check(&key, Op::Verify, p.algorithm)?;
        ops::verify(&key, digest, signature, p.algorithm)
    }
}

/// Whether operations with this key take an RSA private-key operation
/// (milliseconds of CPU).
fn rsa_private(key: &Key) -> bool {
    matches!(
        key.material,
        Material::Rsa {
            private: Some(_),
            ..
        }
    )
}

/// Runs an RSA private-key operation on the blocking pool, so the thread
/// serving the API (one runtime per listener thread) keeps answering other
/// calls meanwhile.
async fn offload<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, CryptoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CryptoError::Failed(format!("operation aborted: {e}")))?
}
