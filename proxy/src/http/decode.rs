//! HTTP codec, inbound half: method + path + query + body → typed [`Request`].
//!
//! Routing is a match on path segments, so no per-request route table
//! parsing. Anything that doesn't decode becomes `Request::Rejected` so it
//! still passes auth and metrics like any other call.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use spar_components::go_json;
use spar_filters::error::EventsSer;
use spar_filters::handlers::configuration::{ConfigurationRequest, Deliver};
use spar_filters::handlers::health::HealthRequest;
use spar_filters::handlers::jobs::JobsRequest;
use spar_filters::handlers::metadata::MetadataRequest;
use spar_filters::handlers::pubsub::{BulkEntry, PubSubRequest, PublishRequest};
use spar_filters::handlers::secrets::SecretsRequest;
use spar_filters::handlers::state::{self as hs, DeleteItem, SaveItem, StateRequest, TxOp};
use spar_filters::{ApiError, Request};

/// The decoded call plus its route template (a bounded metric label).
pub struct Decoded {
    pub route: &'static str,
    pub req: Request,
}

fn rejected(route: &'static str, e: ApiError) -> Decoded {
    Decoded {
        route,
        req: Request::Rejected(e),
    }
}

/// `%XX` decoding of one path segment; invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    percent_decode_cow(s).into_owned()
}

