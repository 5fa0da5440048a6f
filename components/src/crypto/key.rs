//! Keys as Dapr's crypto components hold them: symmetric bytes, RSA, EC
//! (P-256, P-384) or Ed25519, each with the JSON Web Key attributes that
//! limit its use (`kid`, `alg`, `use`, `key_ops`). Parsed from a JWK, a PEM
//! block (PKCS#1, PKCS#8, SEC1, PKIX) or raw bytes (optionally base64), by
//! the same rules as daprd's `ParseKey`.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::elliptic_curve;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value};

use super::CryptoError;

/// The key itself.
#[derive(Clone)]
pub enum Material {
    Oct(Vec<u8>),
    Rsa {
        public: RsaPublicKey,
        private: Option<RsaPrivateKey>,
    },
    P256 {
        public: p256::PublicKey,
        private: Option<p256::SecretKey>,
    },
    P384 {
        public: p384::PublicKey,
        private: Option<p384::SecretKey>,
    },
    P521 {
        public: p521::PublicKey,
        private: Option<p521::SecretKey>,
    },
    Ed25519 {
        public: ed25519_dalek::VerifyingKey,
        private: Option<ed25519_dalek::SigningKey>,
    },
}

/// A key and the JWK attributes that restrict it.
#[derive(Clone)]
pub struct Key {
    pub material: Material,
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub use_: Option<String>,
    pub key_ops: Vec<String>,
}

impl std::fmt::Debug for Key {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kty", &self.kty())
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// What a file's name or a caller says the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jwk,
    Pem,
    /// Guess, as daprd does: `{` → JWK (unless 16/24/32 bytes long),
    /// `-----` → PEM, anything else a symmetric key.
    Guess,
}

fn bad(msg: impl Into<String>) -> CryptoError {
    CryptoError::InvalidKey(msg.into())
}

impl Key {
    pub fn new(material: Material) -> Self {
        Key {
            material,
            kid: None,
            alg: None,
            use_: None,
            key_ops: Vec::new(),
        }
    }

    pub fn parse(raw: &[u8], format: Format) -> Result<Key, CryptoError> {
        if raw.is_empty() {
            return Err(bad("key is empty"));
        }
        match format {
            Format::Jwk => Key::from_jwk_bytes(raw),
            Format::Pem => Key::from_pem(raw),
            Format::Guess => {
                let l = raw.len();
                if raw[0] == b'{' && l != 16 && l != 24 && l != 32 {
                    Key::from_jwk_bytes(raw)
                } else if l > 10 && raw.starts_with(b"-----") {
                    Key::from_pem(raw)
                } else {
                    Ok(Key::new(Material::Oct(symmetric(raw))))
                }
            }
        }
    }

