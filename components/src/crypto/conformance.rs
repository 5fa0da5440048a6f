//! The crypto component conformance suite. The harness installs the
//! fixture keys below into each component its own way (files in a folder,
//! a JWKS) under the names in [`Names`], then runs [`run_all`].

use std::sync::Arc;

use super::{CryptoError, CryptoProvider, Format, Key, Params};

/// Test-only keys (never use them for anything else).
pub const RSA_PRIVATE_PEM: &str = include_str!("testdata/rsa-private.pem");
pub const RSA_PRIVATE_PKCS1_PEM: &str = include_str!("testdata/rsa-private-pkcs1.pem");
pub const RSA_PUBLIC_PEM: &str = include_str!("testdata/rsa-public.pem");
pub const EC_P256_PEM: &str = include_str!("testdata/ec-p256.pem");
pub const EC_P256_SEC1_PEM: &str = include_str!("testdata/ec-p256-sec1.pem");
pub const EC_P521_PEM: &str = include_str!("testdata/ec-p521.pem");
pub const ED25519_PEM: &str = include_str!("testdata/ed25519.pem");
/// 32 random bytes, base64.
pub const SYMMETRIC_256_B64: &str = include_str!("testdata/symmetric-256.b64");

/// The fixture keys as JSON Web Keys, each with its `kid`.
pub fn jwks_json(names: &Names) -> String {
    let jwk = |pem: &str, kid: &str| {
        let mut k = Key::parse(pem.as_bytes(), Format::Guess).expect("fixture key");
        k.kid = Some(kid.to_string());
        k.to_jwk()
    };
    serde_json::json!({"keys": [
        jwk(RSA_PRIVATE_PEM, names.rsa),
        jwk(EC_P256_PEM, names.ec),
        jwk(ED25519_PEM, names.ed25519),
        jwk(SYMMETRIC_256_B64, names.symmetric),
    ]})
    .to_string()
}

/// What the harness named each fixture key in the component.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub rsa: &'a str,
    pub ec: &'a str,
    pub ed25519: &'a str,
    pub symmetric: &'a str,
    /// A name the component does not hold.
    pub missing: &'a str,
}

fn p<'a>(key_name: &'a str, algorithm: &'a str) -> Params<'a> {
    Params {
        key_name,
        algorithm,
        ..Default::default()
    }
}

