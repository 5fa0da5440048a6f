//! `kind: HTTPEndpoint`: a non-Dapr HTTP service callable by name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::meta::{MetadataItem, ObjectMeta};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct HttpEndpoint {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: HttpEndpointSpec,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Where `secretKeyRef` headers are read (default: the environment).
    #[serde(default)]
    pub auth: Option<crate::ComponentAuth>,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpEndpointSpec {
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub headers: Vec<MetadataItem>,
}

impl HttpEndpoint {
    pub(crate) fn validate(&self, errs: &mut Vec<(String, String)>) {
        let u = &self.spec.base_url;
        if u.is_empty() {
            errs.push(("spec.baseUrl".into(), "is required".into()));
        } else if !(u.starts_with("http://") || u.starts_with("https://")) {
            errs.push((
                "spec.baseUrl".into(),
                format!("{u:?} must start with http:// or https://"),
            ));
        }
    }
}
