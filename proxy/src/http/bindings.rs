//! HTTP codec of the bindings block: `POST|PUT /v1.0/bindings/{name}` with
//! `{"data", "metadata", "operation"}` (read as Go reads it). `data` reaches
//! the component as its JSON text (`"text"` keeps its quotes, a missing
//! one is `null`), as daprd's `json.Marshal(req.Data)`. The answer is the
//! component's data (200) or nothing (204); its metadata travels as
//! `metadata.{key}` headers, added by the handler.

use std::collections::HashMap;

use serde::Deserialize;
use spar_components::go_json;
use spar_filters::handlers::bindings::BindingRequest;
use spar_filters::{ApiError, Request};

#[derive(Deserialize, Default)]
#[serde(default)]
struct BindingJson {
    data: Option<serde_json::Value>,
    metadata: Option<HashMap<String, String>>,
    operation: String,
}

pub fn invoke(name: String, body: &[u8]) -> Result<Request, ApiError> {
    // Go decodes only an object (or null) into the request struct; serde
    // would also take an array for it.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b) if *b != b'{' && *b != b'n') {
        return Err(ApiError::MalformedRequest(
            "the body is not a JSON object".into(),
        ));
    }
    let j: BindingJson =
        go_json::from_slice(body).map_err(|e| ApiError::MalformedRequest(e.to_string()))?;
    // Re-encoded compactly, object keys sorted, as Go's encoder writes a
    // decoded `any`.
    let data = serde_json::to_vec(&j.data.unwrap_or(serde_json::Value::Null))
        .map_err(|e| ApiError::MalformedRequest(e.to_string()))?;
    Ok(Request::Binding(Box::new(BindingRequest {
        name,
        operation: j.operation,
        data,
        metadata: j.metadata.unwrap_or_default(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(body: &str) -> BindingRequest {
        match invoke("b".into(), body.as_bytes()).unwrap() {
            Request::Binding(r) => *r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn bodies_as_daprd_reads_them() {
        let r = decoded(r#"{"data":"hi","operation":"create","metadata":{"key":"k"}}"#);
        assert_eq!(r.data, br#""hi""#);
        assert_eq!(r.operation, "create");
        assert_eq!(r.metadata["key"], "k");
        let r = decoded(r#"{"Operation":"get"}"#);
        assert_eq!(
            (r.operation.as_str(), r.data.as_slice()),
            ("get", &b"null"[..])
        );
        let r = decoded(r#"{"data": {"b": 1, "a": [true]}, "operation": "post"}"#);
        assert_eq!(r.data, br#"{"a":[true],"b":1}"#);
        for bad in ["", "{", r#"{"metadata":{"a":1}}"#, "[]"] {
            assert!(matches!(
                invoke("b".into(), bad.as_bytes()),
                Err(ApiError::MalformedRequest(_))
            ));
        }
    }
}
