//! Zipkin v2 JSON (`POST /api/v2/spans`).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use spar_filters::trace::{SpanData, SpanKind};

pub struct Zipkin {
    url: String,
    service: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ZSpan<'a> {
    trace_id: String,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    timestamp: u64,
    duration: u64,
    local_endpoint: Endpoint<'a>,
    tags: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint<'a> {
    service_name: &'a str,
}

impl Zipkin {
    pub fn new(url: &str, service: &str, timeout: Duration) -> Result<Self, String> {
        reqwest::Url::parse(url)
            .map_err(|e| format!("spec.tracing.zipkin.endpointAddress {url:?}: {e}"))?;
        let client = super::http_client(timeout)?;
        Ok(Zipkin {
            url: url.to_owned(),
            service: service.to_owned(),
            client,
        })
    }

    pub fn encode(&self, spans: &[SpanData]) -> Vec<u8> {
        let out: Vec<ZSpan> = spans.iter().map(|s| self.span(s)).collect();
        serde_json::to_vec(&out).unwrap_or_default()
    }

    fn span<'a>(&'a self, s: &'a SpanData) -> ZSpan<'a> {
        let micros = |t: std::time::SystemTime| {
            t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
        };
        let mut tags: BTreeMap<&str, &str> =
            s.attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(e) = &s.error {
            tags.insert("otel.status_code", "ERROR");
            tags.insert("error", e);
        }
        ZSpan {
            trace_id: s.ctx.trace_id_hex(),
            id: s.ctx.span_id_hex(),
            parent_id: s.parent.map(|p| spar_filters::trace::context::hex(&p)),
            name: &s.name,
            kind: match s.kind {
                SpanKind::Internal => None,
                SpanKind::Server => Some("SERVER"),
                SpanKind::Client => Some("CLIENT"),
                SpanKind::Producer => Some("PRODUCER"),
                SpanKind::Consumer => Some("CONSUMER"),
            },
            timestamp: micros(s.start),
            // Zipkin reads 0 as "unknown"; a span took at least 1 µs.
            duration: (micros(s.end).saturating_sub(micros(s.start))).max(1),
            local_endpoint: Endpoint {
                service_name: &self.service,
            },
            tags,
        }
    }

    pub async fn export(&self, spans: &[SpanData]) -> Result<(), String> {
        let r = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(self.encode(spans))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("collector answered {}", r.status()))
        }
    }
}
