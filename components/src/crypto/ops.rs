//! The subtle operations a local crypto component performs with a key it
//! holds — encrypt, decrypt, wrap, unwrap, sign, verify — by algorithm
//! name, with the algorithms and argument rules of daprd's local crypto
//! components (JWA names; nonce, tag and associated data as the caller
//! passes them). Every primitive comes from the RustCrypto crates.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss};

use super::key::{Key, Material};
use super::CryptoError;

/// A key operation (JWK `key_ops` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    Sign,
    Verify,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
            Op::WrapKey => "wrapKey",
            Op::UnwrapKey => "unwrapKey",
            Op::Sign => "sign",
            Op::Verify => "verify",
        }
    }
}

/// Whether the key's `key_ops`, `use` and `alg` allow this operation with
/// this algorithm (no restriction: allowed).
pub fn check(key: &Key, op: Op, alg: &str) -> Result<(), CryptoError> {
    if !key.key_ops.is_empty() && !key.key_ops.iter().any(|o| o == op.as_str()) {
        return Err(CryptoError::NotAllowed(format!(
            "key cannot perform the '{}' operation",
            op.as_str()
        )));
    }
    if let Some(u) = key.use_.as_deref().filter(|u| !u.is_empty()) {
        let want = match op {
            Op::Sign | Op::Verify => "sig",
            _ => "enc",
        };
        if u != want {
            return Err(CryptoError::NotAllowed(format!(
                "key cannot perform the '{}' operation",
                op.as_str()
            )));
        }
    }
    if let Some(a) = key.alg.as_deref().filter(|a| !a.is_empty()) {
        if a != alg {
            return Err(CryptoError::NotAllowed(format!(
                "key cannot be used with algorithm '{alg}'"
            )));
        }
    }
    Ok(())
}

fn unsupported() -> CryptoError {
    CryptoError::UnsupportedAlgorithm
}

fn mismatch() -> CryptoError {
    CryptoError::KeyTypeMismatch
}

fn oct(key: &Key) -> Result<&[u8], CryptoError> {
    match &key.material {
        Material::Oct(k) => Ok(k),
        _ => Err(mismatch()),
    }
}

/// Key size an `A128…`/`A192…`/`A256…` algorithm takes.
fn aes_size(alg: &str) -> usize {
    match alg.get(1..4) {
        Some("128") => 16,
        Some("192") => 24,
        Some("256") => 32,
        _ => 0,
    }
}

/// Encrypts; the answer is the ciphertext and, for AEAD ciphers, the tag.
pub fn encrypt(
    key: &Key,
    plaintext: &[u8],
    alg: &str,
    nonce: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    match alg {
        "A128CBC" | "A192CBC" | "A256CBC" => {
            let k = oct(key)?;
            Ok((cbc_encrypt(k, alg, nonce, plaintext)?, Vec::new()))
        }
        "A128GCM" | "A192GCM" | "A256GCM" => {
            let k = oct(key)?;
            if k.len() != aes_size(alg) {
                return Err(mismatch());
            }
            gcm_seal(k, nonce, plaintext, aad)
        }
        "A128KW" | "A192KW" | "A256KW" => {
            let k = oct(key)?;
            Ok((kw_wrap(k, alg, plaintext)?, Vec::new()))
        }
        "C20P" | "C20PKW" | "XC20P" | "XC20PKW" => {
            let k = oct(key)?;
            chacha_seal(k, alg, nonce, plaintext, aad)
        }
        "RSA1_5" | "RSA-OAEP" | "RSA-OAEP-256" | "RSA-OAEP-384" | "RSA-OAEP-512" => {
            let Material::Rsa { public, .. } = &key.material else {
                return Err(mismatch());
            };
            let mut rng = rsa::rand_core::OsRng;
            let r = match alg {
                "RSA1_5" => public.encrypt(&mut rng, Pkcs1v15Encrypt, plaintext),
                _ => public.encrypt(&mut rng, oaep(alg, aad)?, plaintext),
            };
            r.map(|c| (c, Vec::new()))
                .map_err(|e| CryptoError::Failed(e.to_string()))
        }
        _ => Err(unsupported()),
    }
}

