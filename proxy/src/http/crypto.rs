//! The crypto routes of the HTTP API, as daprd serves them:
//!
//! - `PUT /v1.0-alpha1/crypto/{name}/encrypt|decrypt`: the body is the
//!   plaintext / the `dapr.io/enc/v1` document, options in `dapr-*`
//!   headers; the answer is `application/octet-stream` (bounded by
//!   `--max-body-size`, like every body; the gRPC streams have no bound).
//! - `POST /v1.0-alpha1/subtlecrypto/{name}/{op}`: the `Subtle*Request`
//!   message as protobuf JSON (camelCase or proto names, bytes as base64),
//!   answered the same way (default values left out).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{Map, Value};
use spar_filters::handlers::crypto::{
    CryptoRequest, CryptoResponse, DecryptOptions, EncryptOptions, Subtle, SubtleOp, SubtleResult,
};
use spar_filters::{ApiError, Request};

use super::decode::{percent_decode, Head};
use super::encode::Encoded;

/// kit's `IsTruthy`.
fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "t" | "on" | "1"
    )
}

pub fn encrypt(h: &Head<'_>, name: &str, body: &[u8]) -> Result<Request, ApiError> {
    let header = |k: &str| (h.header)(k).unwrap_or_default();
    Ok(Request::Crypto(CryptoRequest::Encrypt {
        opts: EncryptOptions {
            component: percent_decode(name),
            key_name: header("dapr-key-name"),
            key_wrap_algorithm: header("dapr-key-wrap-algorithm"),
            data_encryption_cipher: header("dapr-data-encryption-cipher"),
            omit_decryption_key_name: truthy(&header("dapr-omit-decryption-key-name")),
            decryption_key_name: header("dapr-decryption-key-name"),
        },
        body: Some(bytes::Bytes::copy_from_slice(body)),
    }))
}

pub fn decrypt(h: &Head<'_>, name: &str, body: &[u8]) -> Result<Request, ApiError> {
    Ok(Request::Crypto(CryptoRequest::Decrypt {
        opts: DecryptOptions {
            component: percent_decode(name),
            key_name: (h.header)("dapr-key-name").unwrap_or_default(),
        },
        body: Some(bytes::Bytes::copy_from_slice(body)),
    }))
}

/// The route template for a subtle operation (a metric label).
pub fn subtle_route(op: &str) -> Option<(&'static str, SubtleOp)> {
    Some(match op {
        "getkey" => ("/v1.0-alpha1/subtlecrypto/{name}/getkey", SubtleOp::GetKey),
        "encrypt" => (
            "/v1.0-alpha1/subtlecrypto/{name}/encrypt",
            SubtleOp::Encrypt,
        ),
        "decrypt" => (
            "/v1.0-alpha1/subtlecrypto/{name}/decrypt",
            SubtleOp::Decrypt,
        ),
        "wrapkey" => (
            "/v1.0-alpha1/subtlecrypto/{name}/wrapkey",
            SubtleOp::WrapKey,
        ),
        "unwrapkey" => (
            "/v1.0-alpha1/subtlecrypto/{name}/unwrapkey",
            SubtleOp::UnwrapKey,
        ),
        "sign" => ("/v1.0-alpha1/subtlecrypto/{name}/sign", SubtleOp::Sign),
        "verify" => ("/v1.0-alpha1/subtlecrypto/{name}/verify", SubtleOp::Verify),
        _ => return None,
    })
}

fn malformed(msg: String) -> ApiError {
    ApiError::MalformedRequest(msg)
}

/// A protobuf-JSON field by its JSON name or its proto name.
fn field<'a>(o: &'a Map<String, Value>, json: &str, proto: &str) -> Option<&'a Value> {
    o.get(json)
        .or_else(|| o.get(proto))
        .filter(|v| !v.is_null())
}

fn string(o: &Map<String, Value>, json: &str, proto: &str) -> Result<String, ApiError> {
    match field(o, json, proto) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(malformed(format!(
            "invalid value for string field {json}: {v}"
        ))),
    }
}

/// Bytes as protobuf JSON writes them: base64, standard or URL-safe,
/// padded or not.
fn bytes_field(o: &Map<String, Value>, json: &str, proto: &str) -> Result<Vec<u8>, ApiError> {
    match field(o, json, proto) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => {
            let t = s.trim_end_matches('=');
            STANDARD_NO_PAD
                .decode(t)
                .or_else(|_| URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| malformed(format!("invalid value for bytes field {json}: {s:?}")))
        }
        Some(v) => Err(malformed(format!(
            "invalid value for bytes field {json}: {v}"
        ))),
    }
}

/// `SubtleGetKeyRequest.format`: the enum's name or number.
fn format(o: &Map<String, Value>) -> Result<i32, ApiError> {
    match field(o, "format", "format") {
        None => Ok(0),
        Some(Value::String(s)) if s == "PEM" => Ok(0),
        Some(Value::String(s)) if s == "JSON" => Ok(1),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| malformed(format!("invalid value for enum field format: {n}"))),
        Some(v) => Err(malformed(format!(
            "invalid value for enum field format: {v}"
        ))),
    }
}

