//! Service-invocation access control (`spec.accessControl` of the callee's
//! Configuration), compiled once at start and checked by the callee sidecar
//! against the caller's SPIFFE identity from its mTLS certificate.
//!
//! Decision order, as daprd: an operation rule matching the path (and HTTP
//! verb) of a policy for the caller's app id + namespace + trust domain, else
//! that policy's `defaultAction`, else the global `defaultAction`. A caller
//! without an identity (no mTLS) gets the global default.
//!
//! Operation names: a leading `/` is implied; HTTP paths compare
//! case-insensitively; a `*` segment matches one path segment, `**` any number
//! (also none), and `*` inside a segment matches within that segment. The most
//! specific matching rule wins (more literal segments, then fewer wildcards).

use std::collections::HashMap;

use spar_config::AccessControlSpec;

use crate::spiffe::SpiffeId;

/// daprd's default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "public";

#[derive(Debug, Clone)]
pub struct AccessControl {
    default_allow: bool,
    /// app id → namespace → policy (looked up without allocating).
    policies: HashMap<String, HashMap<String, AppPolicy>>,
}

#[derive(Debug, Clone)]
struct AppPolicy {
    trust_domain: String,
    default_allow: Option<bool>,
    operations: Vec<Operation>,
}

#[derive(Debug, Clone)]
struct Operation {
    segments: Vec<String>,
    /// Upper-cased verbs with their action; `*` for any verb.
    verbs: Vec<(String, bool)>,
    allow: bool,
    specificity: (usize, usize),
}

fn allow(action: &str) -> bool {
    action.eq_ignore_ascii_case("allow")
}

impl AccessControl {
    /// `None` when the Configuration sets no policy (everything allowed).
    pub fn build(spec: Option<&AccessControlSpec>) -> Option<Self> {
        let spec = spec?;
        if spec.default_action.is_empty()
            && spec.trust_domain.is_empty()
            && spec.policies.is_empty()
        {
            return None;
        }
        // Policies without a global default: deny, the safer choice (as daprd).
        let default_allow = if spec.default_action.is_empty() {
            spec.policies.is_empty()
        } else {
            allow(&spec.default_action)
        };
        let mut policies = HashMap::new();
        for p in &spec.policies {
            let operations = p
                .operations
                .iter()
                .map(|o| {
                    let segments: Vec<String> = o
                        .name
                        .trim_start_matches('/')
                        .split('/')
                        .map(|s| s.to_ascii_lowercase())
                        .collect();
                    let literal = segments.iter().filter(|s| !s.contains('*')).count();
                    let wild = segments.len() - literal;
                    Operation {
                        verbs: o
                            .http_verb
                            .iter()
                            .map(|v| (v.to_ascii_uppercase(), allow(&o.action)))
                            .collect(),
                        allow: allow(&o.action),
                        specificity: (literal, usize::MAX - wild),
                        segments,
                    }
                })
                .collect();
            let ns = if p.namespace.is_empty() {
                "default"
            } else {
                &p.namespace
            };
            policies
                .entry(p.app_id.clone())
                .or_insert_with(HashMap::new)
                .insert(
                    ns.to_string(),
                    AppPolicy {
                        trust_domain: if p.trust_domain.is_empty() {
                            DEFAULT_TRUST_DOMAIN.to_string()
                        } else {
                            p.trust_domain.clone()
                        },
                        default_allow: (!p.default_action.is_empty())
                            .then(|| allow(&p.default_action)),
                        operations,
                    },
                );
        }
        Some(AccessControl {
            default_allow,
            policies,
        })
    }

    /// Whether `caller` may call `operation` (the method path) with `verb`
    /// (`None` for gRPC). `Err` carries daprd's denial message.
    pub fn check(
        &self,
        caller: Option<&SpiffeId>,
        operation: &str,
        verb: Option<&str>,
    ) -> Result<(), String> {
        let allowed = self.decide(caller, operation, verb);
        if allowed {
            return Ok(());
        }
        Err(format!(
            "access control policy has denied access to appid: {} operation: {} verb: {}",
            caller.map(|c| c.app_id.as_str()).unwrap_or(""),
            operation.trim_start_matches('/'),
            verb.unwrap_or("NONE"),
        ))
    }