pub fn decrypt(
    key: &Key,
    ciphertext: &[u8],
    alg: &str,
    nonce: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    match alg {
        "A128CBC" | "A192CBC" | "A256CBC" => cbc_decrypt(oct(key)?, alg, nonce, ciphertext),
        "A128GCM" | "A192GCM" | "A256GCM" => {
            let k = oct(key)?;
            if k.len() != aes_size(alg) {
                return Err(mismatch());
            }
            gcm_open(k, nonce, ciphertext, tag, aad)
        }
        "A128KW" | "A192KW" | "A256KW" => kw_unwrap(oct(key)?, alg, ciphertext),
        "C20P" | "C20PKW" | "XC20P" | "XC20PKW" => {
            chacha_open(oct(key)?, alg, nonce, ciphertext, tag, aad)
        }
        "RSA1_5" | "RSA-OAEP" | "RSA-OAEP-256" | "RSA-OAEP-384" | "RSA-OAEP-512" => {
            let Material::Rsa {
                private: Some(private),
                ..
            } = &key.material
            else {
                return Err(mismatch());
            };
            // Blinded: the private exponent's timing does not follow the
            // ciphertext (the rsa crate's arithmetic is not constant time).
            let mut rng = rsa::rand_core::OsRng;
            let r = match alg {
                "RSA1_5" => private.decrypt_blinded(&mut rng, Pkcs1v15Encrypt, ciphertext),
                _ => private.decrypt_blinded(&mut rng, oaep(alg, aad)?, ciphertext),
            };
            r.map_err(|_| CryptoError::Failed("decryption error".into()))
        }
        _ => Err(unsupported()),
    }
}

/// OAEP with the algorithm's hash for both the label and MGF1 (as Go's
/// `rsa.EncryptOAEP`); the associated data is the label.
fn oaep(alg: &str, aad: &[u8]) -> Result<Oaep, CryptoError> {
    let mut o = match alg {
        "RSA-OAEP" => Oaep::new::<sha1::Sha1>(),
        "RSA-OAEP-256" => Oaep::new::<sha2::Sha256>(),
        "RSA-OAEP-384" => Oaep::new::<sha2::Sha384>(),
        "RSA-OAEP-512" => Oaep::new::<sha2::Sha512>(),
        _ => return Err(unsupported()),
    };
    if !aad.is_empty() {
        // The rsa crate takes labels as text only.
        let label = std::str::from_utf8(aad)
            .map_err(|_| CryptoError::Failed("RSA-OAEP label must be UTF-8 text".into()))?;
        o.label = Some(label.to_string());
    }
    Ok(o)
}

fn cbc_encrypt(k: &[u8], alg: &str, iv: &[u8], pt: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use cbc::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    if k.len() != aes_size(alg) {
        return Err(mismatch());
    }
    if iv.len() != 16 {
        return Err(CryptoError::InvalidNonce);
    }
    Ok(match k.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(|_| mismatch())?
            .encrypt_padded_vec_mut::<Pkcs7>(pt),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(|_| mismatch())?
            .encrypt_padded_vec_mut::<Pkcs7>(pt),
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(|_| mismatch())?
            .encrypt_padded_vec_mut::<Pkcs7>(pt),
    })
}

fn cbc_decrypt(k: &[u8], alg: &str, iv: &[u8], ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    if k.len() != aes_size(alg) {
        return Err(mismatch());
    }
    if iv.len() != 16 {
        return Err(CryptoError::InvalidNonce);
    }
    if !ct.len().is_multiple_of(16) {
        return Err(CryptoError::Failed("invalid ciphertext length".into()));
    }
    let padding = |_| CryptoError::Failed("invalid padding".into());
    match k.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(|_| mismatch())?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(padding),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(|_| mismatch())?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(padding),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(|_| mismatch())?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(padding),
    }
}

type Aes192Gcm = aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