    /// JWK `kty`.
    pub fn kty(&self) -> &'static str {
        match self.material {
            Material::Oct(_) => "oct",
            Material::Rsa { .. } => "RSA",
            Material::P256 { .. } | Material::P384 { .. } | Material::P521 { .. } => "EC",
            Material::Ed25519 { .. } => "OKP",
        }
    }

    pub fn is_symmetric(&self) -> bool {
        matches!(self.material, Material::Oct(_))
    }

    fn from_jwk_bytes(raw: &[u8]) -> Result<Key, CryptoError> {
        let v: Value =
            serde_json::from_slice(raw).map_err(|e| bad(format!("invalid JSON Web Key: {e}")))?;
        Key::from_jwk(&v)
    }

    /// One JSON Web Key (RFC 7517).
    pub fn from_jwk(v: &Value) -> Result<Key, CryptoError> {
        let o = v
            .as_object()
            .ok_or_else(|| bad("a JSON Web Key must be an object"))?;
        let s = |k: &str| o.get(k).and_then(Value::as_str);
        let b = |k: &str| -> Result<Option<Vec<u8>>, CryptoError> {
            s(k).map(|v| b64url(v).ok_or_else(|| bad(format!("JWK member {k:?} is not base64url"))))
                .transpose()
        };
        let need = |k: &str| -> Result<Vec<u8>, CryptoError> {
            b(k)?.ok_or_else(|| bad(format!("JWK member {k:?} is missing")))
        };
        let kty = s("kty").ok_or_else(|| bad("JWK member \"kty\" is missing"))?;
        let material = match kty {
            "oct" => Material::Oct(need("k")?),
            "RSA" => {
                let n = BigUint::from_bytes_be(&need("n")?);
                let e = BigUint::from_bytes_be(&need("e")?);
                let public = RsaPublicKey::new(n.clone(), e.clone())
                    .map_err(|e| bad(format!("invalid RSA key: {e}")))?;
                let private = match b("d")? {
                    None => None,
                    Some(d) => {
                        let primes = match (b("p")?, b("q")?) {
                            (Some(p), Some(q)) => {
                                vec![BigUint::from_bytes_be(&p), BigUint::from_bytes_be(&q)]
                            }
                            _ => vec![],
                        };
                        Some(
                            RsaPrivateKey::from_components(
                                n,
                                e,
                                BigUint::from_bytes_be(&d),
                                primes,
                            )
                            .map_err(|e| bad(format!("invalid RSA private key: {e}")))?,
                        )
                    }
                };
                Material::Rsa { public, private }
            }
            "EC" => {
                let (x, y) = (need("x")?, need("y")?);
                let d = b("d")?;
                match s("crv") {
                    Some("P-256") => {
                        let private = d
                            .map(|d| p256::SecretKey::from_slice(&d))
                            .transpose()
                            .map_err(|_| bad("invalid P-256 private key"))?;
                        let public = ec_point::<p256::NistP256>(&x, &y)
                            .ok_or_else(|| bad("invalid P-256 public key"))?;
                        Material::P256 { public, private }
                    }
                    Some("P-384") => {
                        let private = d
                            .map(|d| p384::SecretKey::from_slice(&d))
                            .transpose()
                            .map_err(|_| bad("invalid P-384 private key"))?;
                        let public = ec_point::<p384::NistP384>(&x, &y)
                            .ok_or_else(|| bad("invalid P-384 public key"))?;
                        Material::P384 { public, private }
                    }
                    Some("P-521") => {
                        let private = d
                            .map(|d| p521::SecretKey::from_slice(&d))
                            .transpose()
                            .map_err(|_| bad("invalid P-521 private key"))?;
                        let public = ec_point::<p521::NistP521>(&x, &y)
                            .ok_or_else(|| bad("invalid P-521 public key"))?;
                        Material::P521 { public, private }
                    }
                    other => return Err(bad(format!("unsupported EC curve {other:?}"))),
                }
            }
            "OKP" => {
                if s("crv") != Some("Ed25519") {
                    return Err(bad(format!("unsupported OKP curve {:?}", s("crv"))));
                }
                let x: [u8; 32] = need("x")?
                    .try_into()
                    .map_err(|_| bad("invalid Ed25519 public key"))?;
                let public = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| bad("invalid Ed25519 public key"))?;
                let private = match b("d")? {
                    None => None,
                    Some(d) => {
                        let d: [u8; 32] = d
                            .try_into()
                            .map_err(|_| bad("invalid Ed25519 private key"))?;
                        Some(ed25519_dalek::SigningKey::from_bytes(&d))
                    }
                };
                Material::Ed25519 { public, private }
            }
            other => return Err(bad(format!("unsupported key type {other:?}"))),
        };
        Ok(Key {
            material,
            kid: s("kid").map(str::to_owned),
            alg: s("alg").map(str::to_owned),
            use_: s("use").map(str::to_owned),
            key_ops: o
                .get("key_ops")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The first PEM block: PKCS#1 or PKCS#8 private keys, SEC1 EC keys,
    /// PKIX or PKCS#1 public keys.
    fn from_pem(raw: &[u8]) -> Result<Key, CryptoError> {
        let text = std::str::from_utf8(raw).map_err(|_| bad("PEM is not text"))?;
        let start = text
            .find("-----BEGIN ")
            .ok_or_else(|| bad("no PEM block found"))?;
        let text = &text[start..];
        let label = text["-----BEGIN ".len()..]
            .split("-----")
            .next()
            .unwrap_or_default();
        let end_marker = format!("-----END {label}-----");
        let end = text
            .find(&end_marker)
            .ok_or_else(|| bad("PEM block is not terminated"))?;
        let block = &text[..end + end_marker.len()];
        let material = match label {
            "RSA PRIVATE KEY" => rsa_private(
                RsaPrivateKey::from_pkcs1_pem(block).map_err(|e| bad(format!("PKCS#1: {e}")))?,
            ),
            "RSA PUBLIC KEY" => Material::Rsa {
                public: RsaPublicKey::from_pkcs1_pem(block)
                    .map_err(|e| bad(format!("PKCS#1: {e}")))?,
                private: None,
            },
            "EC PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_sec1_pem(block) {
                    Material::P256 {
                        public: k.public_key(),
                        private: Some(k),
                    }
                } else if let Ok(k) = p384::SecretKey::from_sec1_pem(block) {
                    Material::P384 {
                        public: k.public_key(),
                        private: Some(k),
                    }
                } else if let Ok(k) = p521::SecretKey::from_sec1_pem(block) {
                    Material::P521 {
                        public: k.public_key(),
                        private: Some(k),
                    }
                } else {
                    return Err(bad(
                        "unsupported EC private key (P-256, P-384 and P-521 are)",
                    ));
                }
            }
            "PRIVATE KEY" => {
                if let Ok(k) = RsaPrivateKey::from_pkcs8_pem(block) {
                    rsa_private(k)
                } else if let Ok(k) = p256::SecretKey::from_pkcs8_pem(block) {
                    Material::P256 {
                        public: k.public_key(),
                        private: Some(k),
                    }
                } else if let Ok(k) = p384::SecretKey::from_pkcs8_pem(block) {
                    Material::P384 {
                        public: k.public_key(),
                        private: Some(k),
                    }
                } else if let Ok(k) = p521::SecretKey::from_pkcs8_pem(block) {
                    Material::P521 {
                        public: k.public_key(),
                        private: Some(k),
                    }
                } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(block) {
                    Material::Ed25519 {
                        public: k.verifying_key(),
                        private: Some(k),
                    }
                } else {
                    return Err(bad("unsupported PKCS#8 private key"));
                }
            }
            "PUBLIC KEY" => {
                if let Ok(k) = RsaPublicKey::from_public_key_pem(block) {
                    Material::Rsa {
                        public: k,
                        private: None,
                    }
                } else if let Ok(k) = p256::PublicKey::from_public_key_pem(block) {
                    Material::P256 {
                        public: k,
                        private: None,
                    }
                } else if let Ok(k) = p384::PublicKey::from_public_key_pem(block) {
                    Material::P384 {
                        public: k,
                        private: None,
                    }
                } else if let Ok(k) = p521::PublicKey::from_public_key_pem(block) {
                    Material::P521 {
                        public: k,
                        private: None,
                    }
                } else if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(block) {
                    Material::Ed25519 {
                        public: k,
                        private: None,
                    }
                } else {
                    return Err(bad("unsupported public key"));
                }
            }
            other => return Err(bad(format!("unsupported PEM block {other:?}"))),
        };
        Ok(Key::new(material))
    }

    /// The public half (with the same attributes); `None` for a symmetric key.
    pub fn public(&self) -> Option<Key> {
        let material = match &self.material {
            Material::Oct(_) => return None,
            Material::Rsa { public, .. } => Material::Rsa {
                public: public.clone(),
                private: None,
            },
            Material::P256 { public, .. } => Material::P256 {
                public: *public,
                private: None,
            },
            Material::P384 { public, .. } => Material::P384 {
                public: *public,
                private: None,
            },
            Material::P521 { public, .. } => Material::P521 {
                public: *public,
                private: None,
            },
            Material::Ed25519 { public, .. } => Material::Ed25519 {
                public: *public,
                private: None,
            },
        };
        Some(Key {
            material,
            ..self.clone()
        })
    }

    /// The key as a JSON Web Key, members sorted by name.
    pub fn to_jwk(&self) -> Value {
        let mut m = Map::new();
        let enc = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
        m.insert("kty".into(), Value::String(self.kty().into()));
        match &self.material {
            Material::Oct(k) => {
                m.insert("k".into(), enc(k));
            }
            Material::Rsa { public, private } => {
                m.insert("n".into(), enc(&public.n().to_bytes_be()));
                m.insert("e".into(), enc(&public.e().to_bytes_be()));
                if let Some(p) = private {
                    m.insert("d".into(), enc(&p.d().to_bytes_be()));
                }
            }
            Material::P256 { public, private } => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let pt = public.to_encoded_point(false);
                m.insert("crv".into(), Value::String("P-256".into()));
                m.insert(
                    "x".into(),
                    enc(pt.x().map(|x| x.as_slice()).unwrap_or_default()),
                );
                m.insert(
                    "y".into(),
                    enc(pt.y().map(|y| y.as_slice()).unwrap_or_default()),
                );
                if let Some(p) = private {
                    m.insert("d".into(), enc(&p.to_bytes()));
                }
            }
            Material::P384 { public, private } => {
                use p384::elliptic_curve::sec1::ToEncodedPoint;
                let pt = public.to_encoded_point(false);
                m.insert("crv".into(), Value::String("P-384".into()));
                m.insert(
                    "x".into(),
                    enc(pt.x().map(|x| x.as_slice()).unwrap_or_default()),
                );
                m.insert(
                    "y".into(),
                    enc(pt.y().map(|y| y.as_slice()).unwrap_or_default()),
                );
                if let Some(p) = private {
                    m.insert("d".into(), enc(&p.to_bytes()));
                }
            }
            Material::P521 { public, private } => {
                use p521::elliptic_curve::sec1::ToEncodedPoint;
                let pt = public.to_encoded_point(false);
                m.insert("crv".into(), Value::String("P-521".into()));
                m.insert(
                    "x".into(),
                    enc(pt.x().map(|x| x.as_slice()).unwrap_or_default()),
                );
                m.insert(
                    "y".into(),
                    enc(pt.y().map(|y| y.as_slice()).unwrap_or_default()),
                );
                if let Some(p) = private {
                    m.insert("d".into(), enc(&p.to_bytes()));
                }
            }
            Material::Ed25519 { public, private } => {
                m.insert("crv".into(), Value::String("Ed25519".into()));
                m.insert("x".into(), enc(public.as_bytes()));
                if let Some(p) = private {
                    m.insert("d".into(), enc(p.as_bytes()));
                }
            }
        }
        if let Some(k) = &self.kid {
            m.insert("kid".into(), Value::String(k.clone()));
        }
        if let Some(a) = &self.alg {
            m.insert("alg".into(), Value::String(a.clone()));
        }
        if let Some(u) = &self.use_ {
            m.insert("use".into(), Value::String(u.clone()));
        }
        if !self.key_ops.is_empty() {
            m.insert(
                "key_ops".into(),
                Value::Array(self.key_ops.iter().cloned().map(Value::String).collect()),
            );
        }
        // serde_json's map may keep insertion order (feature unification):
        // sort explicitly so the output is the same either way.
        let mut sorted: Vec<(String, Value)> = m.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        Value::Object(sorted.into_iter().collect())
    }

    /// The public key as a PKIX `PUBLIC KEY` PEM block.
    pub fn public_pem(&self) -> Result<String, CryptoError> {
        let r = match &self.material {
            Material::Oct(_) => return Err(CryptoError::KeyNotFound),
            Material::Rsa { public, .. } => public.to_public_key_pem(LineEnding::LF),
            Material::P256 { public, .. } => public.to_public_key_pem(LineEnding::LF),
            Material::P384 { public, .. } => public.to_public_key_pem(LineEnding::LF),
            Material::P521 { public, .. } => public.to_public_key_pem(LineEnding::LF),
            Material::Ed25519 { public, .. } => public.to_public_key_pem(LineEnding::LF),
        };
        r.map_err(|e| CryptoError::Failed(format!("failed to marshal public key as PKIX: {e}")))
    }

    /// The key's bytes as a wrap operation takes them: raw for a symmetric
    /// key, PKCS#8 DER for a private key, PKIX DER for a public one.
    pub fn serialize(&self) -> Result<Vec<u8>, CryptoError> {
        let fail = |e: String| CryptoError::Failed(format!("cannot serialize key: {e}"));
        Ok(match &self.material {
            Material::Oct(k) => k.clone(),
            Material::Rsa {
                private: Some(p), ..
            } => p
                .to_pkcs8_der()
                .map_err(|e| fail(e.to_string()))?
                .as_bytes()
                .to_vec(),
            Material::Rsa { public, .. } => public
                .to_public_key_der()
                .map_err(|e| fail(e.to_string()))?
                .into_vec(),
            Material::P256 {
                private: Some(p), ..
            } => p
                .to_pkcs8_der()
                .map_err(|e| fail(e.to_string()))?
                .as_bytes()
                .to_vec(),
            Material::P256 { public, .. } => public
                .to_public_key_der()
                .map_err(|e| fail(e.to_string()))?
                .into_vec(),
            Material::P384 {
                private: Some(p), ..
            } => p
                .to_pkcs8_der()
                .map_err(|e| fail(e.to_string()))?
                .as_bytes()
                .to_vec(),
            Material::P384 { public, .. } => public
                .to_public_key_der()
                .map_err(|e| fail(e.to_string()))?
                .into_vec(),
            Material::P521 {
                private: Some(p), ..
            } => p
                .to_pkcs8_der()
                .map_err(|e| fail(e.to_string()))?
                .as_bytes()
                .to_vec(),
            Material::P521 { public, .. } => public
                .to_public_key_der()
                .map_err(|e| fail(e.to_string()))?
                .into_vec(),
            Material::Ed25519 {
                private: Some(p), ..
            } => p
                .to_pkcs8_der()
                .map_err(|e| fail(e.to_string()))?
                .as_bytes()
                .to_vec(),
            Material::Ed25519 { public, .. } => public
                .to_public_key_der()
                .map_err(|e| fail(e.to_string()))?
                .into_vec(),
        })
    }
}