    fn decide(&self, caller: Option<&SpiffeId>, operation: &str, verb: Option<&str>) -> bool {
        let Some(caller) = caller else {
            return self.default_allow;
        };
        let Some(policy) = self
            .policies
            .get(&caller.app_id)
            .and_then(|by_ns| by_ns.get(&caller.namespace))
        else {
            return self.default_allow;
        };
        if policy.trust_domain != caller.trust_domain {
            return self.default_allow;
        }
        let mut action = policy.default_allow.unwrap_or(self.default_allow);
        let path = operation.split('?').next().unwrap_or_default();
        let path = path.trim_start_matches('/').to_ascii_lowercase();
        let segments: Vec<&str> = path.split('/').collect();
        let best = policy
            .operations
            .iter()
            .filter(|o| matches(&o.segments, &segments))
            .max_by_key(|o| o.specificity);
        if let Some(op) = best {
            match verb {
                None => action = op.allow,
                Some(v) => {
                    let found = op
                        .verbs
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(v))
                        .or_else(|| op.verbs.iter().find(|(name, _)| name == "*"));
                    if let Some((_, a)) = found {
                        action = *a;
                    }
                }
            }
        }
        action
    }
}

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((p, rest)) => match path.split_first() {
            Some((s, tail)) => glob(p, s) && matches(rest, tail),
            None => false,
        },
    }
}

/// `*` inside one segment: any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == s;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first)
        || !s[first.len()..].ends_with(last)
        || s.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(yaml: &str) -> AccessControl {
        let spec: AccessControlSpec = serde_yaml::from_str(yaml).unwrap();
        AccessControl::build(Some(&spec)).unwrap()
    }

    const SPEC: &str = r#"
defaultAction: deny
trustDomain: public
policies:
  - appId: app1
    defaultAction: allow
    trustDomain: public
    namespace: default
    operations:
      - name: /op1
        httpVerb: [POST, GET]
        action: deny
      - name: /op2/*
        httpVerb: ["*"]
        action: allow
      - name: /admin/**
        httpVerb: ["*"]
        action: deny
      - name: /admin/health
        httpVerb: [GET]
        action: allow
  - appId: app2
    defaultAction: deny
    trustDomain: public
    namespace: default
    operations:
      - name: /op1
        httpVerb: [GET]
        action: allow
"#;

    #[test]
    fn decisions() {
        let a = acl(SPEC);
        let app1 = SpiffeId::new("public", "default", "app1");
        let app2 = SpiffeId::new("public", "default", "app2");
        let other_td = SpiffeId::new("elsewhere", "default", "app1");
        let other_ns = SpiffeId::new("public", "prod", "app1");
        let stranger = SpiffeId::new("public", "default", "app3");

        assert!(a.check(Some(&app1), "/op1", Some("POST")).is_err());
        assert!(a.check(Some(&app1), "op1", Some("PUT")).is_ok()); // app default
        assert!(a.check(Some(&app1), "/OP1", Some("get")).is_err()); // HTTP paths ignore case
        assert!(a.check(Some(&app1), "/op2/x", Some("DELETE")).is_ok());
        assert!(a.check(Some(&app1), "/admin/a/b", Some("GET")).is_err());
        assert!(a.check(Some(&app1), "/admin", Some("GET")).is_err());
        assert!(a.check(Some(&app1), "/admin/health", Some("GET")).is_ok()); // more specific
        assert!(a.check(Some(&app1), "/anything?x=1", None).is_ok());

        assert!(a.check(Some(&app2), "/op1", Some("GET")).is_ok());
        assert!(a.check(Some(&app2), "/op1", Some("POST")).is_err());
        assert!(a.check(Some(&app2), "/op9", Some("GET")).is_err());

        for c in [&other_td, &other_ns, &stranger] {
            assert!(a.check(Some(c), "/op2/x", Some("GET")).is_err(), "{c}");
        }
        let e = a.check(None, "/op2/x", Some("GET")).unwrap_err();
        assert_eq!(
            e,
            "access control policy has denied access to appid:  operation: op2/x verb: GET"
        );
    }

    #[test]
    fn defaults() {
        assert!(AccessControl::build(None).is_none());
        let spec = AccessControlSpec::default();
        assert!(AccessControl::build(Some(&spec)).is_none());
        // Policies but no global default: deny.
        let a = acl("policies: [{appId: a, trustDomain: public, namespace: default}]");
        assert!(a.check(None, "/x", None).is_err());
        let a = acl("defaultAction: allow");
        assert!(a.check(None, "/x", Some("GET")).is_ok());
    }

    #[test]
    fn globs() {
        assert!(glob("ab*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(!glob("a*c", "ab"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
    }
}
