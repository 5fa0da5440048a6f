//! Pieces shared by every resource kind.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A `spec.metadata` entry: a plain value or a reference to a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataItem {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<MetaValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// The value of an environment variable, read when the component starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_ref: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SecretKeyRef {
    #[serde(default)]
    pub name: String,
    /// Defaults to `name` when omitted, as Dapr does.
    #[serde(default)]
    pub key: String,
}

impl SecretKeyRef {
    pub fn key(&self) -> &str {
        if self.key.is_empty() {
            &self.name
        } else {
            &self.key
        }
    }
}

/// Any YAML value kept as the string a component reads: scalars as written
/// (`5`, `true`, `abc`), maps and lists as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaValue(pub String);

impl MetaValue {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for MetaValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MetaValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a metadata value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MetaValue, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<MetaValue, E> {
                Ok(MetaValue(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<MetaValue, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MetaValue, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MetaValue, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MetaValue, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<MetaValue, E> {
                Ok(MetaValue(String::new()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<MetaValue, A::Error> {
                let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(MetaValue(v.to_string()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<MetaValue, A::Error> {
                let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MetaValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A resource name daprd's self-hosted loader accepts: a valid URL path
/// segment (not empty, not `.` or `..`, no `/` or `%`). Kubernetes' stricter
/// DNS-name rule does not apply outside Kubernetes: `dapr init` itself
/// writes a Configuration named `daprConfig`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

/// Any scalar as its string form, for fields users write as numbers or
/// strings alike (`httpStatusCodes: 500` and `httpStatusCodes: "500-599"`).
pub(crate) fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    MetaValue::deserialize(d).map(|v| v.0)
}
