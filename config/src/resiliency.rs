//! `kind: Resiliency`: named policies and the targets that use them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Resiliency {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ResiliencySpec,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ResiliencySpec {
    #[serde(default)]
    pub policies: Policies,
    #[serde(default)]
    pub targets: Targets,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    /// Name → Go duration.
    #[serde(default)]
    pub timeouts: BTreeMap<String, String>,
    #[serde(default)]
    pub retries: BTreeMap<String, RetrySpec>,
    #[serde(default)]
    pub circuit_breakers: BTreeMap<String, CircuitBreakerSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub max_interval: Option<String>,
    #[serde(default)]
    pub max_retries: Option<i64>,
    #[serde(default)]
    pub matching: Option<RetryMatching>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RetryMatching {
    #[serde(
        default,
        rename = "httpStatusCodes",
        deserialize_with = "crate::meta::scalar"
    )]
    pub http_status_codes: String,
    #[serde(
        default,
        rename = "gRPCStatusCodes",
        deserialize_with = "crate::meta::scalar"
    )]
    pub grpc_status_codes: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerSpec {
    #[serde(default)]
    pub max_requests: Option<u32>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub trip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Targets {
    #[serde(default)]
    pub apps: BTreeMap<String, EndpointPolicy>,
    #[serde(default)]
    pub components: BTreeMap<String, ComponentPolicy>,
    /// Kept as written for the actors issue.
    #[serde(default)]
    pub actors: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPolicy {
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retry: Option<String>,
    #[serde(default)]
    pub circuit_breaker: Option<String>,
    #[serde(default)]
    pub circuit_breaker_cache_size: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ComponentPolicy {
    #[serde(default)]
    pub outbound: Option<EndpointPolicy>,
    #[serde(default)]
    pub inbound: Option<EndpointPolicy>,
}

/// `"500-599,429"` → inclusive ranges, each within `lo..=hi` and low to
/// high. Shared by validation and the compiled retry policies.
pub fn parse_codes(s: &str, lo: u32, hi: u32) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("{part:?} is not a code or range"))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a < lo || b > hi || a > b {
            return Err(format!("{part:?} must be within {lo}-{hi}, low to high"));
        }
        out.push((a, b));
    }
    Ok(out)
}

fn check_codes(s: &str, lo: u32, hi: u32) -> Result<(), String> {
    parse_codes(s, lo, hi).map(|_| ())
}

fn check_duration(errs: &mut Vec<(String, String)>, field: String, v: &Option<String>) {
    if let Some(d) = v {
        if let Err(e) = crate::parse_duration(d) {
            errs.push((field, e));
        }
    }
}

impl Resiliency {
    pub(crate) fn validate(&self, errs: &mut Vec<(String, String)>) {
        let p = &self.spec.policies;
        for (name, d) in &p.timeouts {
            check_duration(
                errs,
                format!("spec.policies.timeouts.{name}"),
                &Some(d.clone()),
            );
        }
        for (name, r) in &p.retries {
            let f = format!("spec.policies.retries.{name}");
            if !matches!(r.policy.as_str(), "constant" | "exponential") {
                errs.push((
                    format!("{f}.policy"),
                    format!("{:?} must be constant or exponential", r.policy),
                ));
            }
            check_duration(errs, format!("{f}.duration"), &r.duration);
            check_duration(errs, format!("{f}.maxInterval"), &r.max_interval);
            if r.max_retries.is_some_and(|m| m < -1) {
                errs.push((
                    format!("{f}.maxRetries"),
                    "must be -1 (forever) or more".into(),
                ));
            }
            if let Some(m) = &r.matching {
                if let Err(e) = check_codes(&m.http_status_codes, 100, 599) {
                    errs.push((format!("{f}.matching.httpStatusCodes"), e));
                }
                if let Err(e) = check_codes(&m.grpc_status_codes, 0, 16) {
                    errs.push((format!("{f}.matching.gRPCStatusCodes"), e));
                }
            }
        }
        for (name, cb) in &p.circuit_breakers {
            let f = format!("spec.policies.circuitBreakers.{name}");
            check_duration(errs, format!("{f}.interval"), &cb.interval);
            check_duration(errs, format!("{f}.timeout"), &cb.timeout);
            if cb.trip.trim().is_empty() {
                errs.push((
                    format!("{f}.trip"),
                    "is required (e.g. consecutiveFailures > 5)".into(),
                ));
            }
        }
        let mut check_target = |f: String, t: &EndpointPolicy| {
            if let Some(n) = &t.timeout {
                // A target may name a policy or give a duration directly.
                if !p.timeouts.contains_key(n) && crate::parse_duration(n).is_err() {
                    errs.push((
                        format!("{f}.timeout"),
                        format!("no timeout policy named {n:?}"),
                    ));
                }
            }
            if let Some(n) = &t.retry {
                if !p.retries.contains_key(n) {
                    errs.push((format!("{f}.retry"), format!("no retry policy named {n:?}")));
                }
            }
            if let Some(n) = &t.circuit_breaker {
                if !p.circuit_breakers.contains_key(n) {
                    errs.push((
                        format!("{f}.circuitBreaker"),
                        format!("no circuit breaker named {n:?}"),
                    ));
                }
            }
        };
        for (app, t) in &self.spec.targets.apps {
            check_target(format!("spec.targets.apps.{app}"), t);
        }
        for (c, t) in &self.spec.targets.components {
            if let Some(o) = &t.outbound {
                check_target(format!("spec.targets.components.{c}.outbound"), o);
            }
            if let Some(i) = &t.inbound {
                check_target(format!("spec.targets.components.{c}.inbound"), i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_codes;

    #[test]
    fn status_code_ranges() {
        assert!(check_codes("500-599,429", 100, 599).is_ok());
        assert!(check_codes("", 100, 599).is_ok());
        assert!(check_codes("600", 100, 599).is_err());
        assert!(check_codes("599-500", 100, 599).is_err());
        assert!(check_codes("abc", 0, 16).is_err());
        assert!(check_codes("1-16", 0, 16).is_ok());
    }
}
