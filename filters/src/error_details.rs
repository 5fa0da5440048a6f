//! Dapr's richer error model: the `google.rpc` detail messages daprd attaches
//! to an error (gRPC `grpc-status-details-bin`, HTTP `details`). Kept free of
//! protobuf types so this crate needs no gRPC dependency; the gRPC front end
//! encodes them, the HTTP body is written here.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// `ErrorInfo.domain` of every Dapr error.
pub const DOMAIN: &str = "dapr.io";

/// The `@type` prefix of a detail in an HTTP error body.
const TYPE_PREFIX: &str = "type.googleapis.com/google.rpc.";

/// One `google.rpc.Status.details` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// `google.rpc.ErrorInfo`: `metadata` is `None` where daprd passes a nil
    /// map (`null` in the HTTP body), `Some` — possibly empty — otherwise.
    ErrorInfo {
        reason: &'static str,
        metadata: Option<BTreeMap<String, String>>,
    },
    /// `google.rpc.ResourceInfo` (daprd never sets `owner`).
    ResourceInfo {
        resource_type: &'static str,
        resource_name: String,
        description: String,
    },
    /// `google.rpc.BadRequest` with one field violation.
    BadRequest { field: String, description: String },
    /// `google.rpc.Help` with one link.
    Help {
        url: &'static str,
        description: &'static str,
    },
}

impl Detail {
    /// The message's full protobuf name, e.g. `google.rpc.ErrorInfo`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Detail::ErrorInfo { .. } => "google.rpc.ErrorInfo",
            Detail::ResourceInfo { .. } => "google.rpc.ResourceInfo",
            Detail::BadRequest { .. } => "google.rpc.BadRequest",
            Detail::Help { .. } => "google.rpc.Help",
        }
    }

    /// The HTTP body's form, with dapr/kit's field names (protobuf names,
    /// keys in Go's sorted map order).
    pub fn to_json(&self) -> Value {
        let ty = format!("{TYPE_PREFIX}{}", &self.type_name()["google.rpc.".len()..]);
        let mut o = Map::new();
        o.insert("@type".into(), ty.into());
        match self {
            Detail::ErrorInfo { reason, metadata } => {
                o.insert("domain".into(), DOMAIN.into());
                o.insert(
                    "metadata".into(),
                    metadata.as_ref().map_or(Value::Null, |m| json!(m)),
                );
                o.insert("reason".into(), (*reason).into());
            }
            Detail::ResourceInfo {
                resource_type,
                resource_name,
                description,
            } => {
                o.insert("description".into(), description.as_str().into());
                o.insert("owner".into(), "".into());
                o.insert("resource_name".into(), resource_name.as_str().into());
                o.insert("resource_type".into(), (*resource_type).into());
            }
            Detail::BadRequest { field, description } => {
                // Go's encoding/json over the generated struct: empty fields omitted.
                let mut v = Map::new();
                if !field.is_empty() {
                    v.insert("field".into(), field.as_str().into());
                }
                if !description.is_empty() {
                    v.insert("description".into(), description.as_str().into());
                }
                o.insert("field_violations".into(), json!([v]));
            }
            Detail::Help { url, description } => {
                o.insert(
                    "links".into(),
                    json!([{"description": description, "url": url}]),
                );
            }
        }
        Value::Object(o)
    }
}

/// Request metadata as an `ErrorInfo` map.
pub fn metadata_of<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes_match_dapr_kit() {
        let e = Detail::ErrorInfo {
            reason: "DAPR_STATE_NOT_FOUND",
            metadata: None,
        };
        assert_eq!(
            serde_json::to_string(&e.to_json()).unwrap(),
            r#"{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"dapr.io","metadata":null,"reason":"DAPR_STATE_NOT_FOUND"}"#
        );
        let r = Detail::ResourceInfo {
            resource_type: "state",
            resource_name: "s".into(),
            description: String::new(),
        };
        assert_eq!(r.to_json()["resource_type"], "state");
        assert_eq!(r.to_json()["owner"], "");
        let b = Detail::BadRequest {
            field: "a||b".into(),
            description: "bad".into(),
        };
        assert_eq!(b.to_json()["field_violations"][0]["field"], "a||b");
        let h = Detail::Help {
            url: "https://x",
            description: "d",
        };
        assert_eq!(h.to_json()["links"][0]["url"], "https://x");
    }
}
