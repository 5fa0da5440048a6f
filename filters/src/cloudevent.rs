//! The CloudEvents 1.0 envelope, as Dapr builds it on publish and reads it
//! on delivery.

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::{json, Map, Value};

/// What the envelope needs besides the payload.
#[derive(Debug, Clone, Default)]
pub struct EnvelopeInfo<'a> {
    pub source: &'a str,
    pub pubsub: &'a str,
    pub topic: &'a str,
    /// The publisher's content type; Dapr's default is `text/plain`.
    pub content_type: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    /// `metadata.ttlInSeconds`: sets `expiration`.
    pub ttl: Option<Duration>,
}

pub const DEFAULT_CONTENT_TYPE: &str = "text/plain";
pub const EVENT_TYPE: &str = "com.dapr.event.sent";

fn base_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

pub fn is_cloudevent(ct: &str) -> bool {
    base_type(ct) == "application/cloudevents+json"
}

fn is_json(ct: &str) -> bool {
    let t = base_type(ct);
    t == "application/json" || t == "text/json" || t.ends_with("+json")
}

fn is_text(ct: &str) -> bool {
    let t = base_type(ct);
    t.starts_with("text/") || t == "application/xml" || t.ends_with("+xml")
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A fresh W3C trace context when the caller sent none.
pub fn new_traceparent() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{id}-{span}-01")
}

/// Wraps `data` for publishing. An incoming CloudEvent
/// (`application/cloudevents+json`) is kept and enriched, not wrapped again.
/// `Err` is a message for `ERR_PUBSUB_CLOUD_EVENTS_SER`.
pub fn envelope(data: &[u8], info: &EnvelopeInfo<'_>) -> Result<Vec<u8>, String> {
    let ct = info
        .content_type
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    let now = SystemTime::now();
    let trace = info
        .traceparent
        .map(str::to_owned)
        .unwrap_or_else(new_traceparent);
    let mut ev: Map<String, Value> = if is_cloudevent(ct) {
        match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err("the CloudEvent must be a JSON object".into()),
            Err(e) => return Err(format!("the CloudEvent is not valid JSON: {e}")),
        }
    } else {
        let mut m = Map::new();
        m.insert("datacontenttype".into(), json!(ct));
        if is_json(ct) {
            match serde_json::from_slice::<Value>(data) {
                Ok(v) => m.insert("data".into(), v),
                Err(_) => m.insert("data".into(), json!(String::from_utf8_lossy(data))),
            };
        } else if is_text(ct) && std::str::from_utf8(data).is_ok() {
            m.insert(
                "data".into(),
                json!(std::str::from_utf8(data).unwrap_or_default()),
            );
        } else {
            m.insert(
                "data_base64".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(data)),
            );
        }
        m
    };
    let mut default = |k: &str, v: Value| {
        ev.entry(k.to_string()).or_insert(v);
    };
    default("specversion", json!("1.0"));
    default("id", json!(uuid::Uuid::new_v4().to_string()));
    default("source", json!(info.source));
    default("type", json!(EVENT_TYPE));
    default("datacontenttype", json!("application/json"));
    default("time", json!(rfc3339(now)));
    ev.insert("topic".into(), json!(info.topic));
    ev.insert("pubsubname".into(), json!(info.pubsub));
    ev.insert("traceid".into(), json!(trace));
    ev.insert("traceparent".into(), json!(trace));
    ev.insert("tracestate".into(), json!(info.tracestate.unwrap_or("")));
    if let Some(ttl) = info.ttl {
        ev.insert("expiration".into(), json!(rfc3339(now + ttl)));
    }
    serde_json::to_vec(&Value::Object(ev)).map_err(|e| e.to_string())
}

/// The event a subscriber sees for `data` off the broker: the CloudEvent
/// itself, or (a raw payload) a new envelope carrying it as `data_base64`.
/// Whether a JSON object is a CloudEvent (as opposed to a JSON payload
/// published raw).
pub fn looks_like(v: &Value) -> bool {
    v.get("specversion").is_some() || v.get("id").is_some() && v.get("type").is_some()
}