/// [`percent_decode`], borrowing `s` when it has nothing encoded.
pub fn percent_decode_cow(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Query parameters, decoded; `metadata.X=Y` pairs go to the metadata map.
#[derive(Default)]
pub struct Query {
    pub params: Vec<(String, String)>,
    pub metadata: HashMap<String, String>,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut out = Query::default();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(&k.replace('+', " "));
            let v = percent_decode(&v.replace('+', " "));
            match k.strip_prefix("metadata.") {
                Some(mk) if !mk.is_empty() => {
                    out.metadata.insert(mk.to_string(), v);
                }
                _ => out.params.push((k, v)),
            }
        }
        out
    }

    /// Every value of a repeated parameter (`?key=a&key=b`).
    fn all(&self, name: &str) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn get(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

#[derive(Deserialize)]
struct StateOptionsJson {
    #[serde(default)]
    concurrency: String,
    #[serde(default)]
    consistency: String,
}

#[derive(Deserialize)]
struct SaveItemJson {
    #[serde(default)]
    key: String,
    value: Option<Box<RawValue>>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    options: Option<StateOptionsJson>,
}

#[derive(Deserialize)]
struct BulkGetJson {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

#[derive(Deserialize)]
struct TxJson {
    #[serde(default)]
    operations: Vec<TxOpJson>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

#[derive(Deserialize)]
struct TxOpJson {
    operation: String,
    request: SaveItemJson,
}

fn malformed(e: impl std::fmt::Display) -> ApiError {
    ApiError::MalformedRequest(e.to_string())
}

/// Every JSON body is read as daprd's Go decoder reads it: field names
/// ignoring case, `null` for an absent object, array or string.
fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    go_json::from_slice(body).map_err(malformed)
}

/// A JSON `value` is stored as its JSON text, as daprd does.
fn save_item(j: SaveItemJson, md: &HashMap<String, String>) -> Result<SaveItem, ApiError> {
    let (concurrency, consistency) = match &j.options {
        Some(o) => (
            hs::parse_concurrency(&o.concurrency)?,
            hs::parse_consistency(&o.consistency)?,
        ),
        None => Default::default(),
    };
    let mut metadata = j.metadata;
    with_query(&mut metadata, md);
    Ok(SaveItem {
        key: j.key,
        value: j
            .value
            .map(|v| v.get().as_bytes().to_vec())
            .unwrap_or_else(|| b"null".to_vec()),
        etag: j.etag,
        concurrency,
        consistency,
        metadata,
    })
}

fn delete_item(j: SaveItemJson, md: &HashMap<String, String>) -> Result<DeleteItem, ApiError> {
    let concurrency = match &j.options {
        Some(o) => hs::parse_concurrency(&o.concurrency)?,
        None => Default::default(),
    };
    let mut metadata = j.metadata;
    with_query(&mut metadata, md);
    Ok(DeleteItem {
        key: j.key,
        etag: j.etag,
        concurrency,
        metadata,
    })
}

/// `metadata.*` query parameters go into every item's metadata, over the
/// item's own keys, as daprd copies them (`maps.Copy`).
fn with_query(item: &mut HashMap<String, String>, query: &HashMap<String, String>) {
    for (k, v) in query {
        item.insert(k.clone(), v.clone());
    }
}

pub struct Head<'a> {
    /// This sidecar's app id, for the details of a few errors.
    pub app_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// `If-Match`, for state deletes.
    pub if_match: Option<String>,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// Any other request header, looked up only by the routes that read
    /// one (crypto's `dapr-*` options).
    pub header: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkEntryJson {
    #[serde(default)]
    entry_id: String,
    event: serde_json::Value,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

fn publish(h: &Head<'_>, pubsub: &str, topic: &[&str], body: &[u8]) -> Result<Request, ApiError> {
    Ok(Request::PubSub(PubSubRequest::Publish(PublishRequest {
        pubsub: percent_decode(pubsub),
        topic: topic
            .iter()
            .map(|s| percent_decode(s))
            .collect::<Vec<_>>()
            .join("/"),
        data: bytes::Bytes::copy_from_slice(body),
        content_type: h.content_type.clone(),
        metadata: Query::parse(h.query).metadata,
        traceparent: h.traceparent.clone(),
        tracestate: h.tracestate.clone(),
    })))
}

fn bulk_publish(
    h: &Head<'_>,
    pubsub: &str,
    topic: &[&str],
    body: &[u8],
) -> Result<Request, ApiError> {
    let entries: Vec<BulkEntryJson> =
        go_json::from_slice(body).map_err(|e| ApiError::PubSubEventsSer {
            kind: EventsSer::Unmarshal,
            pubsub: percent_decode(pubsub),
            topic: topic
                .iter()
                .map(|s| percent_decode(s))
                .collect::<Vec<_>>()
                .join("/"),
            app_id: h.app_id.to_string(),
            reason: e.to_string(),
        })?;
    let entries = entries
        .into_iter()
        .map(|e| {
            let json_like = e.content_type.contains("json") || e.content_type.is_empty();
            let event = match e.event {
                serde_json::Value::String(s) if !json_like => bytes::Bytes::from(s.into_bytes()),
                v => bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            };
            BulkEntry {
                entry_id: e.entry_id,
                event,
                content_type: if e.content_type.is_empty() {
                    "application/json".into()
                } else {
                    e.content_type
                },
                metadata: e.metadata,
            }
        })
        .collect();
    Ok(Request::PubSub(PubSubRequest::BulkPublish {
        pubsub: percent_decode(pubsub),
        topic: topic
            .iter()
            .map(|s| percent_decode(s))
            .collect::<Vec<_>>()
            .join("/"),
        entries,
        metadata: Query::parse(h.query).metadata,
        traceparent: h.traceparent.clone(),
    }))
}

pub fn decode(h: &Head<'_>, body: &[u8]) -> Decoded {
    let segs: Vec<&str> = h
        .path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let m = h.method;
    match segs.as_slice() {
        ["v1.0", "healthz"] => {
            let q = Query::parse(h.query);
            let app_id = Some(q.get("appid").to_string()).filter(|s| !s.is_empty());
            only(m, &["GET", "HEAD"], "/v1.0/healthz", h.path, || {
                Ok(Request::Health(HealthRequest::Healthz { app_id }))
            })
        }
        ["v1.0", "healthz", "outbound"] => only(
            m,
            &["GET", "HEAD"],
            "/v1.0/healthz/outbound",
            h.path,
            || Ok(Request::Health(HealthRequest::Outbound)),
        ),
        ["v1.0", "metadata"] => only(m, &["GET"], "/v1.0/metadata", h.path, || {
            Ok(Request::Metadata(MetadataRequest::Get))
        }),
        ["v1.0", "metadata", key] => only(m, &["PUT"], "/v1.0/metadata/{key}", h.path, || {
            Ok(Request::Metadata(MetadataRequest::Set {
                key: percent_decode(key),
                value: String::from_utf8(body.to_vec())
                    .map_err(|_| malformed("metadata value must be UTF-8 text"))?,
            }))
        }),
        ["v1.0", "shutdown"] => only(m, &["POST"], "/v1.0/shutdown", h.path, || {
            Ok(Request::Shutdown)
        }),
        ["v1.0", "state", store] => only(
            m,
            &["POST", "PUT"],
            "/v1.0/state/{storeName}",
            h.path,
            || {
                let q = Query::parse(h.query);
                let items: Vec<SaveItemJson> = parse_json(body)?;
                let items = items
                    .into_iter()
                    .map(|j| save_item(j, &q.metadata))
                    .collect::<Result<_, _>>()?;
                Ok(state(StateRequest::Save {
                    store: percent_decode(store),
                    items,
                }))
            },
        ),
        ["v1.0", "state", store, "bulk"] if m == "POST" || m == "PUT" => {
            let route = "/v1.0/state/{storeName}/bulk";
            let q = Query::parse(h.query);
            match parse_json::<BulkGetJson>(body) {
                Ok(mut j) => {
                    with_query(&mut j.metadata, &q.metadata);
                    Decoded {
                        route,
                        req: state(StateRequest::BulkGet {
                            store: percent_decode(store),
                            keys: j.keys,
                            metadata: j.metadata,
                        }),
                    }
                }
                Err(e) => rejected(route, e),
            }
        }
        ["v1.0", "state", store, "transaction"] if m == "POST" || m == "PUT" => {
            let route = "/v1.0/state/{storeName}/transaction";
            let r = (|| {
                let mut j: TxJson = parse_json(body)?;
                let q = Query::parse(h.query);
                with_query(&mut j.metadata, &q.metadata);
                let mut ops = Vec::with_capacity(j.operations.len());
                for op in j.operations {
                    ops.push(match op.operation.as_str() {
                        "upsert" => TxOp::Upsert(save_item(op.request, &q.metadata)?),
                        "delete" => TxOp::Delete(delete_item(op.request, &q.metadata)?),
                        other => {
                            return Err(malformed(format!("operation type {other} not supported")))
                        }
                    });
                }
                Ok(state(StateRequest::Transaction {
                    store: percent_decode(store),
                    ops,
                    metadata: j.metadata,
                }))
            })();
            done(route, r)
        }
        ["v1.0", "state", store, key @ ..] if !key.is_empty() => {
            let route = "/v1.0/state/{storeName}/{key}";
            let q = Query::parse(h.query);
            let key = key
                .iter()
                .map(|s| percent_decode(s))
                .collect::<Vec<_>>()
                .join("/");
            let store = percent_decode(store);
            let r = match m {
                "GET" => hs::parse_consistency(q.get("consistency")).map(|consistency| {
                    state(StateRequest::Get {
                        store,
                        key,
                        consistency,
                        metadata: q.metadata,
                    })
                }),
                "DELETE" => hs::parse_concurrency(q.get("concurrency")).map(|concurrency| {
                    state(StateRequest::Delete {
                        store,
                        item: DeleteItem {
                            key,
                            etag: h.if_match.clone(),
                            concurrency,
                            metadata: q.metadata,
                        },
                    })
                }),
                _ => Err(not_allowed(m, h.path)),
            };
            done(route, r)
        }
        ["v1.0", "secrets", store, "bulk"] => only(
            m,
            &["GET"],
            "/v1.0/secrets/{secretStoreName}/bulk",
            h.path,
            || {
                Ok(Request::Secrets(SecretsRequest::Bulk {
                    store: percent_decode(store),
                    metadata: Query::parse(h.query).metadata.into_iter().collect(),
                }))
            },
        ),
        ["v1.0", "secrets", store, name @ ..] if !name.is_empty() => only(
            m,
            &["GET"],
            "/v1.0/secrets/{secretStoreName}/{key}",
            h.path,
            || {
                Ok(Request::Secrets(SecretsRequest::Get {
                    store: percent_decode(store),
                    name: name
                        .iter()
                        .map(|s| percent_decode(s))
                        .collect::<Vec<_>>()
                        .join("/"),
                    metadata: Query::parse(h.query).metadata.into_iter().collect(),
                }))
            },
        ),
        ["v1.0-alpha1" | "v1.0", "publish", "bulk", pubsub, topic @ ..] => only(
            m,
            &["POST", "PUT"],
            "/v1.0-alpha1/publish/bulk/{pubsubname}/{topic}",
            h.path,
            || bulk_publish(h, pubsub, topic, body),
        ),
        ["v1.0", "publish", pubsub, topic @ ..] => only(
            m,
            &["POST", "PUT"],
            "/v1.0/publish/{pubsubname}/{topic}",
            h.path,
            || publish(h, pubsub, topic, body),
        ),
        [v @ ("v1.0" | "v1.0-alpha1"), "configuration", store] => {
            let route = if *v == "v1.0" {
                "/v1.0/configuration/{storeName}"
            } else {
                "/v1.0-alpha1/configuration/{storeName}"
            };
            only(m, &["GET"], route, h.path, || {
                let q = Query::parse(h.query);
                Ok(Request::Configuration(ConfigurationRequest::Get {
                    store: percent_decode(store),
                    keys: q.all("key"),
                    metadata: q.metadata,
                }))
            })
        }
        [v @ ("v1.0" | "v1.0-alpha1"), "configuration", store, "subscribe"] => {
            let route = if *v == "v1.0" {
                "/v1.0/configuration/{storeName}/subscribe"
            } else {
                "/v1.0-alpha1/configuration/{storeName}/subscribe"
            };
            only(m, &["GET"], route, h.path, || {
                let q = Query::parse(h.query);
                Ok(Request::Configuration(ConfigurationRequest::Subscribe {
                    store: percent_decode(store),
                    keys: q.all("key"),
                    metadata: q.metadata,
                    deliver: Deliver::App,
                }))
            })
        }
        [v @ ("v1.0" | "v1.0-alpha1"), "configuration", store, id, "unsubscribe"] => {
            let route = if *v == "v1.0" {
                "/v1.0/configuration/{storeName}/{configurationSubscribeID}/unsubscribe"
            } else {
                "/v1.0-alpha1/configuration/{storeName}/{configurationSubscribeID}/unsubscribe"
            };
            only(m, &["GET"], route, h.path, || {
                Ok(Request::Configuration(ConfigurationRequest::Unsubscribe {
                    store: Some(percent_decode(store)),
                    id: percent_decode(id),
                }))
            })
        }
        ["v1.0-alpha1", "crypto", name, "encrypt"] => only(
            m,
            &["PUT"],
            "/v1.0-alpha1/crypto/{name}/encrypt",
            h.path,
            || super::crypto::encrypt(h, name, body),
        ),
        ["v1.0-alpha1", "crypto", name, "decrypt"] => only(
            m,
            &["PUT"],
            "/v1.0-alpha1/crypto/{name}/decrypt",
            h.path,
            || super::crypto::decrypt(h, name, body),
        ),
        ["v1.0-alpha1", "subtlecrypto", name, op] => match super::crypto::subtle_route(op) {
            Some((route, op)) => only(m, &["POST"], route, h.path, || {
                super::crypto::subtle(op, name, body)
            }),
            None => rejected(
                "unmatched",
                ApiError::RouteNotFound(format!("{} {}", h.method, h.path)),
            ),
        },
        ["v1.0-alpha1", "state", store, "query"] => {
            only(
                m,
                &["POST", "PUT"],
                "/v1.0-alpha1/state/{storeName}/query",
                h.path,
                || {
                    // Validate it's JSON here so a syntax error is a 400, not a store error.
                    parse_json::<serde::de::IgnoredAny>(body)?;
                    Ok(state(StateRequest::Query {
                        store: percent_decode(store),
                        query: body.to_vec(),
                        metadata: Query::parse(h.query).metadata,
                    }))
                },
            )
        }
        ["v1.0", "bindings", name] => {
            only(m, &["POST", "PUT"], "/v1.0/bindings/{name}", h.path, || {
                super::bindings::invoke(percent_decode(name), body)
            })
        }
        [v @ ("v1.0-alpha1" | "v1.0"), "jobs", name @ ..] if !name.is_empty() => {
            let route = if *v == "v1.0" {
                "/v1.0/jobs/{name}"
            } else {
                "/v1.0-alpha1/jobs/{name}"
            };
            // A name with '/' reaches the scheduler whole, which refuses it.
            let name = name
                .iter()
                .map(|s| percent_decode(s))
                .collect::<Vec<_>>()
                .join("/");
            let jobs = |r| Ok(Request::Jobs(Box::new(r)));
            let r = match m {
                "POST" => super::jobs::schedule(name, body, h.app_id),
                "GET" => jobs(JobsRequest::Get { name }),
                "DELETE" => jobs(JobsRequest::Delete { name }),
                _ => Err(not_allowed(m, h.path)),
            };
            done(route, r)
        }
        ["v1.0-alpha1", "lock", store] => only(
            m,
            &["POST"],
            "/v1.0-alpha1/lock/{storeName}",
            h.path,
            || super::lock::try_lock(percent_decode(store), body),
        ),
        ["v1.0-alpha1", "unlock", store] => only(
            m,
            &["POST"],
            "/v1.0-alpha1/unlock/{storeName}",
            h.path,
            || super::lock::unlock(percent_decode(store), body),
        ),
        ["v1.0-alpha1", "conversation", name, "converse"] => only(
            m,
            &["POST"],
            "/v1.0-alpha1/conversation/{name}/converse",
            h.path,
            || super::conversation::alpha1(percent_decode(name), body),
        ),
        ["v1.0-alpha2", "conversation", name, "converse"] => only(
            m,
            &["POST"],
            "/v1.0-alpha2/conversation/{name}/converse",
            h.path,
            || super::conversation::alpha2(percent_decode(name), body),
        ),
        _ => rejected(
            "unmatched",
            ApiError::RouteNotFound(format!("{} {}", h.method, h.path)),
        ),
    }
}

fn state(r: StateRequest) -> Request {
    Request::State(r)
}

fn not_allowed(method: &str, path: &str) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.into(),
        path: path.into(),
    }
}

fn done(route: &'static str, r: Result<Request, ApiError>) -> Decoded {
    match r {
        Ok(req) => Decoded { route, req },
        Err(e) => rejected(route, e),
    }
}

fn only(
    method: &str,
    allowed: &[&str],
    route: &'static str,
    path: &str,
    f: impl FnOnce() -> Result<Request, ApiError>,
) -> Decoded {
    if !allowed.contains(&method) {
        return rejected(route, not_allowed(method, path));
    }
    done(route, f())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(method: &str, path: &str, body: &str) -> Decoded {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        decode(
            &Head {
                app_id: "app",
                method,
                path,
                query,
                if_match: None,
                content_type: None,
                traceparent: None,
                tracestate: None,
                header: &|_| None,
            },
            body.as_bytes(),
        )
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn routes() {
        assert!(matches!(
            d("GET", "/v1.0/healthz", "").req,
            Request::Health(_)
        ));
        assert!(matches!(
            d("GET", "/v1.0/metadata", "").req,
            Request::Metadata(_)
        ));
        assert!(matches!(
            d("POST", "/v1.0/shutdown", "").req,
            Request::Shutdown
        ));
        let r = d(
            "GET",
            "/v1.0/state/s/a%2Fb?consistency=strong&metadata.x=1",
            "",
        );
        match r.req {
            Request::State(StateRequest::Get {
                store,
                key,
                metadata,
                ..
            }) => {
                assert_eq!((store.as_str(), key.as_str()), ("s", "a/b"));
                assert_eq!(metadata["x"], "1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            d("GET", "/v1.0/nope", "").req,
            Request::Rejected(ApiError::RouteNotFound(_))
        ));
        assert!(matches!(
            d("PATCH", "/v1.0/state/s/k", "").req,
            Request::Rejected(ApiError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn save_keeps_json_text_and_rejects_garbage() {
        match d("POST", "/v1.0/state/s", r#"[{"key":"k","value":{"a":1}}]"#).req {
            Request::State(StateRequest::Save { items, .. }) => {
                assert_eq!(items[0].value, br#"{"a":1}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            d("POST", "/v1.0/state/s", "{not json").req,
            Request::Rejected(ApiError::MalformedRequest(_))
        ));
        assert!(matches!(
            d(
                "POST",
                "/v1.0/state/s",
                r#"[{"key":"k","value":1,"options":{"concurrency":"x"}}]"#
            )
            .req,
            Request::Rejected(ApiError::MalformedRequest(_))
        ));
    }

    #[test]
    fn transaction_ops() {
        let body = r#"{"operations":[{"operation":"upsert","request":{"key":"a","value":"x"}},{"operation":"delete","request":{"key":"b"}}]}"#;
        match d("POST", "/v1.0/state/s/transaction", body).req {
            Request::State(StateRequest::Transaction { ops, .. }) => assert_eq!(ops.len(), 2),
            other => panic!("{other:?}"),
        }
        let bad = r#"{"operations":[{"operation":"merge","request":{"key":"a"}}]}"#;
        assert!(matches!(
            d("POST", "/v1.0/state/s/transaction", bad).req,
            Request::Rejected(_)
        ));
    }
}