pub fn subtle(op: SubtleOp, name: &str, body: &[u8]) -> Result<Request, ApiError> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?
    };
    let Value::Object(o) = v else {
        return Err(malformed("the body must be a JSON object".into()));
    };
    // The component comes from the path, whatever the body says.
    let mut s = Subtle::new(op, percent_decode(name));
    match op {
        SubtleOp::GetKey => {
            s.key_name = string(&o, "name", "name")?;
            s.format = format(&o)?;
        }
        _ => {
            s.key_name = string(&o, "keyName", "key_name")?;
            s.algorithm = string(&o, "algorithm", "algorithm")?;
        }
    }
    match op {
        SubtleOp::GetKey => {}
        SubtleOp::Encrypt => s.data = bytes_field(&o, "plaintext", "plaintext")?,
        SubtleOp::Decrypt => s.data = bytes_field(&o, "ciphertext", "ciphertext")?,
        SubtleOp::WrapKey => s.data = bytes_field(&o, "plaintextKey", "plaintext_key")?,
        SubtleOp::UnwrapKey => s.data = bytes_field(&o, "wrappedKey", "wrapped_key")?,
        SubtleOp::Sign | SubtleOp::Verify => s.data = bytes_field(&o, "digest", "digest")?,
    }
    if matches!(
        op,
        SubtleOp::Encrypt | SubtleOp::Decrypt | SubtleOp::WrapKey | SubtleOp::UnwrapKey
    ) {
        s.nonce = bytes_field(&o, "nonce", "nonce")?;
        s.associated_data = bytes_field(&o, "associatedData", "associated_data")?;
    }
    if matches!(op, SubtleOp::Decrypt | SubtleOp::UnwrapKey) {
        s.tag = bytes_field(&o, "tag", "tag")?;
    }
    if op == SubtleOp::Verify {
        s.signature = bytes_field(&o, "signature", "signature")?;
    }
    Ok(Request::Crypto(CryptoRequest::Subtle(Box::new(s))))
}

pub fn response(status: u16, r: CryptoResponse) -> Encoded {
    match r {
        CryptoResponse::Data(d) => Encoded {
            status,
            headers: vec![("content-type", "application/octet-stream".into())],
            body: bytes::Bytes::from(d),
        },
        CryptoResponse::Subtle(s) => {
            let mut o = Map::new();
            let mut b = |k: &str, v: Vec<u8>| {
                if !v.is_empty() {
                    o.insert(k.into(), Value::String(STANDARD.encode(v)));
                }
            };
            let mut strings = Vec::new();
            match s {
                SubtleResult::Key { name, public_key } => {
                    strings.push(("name", name));
                    strings.push(("publicKey", public_key));
                }
                SubtleResult::Encrypted { ciphertext, tag } => {
                    b("ciphertext", ciphertext);
                    b("tag", tag);
                }
                SubtleResult::Decrypted(p) => b("plaintext", p),
                SubtleResult::Wrapped { wrapped_key, tag } => {
                    b("wrappedKey", wrapped_key);
                    b("tag", tag);
                }
                SubtleResult::Unwrapped(k) => b("plaintextKey", k),
                SubtleResult::Signed(sig) => b("signature", sig),
                SubtleResult::Verified(valid) => {
                    if valid {
                        o.insert("valid".into(), Value::Bool(true));
                    }
                }
            }
            for (k, v) in strings.into_iter().filter(|(_, v)| !v.is_empty()) {
                o.insert(k.into(), Value::String(v));
            }
            Encoded {
                status,
                headers: vec![("content-type", "application/json".into())],
                body: bytes::Bytes::from(serde_json::to_vec(&Value::Object(o)).unwrap_or_default()),
            }
        }
        // Streams are gRPC's; HTTP calls always carry their body.
        CryptoResponse::Encrypting { .. } | CryptoResponse::Decrypting(_) => super::encode::error(
            &ApiError::Internal("a crypto stream reached the HTTP encoder".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtle_bodies_as_protojson() {
        let r = subtle(
            SubtleOp::Decrypt,
            "c",
            br#"{"keyName":"k","algorithm":"A256GCM","ciphertext":"AAEC","nonce":"AAAAAAAAAAAAAAAA","tag":"_w","associated_data":"YQ=="}"#,
        )
        .unwrap();
        let Request::Crypto(CryptoRequest::Subtle(s)) = r else {
            panic!()
        };
        assert_eq!(
            (s.key_name.as_str(), s.data.as_slice(), s.tag.as_slice()),
            ("k", &[0u8, 1, 2][..], &[0xffu8][..])
        );
        assert_eq!(s.associated_data, b"a");
        for bad in [
            &br#"{"keyName": 5}"#[..],
            br#"{"plaintext": "%%%"}"#,
            br#"[1]"#,
            br#"{"#,
        ] {
            assert!(matches!(
                subtle(SubtleOp::Encrypt, "c", bad),
                Err(ApiError::MalformedRequest(_))
            ));
        }
        let Request::Crypto(CryptoRequest::Subtle(s)) =
            subtle(SubtleOp::GetKey, "c", br#"{"name":"k","format":"JSON"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((s.key_name.as_str(), s.format), ("k", 1));
    }
}
