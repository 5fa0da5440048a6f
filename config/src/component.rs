//! `kind: Component`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::meta::{MetadataItem, ObjectMeta, SecretKeyRef};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ComponentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ComponentAuth>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub metadata: Vec<MetadataItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_timeout: Option<String>,
    #[serde(default)]
    pub ignore_errors: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentAuth {
    #[serde(default)]
    pub secret_store: String,
}

/// Component kinds Dapr knows, the part of `spec.type` before the first dot.
pub const KINDS: &[&str] = &[
    "state",
    "pubsub",
    "bindings",
    "secretstores",
    "configuration",
    "lock",
    "middleware",
    "nameresolution",
    "crypto",
    "conversation",
    "workflowbackend",
];

impl Component {
    /// A component as its YAML would give it: `name` of `type_` (version
    /// v1) with these plain metadata values. For defaults built in code and
    /// for tests.
    pub fn new(name: &str, type_: &str, metadata: &[(&str, &str)]) -> Self {
        Component {
            api_version: "dapr.io/v1alpha1".into(),
            kind: "Component".into(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: None,
            },
            spec: ComponentSpec {
                type_: type_.into(),
                version: "v1".into(),
                metadata: metadata
                    .iter()
                    .map(|(k, v)| MetadataItem {
                        name: (*k).into(),
                        value: Some(crate::MetaValue((*v).into())),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// A plain metadata value; names match case-insensitively, and an empty
    /// value counts as unset, as in Dapr.
    pub fn meta(&self, name: &str) -> Option<String> {
        self.spec
            .metadata
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .and_then(|m| m.value.as_ref())
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// All plain metadata values by name (secret references left out).
    pub fn metadata_map(&self) -> HashMap<String, String> {
        self.spec
            .metadata
            .iter()
            .filter_map(|m| Some((m.name.clone(), m.value.as_ref()?.as_str().to_string())))
            .collect()
    }

    /// The `secretKeyRef` items, resolved before the component starts.
    pub fn secret_refs(&self) -> Vec<(&str, &SecretKeyRef)> {
        self.spec
            .metadata
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.secret_key_ref.as_ref()?)))
            .collect()
    }

    /// `state` for `state.redis`.
    pub fn kind_prefix(&self) -> &str {
        self.spec.type_.split('.').next().unwrap_or_default()
    }

    pub(crate) fn validate(&self, errs: &mut Vec<(String, String)>) {
        let t = &self.spec.type_;
        if t.is_empty() {
            errs.push(("spec.type".into(), "is required (e.g. state.redis)".into()));
        } else {
            match t.split_once('.') {
                Some((kind, rest)) if KINDS.contains(&kind) && !rest.is_empty() => {}
                _ => errs.push((
                    "spec.type".into(),
                    format!(
                        "{t:?} must be <kind>.<name> with kind one of {}",
                        KINDS.join(", ")
                    ),
                )),
            }
        }
        // No version is daprd's first version, v1.
        let v = &self.spec.version;
        let versioned =
            v.starts_with('v') && v[1..].chars().next().is_some_and(|c| c.is_ascii_digit());
        if !(v.is_empty() || versioned) {
            errs.push((
                "spec.version".into(),
                format!("{v:?} must look like v1, v2, v1alpha1"),
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, m) in self.spec.metadata.iter().enumerate() {
            let field = format!("spec.metadata[{i}]");
            if m.name.is_empty() {
                errs.push((format!("{field}.name"), "is required".into()));
                continue;
            }
            let lower = m.name.to_ascii_lowercase();
            if seen.contains(&lower) {
                errs.push((
                    format!("{field}.name"),
                    format!("duplicate metadata name {:?}", m.name),
                ));
            }
            seen.push(lower);
            // As daprd: a value, an `envRef` or a `secretKeyRef` (which
            // wins over a value); none at all is an empty value (the docs'
            // templates leave optional fields so).
            if let Some(r) = &m.secret_key_ref {
                if r.name.is_empty() {
                    errs.push((format!("{field}.secretKeyRef.name"), "is required".into()));
                }
            }
        }
    }
}
