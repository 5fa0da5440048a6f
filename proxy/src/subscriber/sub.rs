//! One subscription, normalised from any of its sources (declarative YAML,
//! an HTTP app's `GET /dapr/subscribe`, a gRPC app's
//! `ListTopicSubscriptions`, a streaming subscription), with its routing
//! rules compiled once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use spar_filters::cel::Expr;
use spar_proto::runtime as pb;

/// Dapr's bulk subscribe defaults.
const BULK_MAX_COUNT: usize = 100;
const BULK_MAX_AWAIT: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bulk {
    pub max_count: usize,
    pub max_await: Duration,
}

impl Bulk {
    /// `None` unless enabled; zero or negative limits take Dapr's defaults.
    fn new(enabled: bool, count: Option<i64>, await_ms: Option<i64>) -> Option<Bulk> {
        enabled.then(|| Bulk {
            max_count: count
                .filter(|n| *n > 0)
                .map_or(BULK_MAX_COUNT, |n| n.min(10_000) as usize),
            max_await: await_ms
                .filter(|n| *n > 0)
                .map_or(BULK_MAX_AWAIT, |n| Duration::from_millis(n as u64)),
        })
    }
}

#[derive(Debug)]
pub struct Sub {
    pub pubsub: String,
    pub topic: String,
    /// Routing rules and their paths, as written (HTTP delivery adds the
    /// leading slash; gRPC apps match the path verbatim).
    pub rules: Vec<(Expr, String)>,
    /// Where events no rule matches go; `None` drops them.
    pub default_path: Option<String>,
    pub dead_letter: Option<String>,
    pub raw_payload: bool,
    pub metadata: HashMap<String, String>,
    pub bulk: Option<Bulk>,
    pub kind: &'static str,
}

fn compile(rules: &[(String, String)]) -> Result<Vec<(Expr, String)>, String> {
    rules
        .iter()
        .map(|(m, p)| {
            Expr::parse(m)
                .map(|e| (e, p.clone()))
                .map_err(|e| format!("routes.rules match {m:?}: {e}"))
        })
        .collect()
}

