//! `secretstores.local.file`: secrets from a JSON file, read at start.
//!
//! Nested objects are flattened with `nestedSeparator` (default `:`), so
//! `{"db": {"password": "x"}}` is the secret `db:password`. With
//! `multiValued: true` each top-level key is one secret whose keys are its
//! (flattened) members.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Secret, SecretError, SecretStore};
use crate::registry::{BuildContext, BuildError};

#[derive(Debug, Default)]
pub struct FileStore {
    secrets: BTreeMap<String, Secret>,
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn flatten(prefix: &str, v: &Value, sep: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}{sep}{k}")
                };
                flatten(&key, v, sep, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}{sep}{i}"), v, sep, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), scalar(other));
        }
    }
}

impl FileStore {
    pub fn from_json(text: &str, separator: &str, multi_valued: bool) -> Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let obj = root.as_object().ok_or("the file must hold a JSON object")?;
        let mut secrets = BTreeMap::new();
        if multi_valued {
            for (name, v) in obj {
                let mut keys = BTreeMap::new();
                match v {
                    Value::Object(_) | Value::Array(_) => flatten("", v, separator, &mut keys),
                    other => {
                        keys.insert(name.clone(), scalar(other));
                    }
                }
                secrets.insert(name.clone(), keys);
            }
        } else {
            let mut flat = BTreeMap::new();
            flatten("", &root, separator, &mut flat);
            for (k, v) in flat {
                secrets.insert(k.clone(), Secret::from([(k, v)]));
            }
        }
        Ok(FileStore { secrets })
    }

    pub fn open(path: &Path, separator: &str, multi_valued: bool) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_json(&text, separator, multi_valued)
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn SecretStore>, BuildError> {
    let m = crate::meta::Meta::new(c);
    let path = m
        .str("secretsFile")
        .ok_or_else(|| m.error("secretsFile", "is required (path to a JSON file)"))?;
    let sep = m.str_or("nestedSeparator", ":");
    let multi = m.bool("multiValued", false)?;
    let store =
        FileStore::open(Path::new(&path), &sep, multi).map_err(|message| BuildError::Init {
            component: c.name().to_string(),
            message,
        })?;
    Ok(Arc::new(store))
}

#[async_trait]
impl SecretStore for FileStore {
    async fn get(&self, name: &str, _: &BTreeMap<String, String>) -> Result<Secret, SecretError> {
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(name.to_string()))
    }

    async fn bulk_get(
        &self,
        _: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, Secret>, SecretError> {
        Ok(self.secrets.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str =
        r#"{"redis": {"password": "pw", "user": "u"}, "token": "t", "n": 5, "list": ["a", "b"]}"#;

    #[tokio::test]
    async fn flat_and_nested() {
        let s = FileStore::from_json(JSON, ":", false).unwrap();
        let md = BTreeMap::new();
        assert_eq!(
            s.get("redis:password", &md).await.unwrap()["redis:password"],
            "pw"
        );
        assert_eq!(s.get("n", &md).await.unwrap()["n"], "5");
        assert_eq!(s.get("list:1", &md).await.unwrap()["list:1"], "b");
        assert!(matches!(
            s.get("redis", &md).await,
            Err(SecretError::NotFound(_))
        ));
        let s = FileStore::from_json(JSON, ".", false).unwrap();
        assert!(s.get("redis.user", &md).await.is_ok());
    }

    #[tokio::test]
    async fn multi_valued() {
        let s = FileStore::from_json(JSON, ":", true).unwrap();
        let md = BTreeMap::new();
        let r = s.get("redis", &md).await.unwrap();
        assert_eq!((r["password"].as_str(), r["user"].as_str()), ("pw", "u"));
        assert_eq!(s.get("token", &md).await.unwrap()["token"], "t");
        assert_eq!(s.bulk_get(&md).await.unwrap().len(), 4);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(FileStore::from_json("[1]", ":", false)
            .unwrap_err()
            .contains("JSON object"));
        assert!(FileStore::from_json("{", ":", false)
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(FileStore::open(Path::new("/nonexistent.json"), ":", false)
            .unwrap_err()
            .contains("/nonexistent.json"));
    }
}