fn gcm_seal(
    k: &[u8],
    nonce: &[u8],
    pt: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    if nonce.len() != 12 {
        return Err(CryptoError::InvalidNonce);
    }
    let n = aes_gcm::Nonce::from_slice(nonce);
    let mut buf = pt.to_vec();
    let tag = match k.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(k)
            .map_err(|_| mismatch())?
            .encrypt_in_place_detached(n, aad, &mut buf),
        24 => Aes192Gcm::new_from_slice(k)
            .map_err(|_| mismatch())?
            .encrypt_in_place_detached(n, aad, &mut buf),
        32 => aes_gcm::Aes256Gcm::new_from_slice(k)
            .map_err(|_| mismatch())?
            .encrypt_in_place_detached(n, aad, &mut buf),
        _ => return Err(mismatch()),
    }
    .map_err(|_| CryptoError::Failed("encryption failed".into()))?;
    Ok((buf, tag.to_vec()))
}

fn gcm_open(
    k: &[u8],
    nonce: &[u8],
    ct: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if nonce.len() != 12 {
        return Err(CryptoError::InvalidNonce);
    }
    if tag.len() != 16 {
        return Err(CryptoError::InvalidTag);
    }
    let n = aes_gcm::Nonce::from_slice(nonce);
    let t = aes_gcm::Tag::from_slice(tag);
    let mut buf = ct.to_vec();
    match k.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(k)
            .map_err(|_| mismatch())?
            .decrypt_in_place_detached(n, aad, &mut buf, t),
        24 => Aes192Gcm::new_from_slice(k)
            .map_err(|_| mismatch())?
            .decrypt_in_place_detached(n, aad, &mut buf, t),
        32 => aes_gcm::Aes256Gcm::new_from_slice(k)
            .map_err(|_| mismatch())?
            .decrypt_in_place_detached(n, aad, &mut buf, t),
        _ => return Err(mismatch()),
    }
    .map_err(|_| CryptoError::Failed("message authentication failed".into()))?;
    Ok(buf)
}

fn chacha_seal(
    k: &[u8],
    alg: &str,
    nonce: &[u8],
    pt: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
    if k.len() != 32 {
        return Err(mismatch());
    }
    let mut buf = pt.to_vec();
    let tag = if alg.starts_with('X') {
        if nonce.len() != 24 {
            return Err(CryptoError::InvalidNonce);
        }
        XChaCha20Poly1305::new_from_slice(k)
            .map_err(|_| mismatch())?
            .encrypt_in_place_detached(nonce.into(), aad, &mut buf)
    } else {
        if nonce.len() != 12 {
            return Err(CryptoError::InvalidNonce);
        }
        ChaCha20Poly1305::new_from_slice(k)
            .map_err(|_| mismatch())?
            .encrypt_in_place_detached(nonce.into(), aad, &mut buf)
    }
    .map_err(|_| CryptoError::Failed("encryption failed".into()))?;
    Ok((buf, tag.to_vec()))
}

fn chacha_open(
    k: &[u8],
    alg: &str,
    nonce: &[u8],
    ct: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
    if k.len() != 32 {
        return Err(mismatch());
    }
    let want_nonce = if alg.starts_with('X') { 24 } else { 12 };
    if nonce.len() != want_nonce {
        return Err(CryptoError::InvalidNonce);
    }
    if tag.len() != 16 {
        return Err(CryptoError::InvalidTag);
    }
    let mut buf = ct.to_vec();
    let t = chacha20poly1305::Tag::from_slice(tag);
    if want_nonce == 24 {
        XChaCha20Poly1305::new_from_slice(k)
            .map_err(|_| mismatch())?
            .decrypt_in_place_detached(nonce.into(), aad, &mut buf, t)
    } else {
        ChaCha20Poly1305::new_from_slice(k)
            .map_err(|_| mismatch())?
            .decrypt_in_place_detached(nonce.into(), aad, &mut buf, t)
    }
    .map_err(|_| CryptoError::Failed("message authentication failed".into()))?;
    Ok(buf)
}