fn raw_payload(m: &HashMap<String, String>) -> bool {
    m.get("rawPayload")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl Sub {
    #[allow(clippy::too_many_arguments)]
    fn build(
        pubsub: String,
        topic: String,
        rules: &[(String, String)],
        default: Option<String>,
        dead_letter: Option<String>,
        metadata: HashMap<String, String>,
        bulk: Option<Bulk>,
        kind: &'static str,
    ) -> Result<Sub, String> {
        if pubsub.is_empty() || topic.is_empty() {
            return Err(format!(
                "subscription {pubsub:?}/{topic:?} needs a pubsub name and a topic"
            ));
        }
        Ok(Sub {
            rules: compile(rules)?,
            default_path: default,
            dead_letter: dead_letter.filter(|d| !d.is_empty()),
            raw_payload: raw_payload(&metadata),
            metadata,
            bulk,
            pubsub,
            topic,
            kind,
        })
    }

    pub fn from_declarative(s: &spar_config::Subscription) -> Result<Sub, String> {
        let spec = &s.spec;
        let rules: Vec<(String, String)> = spec
            .routes
            .rules
            .iter()
            .map(|r| (r.match_.clone(), r.path.clone()))
            .collect();
        let bulk = spec.bulk_subscribe.as_ref().and_then(|b| {
            Bulk::new(
                b.enabled,
                b.max_messages_count.map(i64::from),
                b.max_await_duration_ms.map(i64::from),
            )
        });
        Sub::build(
            spec.pubsubname.clone(),
            spec.topic.clone(),
            &rules,
            Some(spec.routes.default.clone()).filter(|d| !d.is_empty()),
            spec.dead_letter_topic.clone(),
            spec.metadata.clone(),
            bulk,
            "DECLARATIVE",
        )
    }

    /// One entry of an HTTP app's `GET /dapr/subscribe` answer.
    pub fn from_programmatic(v: &Value) -> Result<Sub, String> {
        let s = |v: &Value, k: &str| {
            field(v, k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let routes = field(v, "routes");
        let rules: Vec<(String, String)> = routes
            .and_then(|r| field(r, "rules"))
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|r| (s(r, "match"), s(r, "path"))).collect())
            .unwrap_or_default();
        let topic = s(v, "topic");
        let default = routes
            .and_then(|r| field(r, "default"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                Some(s(v, "route"))
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| topic.clone())
            });
        let metadata: HashMap<String, String> = field(v, "metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let bulk = field(v, "bulkSubscribe").and_then(|b| {
            Bulk::new(
                field(b, "enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                field(b, "maxMessagesCount").and_then(Value::as_i64),
                field(b, "maxAwaitDurationMs").and_then(Value::as_i64),
            )
        });
        Sub::build(
            s(v, "pubsubname"),
            topic,
            &rules,
            Some(default),
            Some(s(v, "deadLetterTopic")),
            metadata,
            bulk,
            "PROGRAMMATIC",
        )
    }

    /// One entry of a gRPC app's `ListTopicSubscriptions` answer. Without
    /// routes, events go to the app with an empty path, as daprd does.
    pub fn from_grpc(t: &pb::TopicSubscription) -> Result<Sub, String> {
        let routes = t.routes.clone().unwrap_or_default();
        let rules: Vec<(String, String)> = routes
            .rules
            .iter()
            .map(|r| (r.r#match.clone(), r.path.clone()))
            .collect();
        let bulk = t.bulk_subscribe.as_ref().and_then(|b| {
            Bulk::new(
                b.enabled,
                Some(b.max_messages_count.into()),
                Some(b.max_await_duration_ms.into()),
            )
        });
        Sub::build(
            t.pubsub_name.clone(),
            t.topic.clone(),
            &rules,
            Some(routes.default.clone()),
            Some(t.dead_letter_topic.clone()),
            t.metadata.clone().into_iter().collect(),
            bulk,
            "PROGRAMMATIC",
        )
    }

    /// A streaming subscription (`SubscribeTopicEventsAlpha1`): everything
    /// goes to the stream, so the path is empty.
    pub fn streaming(
        pubsub: String,
        topic: String,
        metadata: HashMap<String, String>,
        dead_letter: Option<String>,
    ) -> Result<Sub, String> {
        Sub::build(
            pubsub,
            topic,
            &[],
            Some(String::new()),
            dead_letter,
            metadata,
            None,
            "STREAMING",
        )
    }

    /// The app path for an event: the first rule that matches, else the
    /// default; `None` when nothing applies (HTTP apps need a path; gRPC
    /// apps and streams take an empty one).
    pub fn route(&self, event: &Value) -> Option<&str> {
        match self.rules.iter().find(|(e, _)| e.matches(event)) {
            Some((_, p)) => Some(p),
            None => self.default_path.as_deref(),
        }
    }
}

/// A field of an app's JSON answer, named as Go's decoder matches it:
/// exactly, else ignoring case (an app may answer `pubSubName`).
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programmatic_fields_in_any_case() {
        let v = serde_json::json!({"PubSubName": "ps", "Topic": "t", "Route": "/r"});
        let s = Sub::from_programmatic(&v).unwrap();
        assert_eq!((s.pubsub.as_str(), s.topic.as_str()), ("ps", "t"));
    }

    #[test]
    fn programmatic_bulk_and_defaults() {
        let v: Value = serde_json::json!({
            "pubsubname": "ps", "topic": "t",
            "bulkSubscribe": {"enabled": true, "maxMessagesCount": 5},
            "metadata": {"rawPayload": "TRUE"}
        });
        let s = Sub::from_programmatic(&v).unwrap();
        assert_eq!(s.default_path.as_deref(), Some("t"));
        assert!(s.raw_payload);
        assert_eq!(
            s.bulk,
            Some(Bulk {
                max_count: 5,
                max_await: BULK_MAX_AWAIT
            })
        );
        let v: Value = serde_json::json!({"pubsubname": "ps", "topic": "t", "bulkSubscribe": {"enabled": false}});
        assert_eq!(Sub::from_programmatic(&v).unwrap().bulk, None);
        assert!(Sub::from_programmatic(&serde_json::json!({"topic": "t"})).is_err());
    }

    #[test]
    fn grpc_routes() {
        let t = pb::TopicSubscription {
            pubsub_name: "ps".into(),
            topic: "t".into(),
            routes: Some(pb::TopicRoutes {
                rules: vec![pb::TopicRule {
                    r#match: "event.type == \"a\"".into(),
                    path: "a".into(),
                }],
                default: String::new(),
            }),
            ..Default::default()
        };
        let s = Sub::from_grpc(&t).unwrap();
        let ev = serde_json::json!({"type": "a"});
        assert_eq!(s.route(&ev), Some("a"));
        assert_eq!(s.route(&serde_json::json!({"type": "b"})), Some(""));
        let bad = pb::TopicSubscription {
            routes: Some(pb::TopicRoutes {
                rules: vec![pb::TopicRule {
                    r#match: "event.type ==".into(),
                    path: "a".into(),
                }],
                default: String::new(),
            }),
            ..t
        };
        assert!(Sub::from_grpc(&bad).is_err());
    }
}
