//! `kind: Configuration`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ConfigurationSpec,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSpec {
    #[serde(default)]
    pub http_pipeline: Option<PipelineSpec>,
    #[serde(default)]
    pub app_http_pipeline: Option<PipelineSpec>,
    #[serde(default)]
    pub metric: Option<MetricSpec>,
    /// Dapr also accepts the plural spelling.
    #[serde(default)]
    pub metrics: Option<MetricSpec>,
    #[serde(default)]
    pub tracing: Option<TracingSpec>,
    #[serde(default)]
    pub secrets: Option<SecretsSpec>,
    #[serde(default)]
    pub access_control: Option<AccessControlSpec>,
    #[serde(default)]
    pub name_resolution: Option<NameResolutionSpec>,
    /// Read by `spar sentry` (workload certificate lifetime, clock skew).
    #[serde(default)]
    pub mtls: Option<MtlsSpec>,
    #[serde(default)]
    pub features: Vec<FeatureSpec>,
    #[serde(default)]
    pub logging: Option<LoggingSpec>,
    #[serde(default)]
    pub api: Option<serde_json::Value>,
    #[serde(default)]
    pub components: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PipelineSpec {
    #[serde(default)]
    pub handlers: Vec<HandlerSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct HandlerSpec {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct MetricSpec {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub http: Option<MetricHttpSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricHttpSpec {
    #[serde(default)]
    pub increased_cardinality: Option<bool>,
    #[serde(default)]
    pub path_matching: Vec<String>,
    #[serde(default)]
    pub exclude_verbs: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    #[serde(default)]
    pub sampling_rate: String,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub zipkin: Option<ZipkinSpec>,
    #[serde(default)]
    pub otel: Option<OtelSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpec {
    #[serde(default)]
    pub endpoint_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtelSpec {
    #[serde(default)]
    pub endpoint_address: String,
    #[serde(default)]
    pub is_secure: Option<bool>,
    #[serde(default)]
    pub protocol: String,
    /// `key=value` headers sent with every export.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Bound on one export call (Go duration).
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SecretsSpec {
    #[serde(default)]
    pub scopes: Vec<SecretScope>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretScope {
    #[serde(default)]
    pub store_name: String,
    #[serde(default)]
    pub default_access: String,
    #[serde(default)]
    pub allowed_secrets: Vec<String>,
    #[serde(default)]
    pub denied_secrets: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MtlsSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Go duration; Dapr's default is 24h.
    #[serde(default, rename = "workloadCertTTL")]
    pub workload_cert_ttl: String,
    /// Go duration; Dapr's default is 15m.
    #[serde(default)]
    pub allowed_clock_skew: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessControlSpec {
    #[serde(default)]
    pub default_action: String,
    #[serde(default)]
    pub trust_domain: String,
    #[serde(default)]
    pub policies: Vec<AppPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPolicy {
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub default_action: String,
    #[serde(default)]
    pub trust_domain: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub operations: Vec<AppOperation>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppOperation {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub http_verb: Vec<String>,
    #[serde(default)]
    pub action: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct NameResolutionSpec {
    #[serde(default)]
    pub component: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub configuration: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct FeatureSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    #[serde(default)]
    pub api_logging: Option<ApiLoggingSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiLoggingSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub omit_health_checks: bool,
    #[serde(default, rename = "obfuscateURLs")]
    pub obfuscate_urls: bool,
}

fn allow_deny(v: &str) -> bool {
    matches!(v, "" | "allow" | "deny")
}

impl Configuration {
    /// `spec.metric`, or Dapr's alternative spelling `spec.metrics`.
    pub fn metric(&self) -> Option<&MetricSpec> {
        self.spec.metric.as_ref().or(self.spec.metrics.as_ref())
    }

    pub(crate) fn validate(&self, errs: &mut Vec<(String, String)>) {
        for (name, p) in [
            ("httpPipeline", &self.spec.http_pipeline),
            ("appHttpPipeline", &self.spec.app_http_pipeline),
        ] {
            for (i, h) in p.iter().flat_map(|p| p.handlers.iter()).enumerate() {
                let f = format!("spec.{name}.handlers[{i}]");
                if h.name.is_empty() {
                    errs.push((format!("{f}.name"), "is required".into()));
                }
                if !h.type_.starts_with("middleware.http.") {
                    errs.push((
                        format!("{f}.type"),
                        format!("{:?} must be a middleware.http.* type", h.type_),
                    ));
                }
            }
        }
        if let Some(t) = &self.spec.tracing {
            if !t.sampling_rate.is_empty() {
                match t.sampling_rate.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => {}
                    _ => errs.push((
                        "spec.tracing.samplingRate".into(),
                        format!("{:?} must be a number from 0 to 1", t.sampling_rate),
                    )),
                }
            }
        }
        for (i, s) in self
            .spec
            .secrets
            .iter()
            .flat_map(|s| s.scopes.iter())
            .enumerate()
        {
            if s.store_name.is_empty() {
                errs.push((
                    format!("spec.secrets.scopes[{i}].storeName"),
                    "is required".into(),
                ));
            }
            if !allow_deny(&s.default_access) {
                errs.push((
                    format!("spec.secrets.scopes[{i}].defaultAccess"),
                    format!("{:?} must be allow or deny", s.default_access),
                ));
            }
        }
        if let Some(m) = &self.spec.mtls {
            for (field, v) in [
                ("workloadCertTTL", &m.workload_cert_ttl),
                ("allowedClockSkew", &m.allowed_clock_skew),
            ] {
                if !v.is_empty() {
                    if let Err(e) = crate::parse_duration(v) {
                        errs.push((format!("spec.mtls.{field}"), e));
                    }
                }
            }
        }
        if let Some(ac) = &self.spec.access_control {
            if !allow_deny(&ac.default_action) {
                errs.push((
                    "spec.accessControl.defaultAction".into(),
                    format!("{:?} must be allow or deny", ac.default_action),
                ));
            }
            for (i, p) in ac.policies.iter().enumerate() {
                let f = format!("spec.accessControl.policies[{i}]");
                if p.app_id.is_empty() {
                    errs.push((format!("{f}.appId"), "is required".into()));
                }
                if !allow_deny(&p.default_action) {
                    errs.push((
                        format!("{f}.defaultAction"),
                        format!("{:?} must be allow or deny", p.default_action),
                    ));
                }
                for (j, o) in p.operations.iter().enumerate() {
                    if !allow_deny(&o.action) {
                        errs.push((
                            format!("{f}.operations[{j}].action"),
                            format!("{:?} must be allow or deny", o.action),
                        ));
                    }
                    if o.name.is_empty() {
                        errs.push((format!("{f}.operations[{j}].name"), "is required".into()));
                    }
                }
            }
        }
    }
}
