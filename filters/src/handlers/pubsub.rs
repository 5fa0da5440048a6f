//! Publish (single and bulk), one implementation for the HTTP and gRPC
//! faces: component lookup, topic scoping, the CloudEvents envelope, the
//! broker call. Delivery to subscribers lives in the `spar` binary's
//! subscriber (it is driven by brokers, not by API calls).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use spar_components::pubsub::{Message, PubSub, PubSubError};

use crate::cloudevent::{self, EnvelopeInfo};
use crate::error::EventsSer;
use crate::error_details::metadata_of;
use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::{ApiError, ApiResult, Response, Runtime};

/// Topic scoping from component metadata (`allowedTopics`,
/// `protectedTopics`, `publishingScopes`, `subscriptionScopes`), resolved
/// for this app id once at start.
#[derive(Debug, Clone, Default)]
pub struct Scopes {
    allowed: Option<HashSet<String>>,
    protected: HashSet<String>,
    /// `None`: the app is not listed (all topics, but protected ones).
    publish: Option<HashSet<String>>,
    subscribe: Option<HashSet<String>>,
}

fn list(v: Option<&str>) -> HashSet<String> {
    v.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `app1=t1,t2;app2=` → this app's entry, if it is listed.
fn scoped(v: Option<&str>, app_id: &str) -> Option<HashSet<String>> {
    v?.split(';').find_map(|entry| {
        let (app, topics) = entry.split_once('=')?;
        (app.trim() == app_id).then(|| list(Some(topics)))
    })
}

impl Scopes {
    pub fn from_metadata(meta: &HashMap<String, String>, app_id: &str) -> Self {
        let get = |k: &str| meta.get(k).map(String::as_str);
        Scopes {
            allowed: get("allowedTopics")
                .map(|v| list(Some(v)))
                .filter(|s| !s.is_empty()),
            protected: list(get("protectedTopics")),
            publish: scoped(get("publishingScopes"), app_id),
            subscribe: scoped(get("subscriptionScopes"), app_id),
        }
    }

    fn allows(&self, scoped: &Option<HashSet<String>>, topic: &str) -> bool {
        if let Some(a) = &self.allowed {
            if !a.contains(topic) {
                return false;
            }
        }
        match scoped {
            Some(s) => s.contains(topic),
            None => !self.protected.contains(topic),
        }
    }

    pub fn may_publish(&self, topic: &str) -> bool {
        self.allows(&self.publish, topic)
    }

    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.allows(&self.subscribe, topic)
    }
}

pub struct PubSubComponent {
    pub broker: Arc<dyn PubSub>,
    pub scopes: Scopes,
    /// `consumerID` metadata, else the app id.
    pub consumer_group: String,
}

#[derive(Default)]
pub struct PubSubs {
    by_name: HashMap<String, Arc<PubSubComponent>>,
}

impl PubSubs {
    pub fn insert(&mut self, name: String, c: PubSubComponent) {
        self.by_name.insert(name, Arc::new(c));
    }

    /// Carries a running component over unchanged (hot reload).
    pub fn insert_shared(&mut self, name: String, c: Arc<PubSubComponent>) {
        self.by_name.insert(name, c);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<PubSubComponent>> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }
}

#[derive(Debug)]
pub struct PublishRequest {
    pub pubsub: String,
    pub topic: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    /// `metadata.*` query parameters / gRPC metadata map.
    pub metadata: HashMap<String, String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

#[derive(Debug)]
pub struct BulkEntry {
    pub entry_id: String,
    pub event: Bytes,
    pub content_type: String,
    pub metadata: HashMap<String, String>,
}

#[derive(Debug)]
pub enum PubSubRequest {
    Publish(PublishRequest),
    BulkPublish {
        pubsub: String,
        topic: String,
        entries: Vec<BulkEntry>,
        metadata: HashMap<String, String>,
        traceparent: Option<String>,
    },
    /// May this app subscribe to the topic? (A streaming subscription asks
    /// before it opens, so auth and metrics see it like any call.)
    Subscribe {
        pubsub: String,
        topic: String,
    },
}

/// Entry ids that failed, with why.
#[derive(Debug, Default)]
pub struct BulkFailures(pub Vec<(String, String)>);

fn component<'a>(
    rt: &Runtime,
    live: &'a Live,
    pubsub: &str,
    topic: &str,
    metadata: &HashMap<String, String>,
) -> Result<&'a Arc<PubSubComponent>, ApiError> {
    let c = lookup(live, pubsub, topic, metadata)?;
    if !c.scopes.may_publish(topic) {
        return Err(ApiError::PubSubForbidden {
            pubsub: pubsub.to_string(),
            topic: topic.to_string(),
            app_id: rt.app_id.clone(),
        });
    }
    Ok(c)
}