/// AES key wrap (RFC 3394).
fn kw_wrap(k: &[u8], alg: &str, pt: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if k.len() != aes_size(alg) {
        return Err(mismatch());
    }
    let fail = |e: aes_kw::Error| CryptoError::Failed(format!("key wrap: {e}"));
    match k.len() {
        16 => aes_kw::KekAes128::try_from(k)
            .map_err(|_| mismatch())?
            .wrap_vec(pt)
            .map_err(fail),
        24 => aes_kw::KekAes192::try_from(k)
            .map_err(|_| mismatch())?
            .wrap_vec(pt)
            .map_err(fail),
        _ => aes_kw::KekAes256::try_from(k)
            .map_err(|_| mismatch())?
            .wrap_vec(pt)
            .map_err(fail),
    }
}

fn kw_unwrap(k: &[u8], alg: &str, ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if k.len() != aes_size(alg) {
        return Err(mismatch());
    }
    let fail = |_| CryptoError::Failed("integrity check failed".into());
    match k.len() {
        16 => aes_kw::KekAes128::try_from(k)
            .map_err(|_| mismatch())?
            .unwrap_vec(ct)
            .map_err(fail),
        24 => aes_kw::KekAes192::try_from(k)
            .map_err(|_| mismatch())?
            .unwrap_vec(ct)
            .map_err(fail),
        _ => aes_kw::KekAes256::try_from(k)
            .map_err(|_| mismatch())?
            .unwrap_vec(ct)
            .map_err(fail),
    }
}

