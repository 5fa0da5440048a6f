//! HTTP codec, outbound half: typed response or error → status, headers, body.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use spar_components::configuration::{Item, Items};
use spar_filters::handlers::configuration::ConfigurationResponse;
use spar_filters::handlers::metadata::MetadataSnapshot;
use spar_filters::handlers::secrets::SecretsResponse;
use spar_filters::handlers::state::StateResponse;
use spar_filters::{ApiError, Response};

pub struct Encoded {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

const JSON: &str = "application/json";

fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

/// A stored value inside a JSON document: as itself when it is JSON, else
/// as a string (UTF-8) — daprd would emit invalid JSON here.
fn embed(data: Vec<u8>) -> Value {
    if is_json(&data) {
        if let Ok(v) = serde_json::from_slice::<Box<serde_json::value::RawValue>>(&data) {
            return serde_json::to_value(v).unwrap_or(Value::Null);
        }
    }
    Value::String(String::from_utf8_lossy(&data).into_owned())
}

fn json_body(status: u16, v: &Value) -> Encoded {
    Encoded {
        status,
        headers: vec![("content-type", JSON.into())],
        body: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    }
}

pub fn error(e: &ApiError) -> Encoded {
    Encoded {
        status: e.http_status(),
        headers: vec![("content-type", JSON.into())],
        body: Bytes::from(e.to_json()),
    }
}

pub fn response(r: Response) -> Encoded {
    let status = r.http_status();
    match r {
        Response::Empty | Response::Bare(_) => Encoded {
            status,
            headers: vec![],
            body: Bytes::new(),
        },
        Response::Metadata(m) => json_body(status, &metadata(&m)),
        Response::State(s) => state(status, s),
        Response::Secrets(SecretsResponse::One(s)) => json_body(status, &json!(s)),
        Response::Secrets(SecretsResponse::Bulk(all)) => json_body(status, &json!(all)),
        // Invocation is proxied by the front end, never encoded.
        Response::Proxy(_) => error(&ApiError::Internal("invocation reached the encoder".into())),
        Response::BulkPublished(f) if f.0.is_empty() => Encoded {
            status,
            headers: vec![],
            body: Bytes::new(),
        },
        Response::Configuration(ConfigurationResponse::Items(items)) if items.is_empty() => {
            Encoded {
                status,
                headers: vec![],
                body: Bytes::new(),
            }
        }
        Response::Configuration(ConfigurationResponse::Items(items)) => {
            json_body(status, &configuration_items(&items))
        }
        Response::Configuration(ConfigurationResponse::Subscribed(s)) => {
            json_body(status, &json!({"id": s.id}))
        }
        Response::Configuration(ConfigurationResponse::Unsubscribed) => {
            json_body(status, &json!({"ok": true}))
        }
        // Only gRPC asks for this answer.
        Response::Configuration(ConfigurationResponse::NotSubscribed(message)) => {
            json_body(500, &json!({"message": message}))
        }
        Response::Lock(l) => json_body(status, &super::lock::encode(&l)),
        Response::Jobs(j) => json_body(status, &super::jobs::encode(&j)),
        Response::Conversation(c) => json_body(status, &super::conversation::encode(&c)),
        Response::Crypto(c) => super::crypto::response(status, *c),
        Response::Binding(None) => Encoded {
            status,
            headers: vec![],
            body: Bytes::new(),
        },
        Response::Binding(Some(b)) => Encoded {
            status,
            headers: vec![("content-type", JSON.into())],
            body: Bytes::from(b.data),
        },
        // Some entries failed: daprd's body, listing them.
        Response::BulkPublished(f) => json_body(
            status,
            &json!({
                "failedEntries": f.0.iter().map(|(id, e)| json!({"entryId": id, "error": e})).collect::<Vec<_>>(),
                "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
            }),
        ),
    }
}

/// Configuration items as daprd writes them: `{key: {value, version,
/// metadata}}`, empty fields left out (a deleted key is `{}`).
pub fn configuration_items(items: &Items) -> Value {
    let item = |i: &Item| {
        let mut o = Map::new();
        if !i.value.is_empty() {
            o.insert("value".into(), i.value.clone().into());
        }
        if !i.version.is_empty() {
            o.insert("version".into(), i.version.clone().into());
        }
        if !i.metadata.is_empty() {
            o.insert("metadata".into(), json!(i.metadata));
        }
        Value::Object(o)
    };
    Value::Object(items.iter().map(|(k, i)| (k.clone(), item(i))).collect())
}

fn state(status: u16, s: StateResponse) -> Encoded {
    match s {
        StateResponse::Item(None) => Encoded {
            status,
            headers: vec![],
            body: Bytes::new(),
        },
        StateResponse::Item(Some(it)) => {
            let mut headers = Vec::with_capacity(2 + it.metadata.len());
            let ct = if is_json(&it.data) {
                JSON
            } else {
                "application/octet-stream"
            };
            headers.push(("content-type", ct.to_string()));
            if let Some(e) = it.etag {
                headers.push(("etag", e));
            }
            for (k, v) in it.metadata {
                if k == "ttlExpireTime" {
                    headers.push(("metadata.ttlExpireTime", v));
                }
            }
            Encoded {
                status,
                headers,
                body: Bytes::from(it.data),
            }
        }
        StateResponse::Bulk(items) => {
            let arr: Vec<Value> = items
                .into_iter()
                .map(|b| {
                    let mut o = Map::new();
                    o.insert("key".into(), b.key.into());
                    if let Some(d) = b.data {
                        o.insert("data".into(), embed(d));
                    }
                    if let Some(e) = b.etag {
                        o.insert("etag".into(), e.into());
                    }
                    if let Some(e) = b.error {
                        o.insert("error".into(), e.into());
                    }
                    if !b.metadata.is_empty() {
                        o.insert("metadata".into(), json!(b.metadata));
                    }
                    Value::Object(o)
                })
                .collect();
            json_body(status, &Value::Array(arr))
        }
        StateResponse::Query(q) => {
            let results: Vec<Value> = q
                .results
                .into_iter()
                .map(|(key, data, etag)| {
                    let mut o = Map::new();
                    o.insert("key".into(), key.into());
                    o.insert("data".into(), embed(data));
                    if let Some(e) = etag {
                        o.insert("etag".into(), e.into());
                    }
                    Value::Object(o)
                })
                .collect();
            let mut o = Map::new();
            o.insert("results".into(), Value::Array(results));
            if let Some(t) = q.token {
                o.insert("token".into(), t.into());
            }
            if !q.metadata.is_empty() {
                o.insert("metadata".into(), json!(q.metadata));
            }
            json_body(status, &Value::Object(o))
        }
    }
}

/// The metadata document with daprd's field names.
fn metadata(m: &MetadataSnapshot) -> Value {
    let components: Vec<Value> = m
        .components
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "version": c.version, "capabilities": c.capabilities})
        })
        .collect();
    let mut o = json!({
        "id": m.id,
        "runtimeVersion": m.runtime_version,
        "enabledFeatures": m.enabled_features,
        "actors": [],
        "components": components,
        "extended": m.extended,
        "subscriptions": m.subscriptions.iter().map(|s| {
            let mut o = json!({
                "pubsubname": s.pubsub,
                "topic": s.topic,
                "rules": s.rules.iter().map(|p| json!({"path": p})).collect::<Vec<_>>(),
                "type": s.kind,
            });
            if let Some(d) = &s.dead_letter {
                o["deadLetterTopic"] = json!(d);
            }
            o
        }).collect::<Vec<_>>(),
        "httpEndpoints": m.http_endpoints.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
    });
    if let Some(a) = &m.app_connection {
        let mut ac = json!({
            "port": a.port,
            "protocol": a.protocol,
            "channelAddress": a.channel_address,
            "maxConcurrency": a.max_concurrency,
        });
        if let Some(h) = &a.health {
            ac["health"] = json!({
                "healthCheckPath": h.path,
                "healthProbeInterval": humantime::format_duration(h.interval).to_string(),
                "healthProbeTimeout": humantime::format_duration(h.timeout).to_string(),
                "healthThreshold": h.threshold,
            });
        }
        o["appConnectionProperties"] = ac;
    }
    o
}