fn rsa_private(k: RsaPrivateKey) -> Material {
    Material::Rsa {
        public: k.to_public_key(),
        private: Some(k),
    }
}

fn ec_point<C>(x: &[u8], y: &[u8]) -> Option<elliptic_curve::PublicKey<C>>
where
    C: elliptic_curve::CurveArithmetic,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromEncodedPoint<C> + elliptic_curve::sec1::ToEncodedPoint<C>,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    let size = <elliptic_curve::FieldBytesSize<C> as elliptic_curve::generic_array::typenum::Unsigned>::USIZE;
    if x.len() != size || y.len() != size {
        return None;
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(4);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    elliptic_curve::PublicKey::<C>::from_sec1_bytes(&sec1).ok()
}

/// base64url, with or without padding (JWK members).
fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// A symmetric key as daprd reads one: base64 (standard, then URL-safe;
/// padding and trailing newlines ignored) when it decodes, else the bytes.
fn symmetric(raw: &[u8]) -> Vec<u8> {
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\n' | b'=') {
        end -= 1;
    }
    let trimmed = &raw[..end];
    STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .unwrap_or_else(|_| raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_forms() {
        let k = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(k);
        for raw in [b64.as_bytes().to_vec(), format!("{b64}\n").into_bytes()] {
            match Key::parse(&raw, Format::Guess).unwrap().material {
                Material::Oct(v) => assert_eq!(v, k),
                _ => panic!("not symmetric"),
            }
        }
        // Not base64: taken as it is.
        let raw = b"!!not base64 at all, 32 bytes!!!";
        match Key::parse(raw, Format::Guess).unwrap().material {
            Material::Oct(v) => assert_eq!(v, raw),
            _ => panic!("not symmetric"),
        }
        assert!(Key::parse(b"", Format::Guess).is_err());
    }

    #[test]
    fn jwk_round_trip_and_public_half() {
        let sk = p256::SecretKey::from_slice(&[3u8; 32]).unwrap();
        let key = Key {
            kid: Some("k1".into()),
            ..Key::new(Material::P256 {
                public: sk.public_key(),
                private: Some(sk),
            })
        };
        let jwk = key.to_jwk();
        assert_eq!(jwk["crv"], "P-256");
        assert!(jwk.get("d").is_some());
        let back = Key::from_jwk(&jwk).unwrap();
        let pubj = back.public().unwrap().to_jwk();
        assert!(pubj.get("d").is_none());
        assert_eq!(pubj["kid"], "k1");
        let keys: Vec<&String> = pubj.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(back
            .public_pem()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }

    #[test]
    fn bad_keys_are_errors() {
        for raw in [
            &b"{\"kty\":\"RSA\"}"[..],
            b"{\"kty\":\"nope\",\"k\":\"AA\"}",
            b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"{not json at all, really}",
        ] {
            assert!(Key::parse(raw, Format::Guess).is_err(), "{raw:?}");
        }
    }
}