/// The CloudEvent a `rawPayload` subscriber receives for raw bytes: the
/// payload as `data_base64`, a fresh id (daprd's `FromRawPayload`).
pub fn from_raw(data: &[u8], pubsub: &str, topic: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "Dapr",
        "type": EVENT_TYPE,
        "datacontenttype": "application/octet-stream",
        "topic": topic,
        "pubsubname": pubsub,
        "data_base64": base64::engine::general_purpose::STANDARD.encode(data),
    })
}

/// The event's payload as bytes, as gRPC subscribers receive it:
/// `data_base64` decoded, a string as its UTF-8, anything else as JSON.
pub fn data_bytes(ev: &Value) -> Result<Vec<u8>, String> {
    if let Some(b) = ev.get("data_base64").filter(|v| !v.is_null()) {
        let s = b.as_str().ok_or("data_base64 is not a string")?;
        return base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("data_base64: {e}"));
    }
    Ok(match ev.get("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
    })
}

/// Whether the event's `expiration` has passed.
pub fn expired(ev: &Value) -> bool {
    ev.get("expiration")
        .and_then(Value::as_str)
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .is_some_and(|t| t < SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ct: Option<&str>) -> EnvelopeInfo<'_> {
        EnvelopeInfo {
            source: "pub-app",
            pubsub: "ps",
            topic: "orders",
            content_type: ct,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ..Default::default()
        }
    }

    fn env(data: &[u8], ct: Option<&str>) -> Value {
        serde_json::from_slice(&envelope(data, &info(ct)).unwrap()).unwrap()
    }

    #[test]
    fn wraps_by_content_type() {
        let e = env(br#"{"a":1}"#, Some("application/json"));
        assert_eq!(e["data"], json!({"a": 1}));
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["type"], EVENT_TYPE);
        assert_eq!(e["source"], "pub-app");
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["topic"], "orders");
        assert_eq!(e["pubsubname"], "ps");
        assert_eq!(
            e["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(e["traceid"], e["traceparent"]);
        assert!(e["id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(e["time"].as_str().is_some_and(|s| s.ends_with('Z')));

        let e = env(b"hello", None);
        assert_eq!(
            (e["data"].as_str(), e["datacontenttype"].as_str()),
            (Some("hello"), Some("text/plain"))
        );

        let e = env(&[0, 1, 255], Some("application/octet-stream"));
        assert_eq!(e["data_base64"], "AAH/");
        assert!(e.get("data").is_none());
    }

    #[test]
    fn keeps_an_incoming_cloudevent() {
        let ce = br#"{"specversion":"1.0","id":"my-id","source":"elsewhere","type":"order.created","datacontenttype":"application/json","data":{"n":1}}"#;
        let e = env(ce, Some("application/cloudevents+json"));
        assert_eq!(e["id"], "my-id");
        assert_eq!(e["source"], "elsewhere");
        assert_eq!(e["type"], "order.created");
        assert_eq!(e["data"], json!({"n": 1}));
        assert_eq!(e["topic"], "orders");
        assert!(e.get("data_base64").is_none(), "not wrapped twice");
        assert!(envelope(b"[1]", &info(Some("application/cloudevents+json"))).is_err());
    }

    #[test]
    fn raw_and_expiry() {
        let r = from_raw(b"\x00raw", "ps", "t");
        assert_eq!(r["data_base64"], "AHJhdw==");
        assert_eq!(data_bytes(&r).unwrap(), b"\x00raw");
        assert_eq!(data_bytes(&json!({"data": "hi"})).unwrap(), b"hi");
        assert_eq!(
            data_bytes(&json!({"data": {"a": 1}})).unwrap(),
            br#"{"a":1}"#
        );
        assert!(data_bytes(&json!({"data_base64": "%%"})).is_err());
        let mut i = info(None);
        i.ttl = Some(Duration::from_secs(0));
        let e: Value = serde_json::from_slice(&envelope(b"x", &i).unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(expired(&e));
        assert!(!expired(&env(b"x", None)));
    }
}