pub async fn run_all(c: Arc<dyn CryptoProvider>, n: Names<'_>) {
    c.init().await.expect("init");

    // Public keys only: an asymmetric key's public half, never a secret.
    let rsa_pub = c.get_key(n.rsa).await.expect("rsa public key");
    assert!(rsa_pub.to_jwk().get("d").is_none());
    assert_eq!(rsa_pub.public_pem().unwrap(), RSA_PUBLIC_PEM);
    let ec_pub = c.get_key(n.ec).await.expect("ec public key");
    assert_eq!(ec_pub.to_jwk()["crv"], "P-256");
    assert_eq!(
        c.get_key(n.symmetric).await.unwrap_err(),
        CryptoError::KeyNotFound
    );
    assert!(c.get_key(n.missing).await.is_err());

    // Symmetric: AEAD with associated data, key wrap.
    let nonce = [3u8; 12];
    let sp = Params {
        nonce: &nonce,
        associated_data: b"aad",
        ..p(n.symmetric, "A256GCM")
    };
    let (ct, tag) = c.encrypt(b"secret message", sp).await.expect("encrypt");
    assert_eq!(tag.len(), 16);
    let back = c
        .decrypt(&ct, Params { tag: &tag, ..sp })
        .await
        .expect("decrypt");
    assert_eq!(back, b"secret message");
    let mut bad = ct.clone();
    bad[0] ^= 1;
    assert!(c.decrypt(&bad, Params { tag: &tag, ..sp }).await.is_err());
    let fk = [42u8; 32];
    let (wrapped, _) = c
        .wrap_key(&fk, p(n.symmetric, "A256KW"))
        .await
        .expect("wrap");
    assert_eq!(
        c.unwrap_key(&wrapped, p(n.symmetric, "A256KW"))
            .await
            .unwrap(),
        fk
    );

    // RSA-OAEP-256, as the encryption scheme wraps file keys.
    let (wrapped, _) = c
        .wrap_key(&fk, p(n.rsa, "RSA-OAEP-256"))
        .await
        .expect("rsa wrap");
    assert_eq!(
        c.unwrap_key(&wrapped, p(n.rsa, "RSA-OAEP-256"))
            .await
            .unwrap(),
        fk
    );
    assert!(c.unwrap_key(&wrapped, p(n.rsa, "RSA-OAEP")).await.is_err());

    // Signatures over a digest (EdDSA: over the message).
    let digest = [9u8; 32];
    for (key, alg) in [
        (n.rsa, "RS256"),
        (n.rsa, "PS256"),
        (n.ec, "ES256"),
        (n.ed25519, "EdDSA"),
    ] {
        let sig = c.sign(&digest, p(key, alg)).await.expect(alg);
        assert!(c.verify(&digest, &sig, p(key, alg)).await.unwrap(), "{alg}");
        let other = [8u8; 32];
        assert!(!c.verify(&other, &sig, p(key, alg)).await.unwrap(), "{alg}");
    }

    // Wrong key kinds and unknown algorithms are errors, not panics.
    assert_eq!(
        c.sign(&digest, p(n.symmetric, "ES256")).await.unwrap_err(),
        CryptoError::KeyTypeMismatch
    );
    assert_eq!(
        c.encrypt(b"x", p(n.symmetric, "NOPE")).await.unwrap_err(),
        CryptoError::UnsupportedAlgorithm
    );
    assert!(c.encrypt(b"x", p(n.missing, "A256KW")).await.is_err());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{jwks, localstorage};

    const NAMES: Names = Names {
        rsa: "rsa-private.pem",
        ec: "ec-p256.pem",
        ed25519: "ed25519.pem",
        symmetric: "symmetric-256",
        missing: "missing",
    };

    #[tokio::test]
    async fn localstorage_passes() {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [
            (NAMES.rsa, RSA_PRIVATE_PEM),
            (NAMES.ec, EC_P256_PEM),
            (NAMES.ed25519, ED25519_PEM),
            (NAMES.symmetric, SYMMETRIC_256_B64),
        ] {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let c = spar_config::Component::new(
            "ls",
            "crypto.dapr.localstorage",
            &[("path", dir.path().to_str().unwrap())],
        );
        let p = localstorage::build(&c, &Default::default()).unwrap();
        run_all(p, NAMES).await;
    }

    #[tokio::test]
    async fn jwks_inline_passes() {
        let names = Names {
            rsa: "rsa",
            ec: "ec",
            ed25519: "ed",
            symmetric: "sym",
            missing: "missing",
        };
        let set = jwks_json(&names);
        let c = spar_config::Component::new("j", "crypto.dapr.jwks", &[("jwks", &set)]);
        run_all(jwks::build(&c, &Default::default()).unwrap(), names).await;
    }

    #[test]
    fn every_fixture_form_parses() {
        for pem in [
            RSA_PRIVATE_PEM,
            RSA_PRIVATE_PKCS1_PEM,
            RSA_PUBLIC_PEM,
            EC_P256_PEM,
            EC_P256_SEC1_PEM,
            EC_P521_PEM,
            ED25519_PEM,
        ] {
            let k = Key::parse(pem.as_bytes(), Format::Pem).expect(pem);
            assert!(!k.is_symmetric());
            // JWK form parses back to the same public key.
            let again = Key::parse(k.to_jwk().to_string().as_bytes(), Format::Jwk).unwrap();
            assert_eq!(again.public_pem().unwrap(), k.public_pem().unwrap());
        }
    }
}

/// Arbitrary bytes where keys and documents are expected: errors, never
/// panics.
#[cfg(test)]
mod garbage {
    use super::*;
    use crate::crypto::{ops, scheme};

    /// xorshift: reproducible noise without a dependency.
    fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn no_input_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let prefixes: [&[u8]; 6] = [
            b"",
            b"{",
            b"-----BEGIN PRIVATE KEY-----\n",
            b"-----BEGIN RSA PUBLIC KEY-----\n",
            b"dapr.io/enc/v1\n",
            b"dapr.io/enc/v1\n{\"kw\":1,\"wfk\":\"AQ==\",\"cph\":1,\"np\":\"Y3J5cHRvIQ==\"}\n",
        ];
        let sym = Key::parse(SYMMETRIC_256_B64.as_bytes(), Format::Guess).unwrap();
        let rsa = Key::parse(RSA_PRIVATE_PEM.as_bytes(), Format::Guess).unwrap();
        for i in 0..3000 {
            let mut input = prefixes[i % prefixes.len()].to_vec();
            let n = i % 97;
            input.extend(noise(&mut seed, n));
            for f in [Format::Guess, Format::Jwk, Format::Pem] {
                let _ = Key::parse(&input, f);
            }
            let _ = scheme::parse_header(&input);
            let _ = scheme::incomplete_header(&input);
            for (k, alg) in [
                (&sym, "A256KW"),
                (&sym, "A256GCM"),
                (&sym, "A256CBC"),
                (&sym, "XC20P"),
                (&rsa, "RSA-OAEP-256"),
                (&rsa, "PS256"),
            ] {
                let _ = ops::decrypt(k, &input, alg, &input, &input, &input);
                let _ = ops::verify(k, &input, &input, alg);
            }
        }
    }
}