/// The component, or daprd's lookup errors; the request's metadata goes
/// into their details as daprd puts it there.
fn lookup<'a>(
    live: &'a Live,
    pubsub: &str,
    topic: &str,
    metadata: &HashMap<String, String>,
) -> Result<&'a Arc<PubSubComponent>, ApiError> {
    if live.pubsubs.is_empty() {
        return Err(ApiError::PubSubNotConfigured {
            pubsub: pubsub.to_string(),
            metadata: metadata_of(metadata),
        });
    }
    if pubsub.is_empty() {
        return Err(ApiError::PubSubEmpty {
            metadata: metadata_of(metadata),
        });
    }
    let c = live
        .pubsubs
        .get(pubsub)
        .ok_or_else(|| ApiError::PubSubNotFound {
            pubsub: pubsub.to_string(),
            metadata: metadata_of(metadata),
        })?;
    if topic.is_empty() {
        return Err(ApiError::TopicEmpty {
            pubsub: pubsub.to_string(),
            metadata: metadata_of(metadata),
        });
    }
    Ok(c)
}

fn truthy(m: &HashMap<String, String>, k: &str) -> bool {
    m.get(k)
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn ttl(pubsub: &str, m: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    match m.get("ttlInSeconds") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| ApiError::PubSubRequestMetadata {
                pubsub: pubsub.to_string(),
                metadata: metadata_of(m),
                reason: format!("ttlInSeconds {v:?} must be a whole number of seconds"),
            }),
    }
}