/// Signs a digest (EdDSA: the message), as daprd: RSASSA-PKCS1-v1_5,
/// RSASSA-PSS (salt as long as the key allows, as Go signs), ECDSA (ASN.1
/// DER), Ed25519.
pub fn sign(key: &Key, digest: &[u8], alg: &str) -> Result<Vec<u8>, CryptoError> {
    let fail = |e: String| CryptoError::Failed(e);
    match (alg, &key.material) {
        (
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512",
            Material::Rsa { private, .. },
        ) => {
            let p = private.as_ref().ok_or_else(mismatch)?;
            let mut rng = rsa::rand_core::OsRng;
            let scheme_err = |e: rsa::Error| fail(e.to_string());
            if alg.starts_with("RS") {
                let s = match alg {
                    "RS256" => Pkcs1v15Sign::new::<sha2::Sha256>(),
                    "RS384" => Pkcs1v15Sign::new::<sha2::Sha384>(),
                    _ => Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                p.sign_with_rng(&mut rng, s, digest).map_err(scheme_err)
            } else {
                let h = hash_len(alg);
                let salt = pss_max_salt(rsa::traits::PublicKeyParts::n(p).bits(), h);
                let s = match alg {
                    "PS256" => Pss::new_with_salt::<sha2::Sha256>(salt),
                    "PS384" => Pss::new_with_salt::<sha2::Sha384>(salt),
                    _ => Pss::new_with_salt::<sha2::Sha512>(salt),
                };
                p.sign_with_rng(&mut rng, s, digest).map_err(scheme_err)
            }
        }
        ("ES256" | "ES384" | "ES512", Material::P256 { private, .. }) => {
            let sk = p256::ecdsa::SigningKey::from(private.as_ref().ok_or_else(mismatch)?);
            let sig: p256::ecdsa::Signature =
                sk.sign_prehash(digest).map_err(|e| fail(e.to_string()))?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        ("ES256" | "ES384" | "ES512", Material::P384 { private, .. }) => {
            let sk = p384::ecdsa::SigningKey::from(private.as_ref().ok_or_else(mismatch)?);
            let sig: p384::ecdsa::Signature =
                sk.sign_prehash(digest).map_err(|e| fail(e.to_string()))?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        ("ES256" | "ES384" | "ES512", Material::P521 { private, .. }) => {
            let sk = private.as_ref().ok_or_else(mismatch)?;
            let sk = p521::ecdsa::SigningKey::from_bytes(&sk.to_bytes())
                .map_err(|e| fail(e.to_string()))?;
            let sig: p521::ecdsa::Signature =
                sk.sign_prehash(digest).map_err(|e| fail(e.to_string()))?;
            Ok(sig.to_der().as_bytes().to_vec())
        }
        ("EdDSA", Material::Ed25519 { private, .. }) => {
            use ed25519_dalek::Signer;
            let sk = private.as_ref().ok_or_else(mismatch)?;
            Ok(sk.sign(digest).to_bytes().to_vec())
        }
        (
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "ES512"
            | "EdDSA",
            _,
        ) => Err(mismatch()),
        _ => Err(unsupported()),
    }
}

/// Checks a signature; a signature that does not match is `Ok(false)`.
pub fn verify(key: &Key, digest: &[u8], sig: &[u8], alg: &str) -> Result<bool, CryptoError> {
    match (alg, &key.material) {
        (
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512",
            Material::Rsa { public, .. },
        ) => {
            if alg.starts_with("RS") {
                let s = match alg {
                    "RS256" => Pkcs1v15Sign::new::<sha2::Sha256>(),
                    "RS384" => Pkcs1v15Sign::new::<sha2::Sha384>(),
                    _ => Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                Ok(public.verify(s, digest, sig).is_ok())
            } else {
                // Go signs with the longest salt and verifies any length:
                // accept both salts in use (the longest, the hash's length).
                use rsa::traits::PublicKeyParts;
                let h = hash_len(alg);
                let max = pss_max_salt(public.n().bits(), h);
                Ok([max, h].into_iter().any(|salt| {
                    let s = match alg {
                        "PS256" => Pss::new_with_salt::<sha2::Sha256>(salt),
                        "PS384" => Pss::new_with_salt::<sha2::Sha384>(salt),
                        _ => Pss::new_with_salt::<sha2::Sha512>(salt),
                    };
                    public.verify(s, digest, sig).is_ok()
                }))
            }
        }
        ("ES256" | "ES384" | "ES512", Material::P256 { public, .. }) => {
            let vk = p256::ecdsa::VerifyingKey::from(public);
            let Ok(s) = p256::ecdsa::Signature::from_der(sig) else {
                return Ok(false);
            };
            Ok(vk.verify_prehash(digest, &s).is_ok())
        }
        ("ES256" | "ES384" | "ES512", Material::P384 { public, .. }) => {
            let vk = p384::ecdsa::VerifyingKey::from(public);
            let Ok(s) = p384::ecdsa::Signature::from_der(sig) else {
                return Ok(false);
            };
            Ok(vk.verify_prehash(digest, &s).is_ok())
        }
        ("ES256" | "ES384" | "ES512", Material::P521 { public, .. }) => {
            let Ok(vk) = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()) else {
                return Ok(false);
            };
            let Ok(s) = p521::ecdsa::Signature::from_der(sig) else {
                return Ok(false);
            };
            Ok(vk.verify_prehash(digest, &s).is_ok())
        }
        ("EdDSA", Material::Ed25519 { public, .. }) => {
            let Ok(s) = ed25519_dalek::Signature::from_slice(sig) else {
                return Ok(false);
            };
            Ok(public.verify_strict(digest, &s).is_ok())
        }
        (
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "ES512"
            | "EdDSA",
            _,
        ) => Err(mismatch()),
        _ => Err(unsupported()),
    }
}

fn hash_len(alg: &str) -> usize {
    match &alg[alg.len().saturating_sub(3)..] {
        "384" => 48,
        "512" => 64,
        _ => 32,
    }
}

/// The longest PSS salt a key takes: emLen − hLen − 2.
fn pss_max_salt(bits: usize, h: usize) -> usize {
    let em_len = bits.saturating_sub(1).div_ceil(8);
    em_len.saturating_sub(h + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oct(k: &[u8]) -> Key {
        Key::new(Material::Oct(k.to_vec()))
    }

    #[test]
    fn symmetric_round_trips() {
        let pt = b"the quick brown fox";
        for (alg, klen, nlen) in [
            ("A128GCM", 16, 12),
            ("A192GCM", 24, 12),
            ("A256GCM", 32, 12),
            ("A256CBC", 32, 16),
            ("A128CBC", 16, 16),
            ("C20P", 32, 12),
            ("XC20P", 32, 24),
        ] {
            let k = oct(&vec![9u8; klen]);
            let nonce = vec![1u8; nlen];
            let (ct, tag) = encrypt(&k, pt, alg, &nonce, b"ad").unwrap();
            assert_eq!(
                decrypt(&k, &ct, alg, &nonce, &tag, b"ad").unwrap(),
                pt,
                "{alg}"
            );
            if !tag.is_empty() {
                let mut bad = tag.clone();
                bad[0] ^= 1;
                assert!(decrypt(&k, &ct, alg, &nonce, &bad, b"ad").is_err(), "{alg}");
            }
        }
        let k = oct(&[5u8; 32]);
        let w = encrypt(&k, &[1u8; 32], "A256KW", &[], &[]).unwrap().0;
        assert_eq!(w.len(), 40);
        assert_eq!(decrypt(&k, &w, "A256KW", &[], &[], &[]).unwrap(), [1u8; 32]);
        assert!(matches!(
            encrypt(&k, pt, "A256GCM", &[0u8; 5], &[]),
            Err(CryptoError::InvalidNonce)
        ));
        assert!(matches!(
            encrypt(&k, pt, "A128GCM", &[0u8; 12], &[]),
            Err(CryptoError::KeyTypeMismatch)
        ));
        assert!(matches!(
            encrypt(&k, pt, "A256CBC-HS512", &[0u8; 12], &[]),
            Err(CryptoError::UnsupportedAlgorithm)
        ));
    }

    /// RFC 3394 §4.6: 256-bit key data with a 256-bit KEK.
    #[test]
    fn aes_kw_known_answer() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let kek = oct(&hex(
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        ));
        let data = hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        let want =
            hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21");
        assert_eq!(encrypt(&kek, &data, "A256KW", &[], &[]).unwrap().0, want);
    }

    #[test]
    fn key_restrictions() {
        let mut k = oct(&[1u8; 32]);
        k.key_ops = vec!["encrypt".into()];
        assert!(check(&k, Op::Encrypt, "A256GCM").is_ok());
        assert!(check(&k, Op::Decrypt, "A256GCM").is_err());
        k.key_ops.clear();
        k.use_ = Some("sig".into());
        assert!(check(&k, Op::WrapKey, "A256KW").is_err());
        k.use_ = None;
        k.alg = Some("A256KW".into());
        assert!(check(&k, Op::WrapKey, "A256KW").is_ok());
        assert!(check(&k, Op::WrapKey, "A128KW").is_err());
    }

    #[test]
    fn signatures() {
        let sk = p256::SecretKey::from_slice(&[4u8; 32]).unwrap();
        let k = Key::new(Material::P256 {
            public: sk.public_key(),
            private: Some(sk),
        });
        let digest = [7u8; 32];
        let sig = sign(&k, &digest, "ES256").unwrap();
        assert!(verify(&k.public().unwrap(), &digest, &sig, "ES256").unwrap());
        assert!(!verify(&k, &[8u8; 32], &sig, "ES256").unwrap());
        assert!(matches!(
            sign(&k.public().unwrap(), &digest, "ES256"),
            Err(CryptoError::KeyTypeMismatch)
        ));
        let k = Key::parse(
            crate::crypto::conformance::EC_P521_PEM.as_bytes(),
            crate::crypto::Format::Pem,
        )
        .unwrap();
        let digest = [9u8; 64];
        let sig = sign(&k, &digest, "ES512").unwrap();
        assert!(verify(&k.public().unwrap(), &digest, &sig, "ES512").unwrap());
        assert!(!verify(&k, &[1u8; 64], &sig, "ES512").unwrap());
        let ed = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]);
        let k = Key::new(Material::Ed25519 {
            public: ed.verifying_key(),
            private: Some(ed),
        });
        let sig = sign(&k, b"message", "EdDSA").unwrap();
        assert!(verify(&k, b"message", &sig, "EdDSA").unwrap());
        assert!(!verify(&k, b"other", &sig, "EdDSA").unwrap());
    }
}
