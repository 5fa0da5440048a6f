//! `kind: Subscription`, v1alpha1 and v2alpha1 normalised into one shape.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub api_version: String,
    pub metadata: ObjectMeta,
    pub spec: SubscriptionSpec,
    pub scopes: Vec<String>,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubscriptionSpec {
    pub pubsubname: String,
    pub topic: String,
    pub routes: Routes,
    pub metadata: HashMap<String, String>,
    pub dead_letter_topic: Option<String>,
    pub bulk_subscribe: Option<BulkSubscribe>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Routes {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub default: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Rule {
    #[serde(default, rename = "match")]
    pub match_: String,
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSubscribe {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub max_messages_count: Option<u32>,
    #[serde(default)]
    pub max_await_duration_ms: Option<u32>,
}

/// The YAML as written, both versions' fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSubscription {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RawSpec,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSpec {
    #[serde(default)]
    pubsubname: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<Routes>,
    #[serde(default)]
    metadata: HashMap<String, crate::meta::MetaValue>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribe>,
}

impl RawSubscription {
    /// Normalises and validates; v1alpha1 needs `route`, v2alpha1 `routes`.
    pub(crate) fn into_subscription(self, errs: &mut Vec<(String, String)>) -> Subscription {
        let s = self.spec;
        if s.pubsubname.is_empty() {
            errs.push(("spec.pubsubname".into(), "is required".into()));
        }
        if s.topic.is_empty() {
            errs.push(("spec.topic".into(), "is required".into()));
        }
        let routes = if self.api_version == "dapr.io/v2alpha1" {
            let r = s.routes.unwrap_or_default();
            if r.default.is_empty() && r.rules.is_empty() {
                errs.push((
                    "spec.routes".into(),
                    "needs a default or at least one rule".into(),
                ));
            }
            for (i, rule) in r.rules.iter().enumerate() {
                if rule.match_.trim().is_empty() {
                    errs.push((
                        format!("spec.routes.rules[{i}].match"),
                        "is required".into(),
                    ));
                }
                if rule.path.is_empty() {
                    errs.push((format!("spec.routes.rules[{i}].path"), "is required".into()));
                }
            }
            r
        } else {
            let route = s.route.unwrap_or_default();
            if route.is_empty() {
                errs.push((
                    "spec.route".into(),
                    "is required in dapr.io/v1alpha1".into(),
                ));
            }
            Routes {
                rules: vec![],
                default: route,
            }
        };
        Subscription {
            api_version: self.api_version,
            metadata: self.metadata,
            spec: SubscriptionSpec {
                pubsubname: s.pubsubname,
                topic: s.topic,
                routes,
                metadata: s.metadata.into_iter().map(|(k, v)| (k, v.0)).collect(),
                dead_letter_topic: s.dead_letter_topic.filter(|t| !t.is_empty()),
                bulk_subscribe: s.bulk_subscribe,
            },
            scopes: self.scopes,
            source: PathBuf::new(),
        }
    }
}