/// Builds the broker message: the envelope unless `rawPayload=true`.
#[allow(clippy::too_many_arguments)]
fn message(
    rt: &Runtime,
    pubsub: &str,
    topic: &str,
    data: &[u8],
    content_type: Option<&str>,
    metadata: &HashMap<String, String>,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Result<Message, ApiError> {
    let ttl = ttl(pubsub, metadata)?;
    let data = if truthy(metadata, "rawPayload") {
        Bytes::copy_from_slice(data)
    } else {
        cloudevent::envelope(
            data,
            &EnvelopeInfo {
                source: &rt.app_id,
                pubsub,
                topic,
                content_type,
                traceparent,
                tracestate,
                ttl,
            },
        )
        .map(Bytes::from)
        .map_err(|reason| ApiError::PubSubCloudEvent {
            pubsub: pubsub.to_string(),
            app_id: rt.app_id.clone(),
            reason,
        })?
    };
    let mut md = metadata.clone();
    if let Some(ct) = content_type {
        md.entry("contentType".into())
            .or_insert_with(|| ct.to_string());
    }
    Ok(Message {
        topic: topic.to_string(),
        data,
        metadata: md,
    })
}

pub async fn handle(rt: &Runtime, req: PubSubRequest) -> ApiResult {
    let live = rt.live();
    match req {
        PubSubRequest::Subscribe { pubsub, topic } => {
            let c = lookup(&live, &pubsub, &topic, &HashMap::new())?;
            if !c.scopes.may_subscribe(&topic) {
                return Err(ApiError::PubSubForbidden {
                    pubsub,
                    topic,
                    app_id: rt.app_id.clone(),
                });
            }
            Ok(Response::Empty)
        }
        PubSubRequest::Publish(p) => {
            let c = component(rt, &live, &p.pubsub, &p.topic, &p.metadata)?;
            let msg = message(
                rt,
                &p.pubsub,
                &p.topic,
                &p.data,
                p.content_type.as_deref(),
                &p.metadata,
                p.traceparent.as_deref(),
                p.tracestate.as_deref(),
            )?;
            let started = std::time::Instant::now();
            let mut span = crate::trace::filter::child_span(
                &live.tracer,
                || format!("pubsub/{}/publish", p.pubsub),
                crate::trace::SpanKind::Producer,
            );
            if let Some(s) = span.as_mut() {
                s.attr("messaging.system", "pubsub");
                s.attr("messaging.destination.name", p.topic.clone());
            }
            let sent = match live.resiliency.component_outbound(&p.pubsub) {
                None => c.broker.publish(&msg).await,
                Some(policy) => policy
                    .run(
                        || c.broker.publish(&msg),
                        |r| match r {
                            Err(PubSubError::Backend(_)) => Verdict::Failed(None),
                            _ => Verdict::Success,
                        },
                    )
                    .await
                    .map_err(|r| match r {
                        Refused::Failed(e) => e,
                        Refused::Timeout(d) => {
                            PubSubError::Backend(format!("timeout after {d:?} (resiliency policy)"))
                        }
                        Refused::BreakerOpen => {
                            PubSubError::Backend("circuit breaker is open".into())
                        }
                    }),
            };
            if let Some(m) = &rt.metrics {
                m.egress(&p.pubsub, &p.topic, sent.is_ok(), 1, false, started);
            }
            if let (Some(s), Err(e)) = (span.as_mut(), &sent) {
                s.error(e.to_string());
            }
            drop(span);
            sent.map_err(|e| ApiError::PubSubPublish {
                topic: p.topic.clone(),
                pubsub: p.pubsub.clone(),
                reason: e.to_string(),
            })?;
            Ok(Response::Empty)
        }
        PubSubRequest::BulkPublish {
            pubsub,
            topic,
            entries,
            metadata,
            traceparent,
        } => {
            let c = component(rt, &live, &pubsub, &topic, &metadata)?;
            let mut seen = HashSet::new();
            for e in &entries {
                if e.entry_id.is_empty() || !seen.insert(e.entry_id.as_str()) {
                    return Err(ApiError::PubSubEventsSer {
                        kind: EventsSer::MarshalEvents,
                        pubsub,
                        topic,
                        app_id: rt.app_id.clone(),
                        reason: "entryId is duplicated or not present for entry".into(),
                    });
                }
            }
            let mut msgs = Vec::with_capacity(entries.len());
            for e in &entries {
                let mut md = metadata.clone();
                md.extend(e.metadata.clone());
                let ct = (!e.content_type.is_empty()).then_some(e.content_type.as_str());
                msgs.push(message(
                    rt,
                    &pubsub,
                    &topic,
                    &e.event,
                    ct,
                    &md,
                    traceparent.as_deref(),
                    None,
                )?);
            }
            let started = std::time::Instant::now();
            let results = c.broker.bulk_publish(&msgs).await;
            if let Some(m) = &rt.metrics {
                let ok = results.iter().all(Result::is_ok);
                m.egress(&pubsub, &topic, ok, msgs.len(), true, started);
            }
            let failed: Vec<(String, String)> = entries
                .iter()
                .zip(results)
                .filter_map(|(e, r)| r.err().map(|err| (e.entry_id.clone(), err.to_string())))
                .collect();
            Ok(Response::BulkPublished(BulkFailures(failed)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoping() {
        let meta: HashMap<String, String> = [
            ("allowedTopics", "orders,payments,audit,secret"),
            ("protectedTopics", "secret"),
            ("publishingScopes", "app1=orders;app2=;app3=secret,orders"),
            ("subscriptionScopes", "app1=payments"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s1 = Scopes::from_metadata(&meta, "app1");
        assert!(s1.may_publish("orders"));
        assert!(!s1.may_publish("payments"));
        assert!(s1.may_subscribe("payments"));
        assert!(!s1.may_subscribe("orders"));
        let s2 = Scopes::from_metadata(&meta, "app2");
        assert!(!s2.may_publish("orders"), "listed with no topics: none");
        assert!(
            s2.may_subscribe("orders"),
            "not listed for subscribing: allowed"
        );
        assert!(
            !s2.may_subscribe("secret"),
            "protected needs an explicit scope"
        );
        let s3 = Scopes::from_metadata(&meta, "app3");
        assert!(s3.may_publish("secret"));
        let other = Scopes::from_metadata(&meta, "other");
        assert!(other.may_publish("audit"));
        assert!(
            !other.may_publish("unlisted"),
            "allowedTopics bounds everyone"
        );
    }
}
