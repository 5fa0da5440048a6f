//! OTLP trace export over HTTP (protobuf `POST /v1/traces`) or gRPC
//! (`TraceService/Export`), as `spec.tracing.otel` selects.

use std::time::{Duration, UNIX_EPOCH};

use prost::Message;
use spar_config::OtelSpec;
use spar_filters::trace::{SpanData, SpanKind};
use spar_proto::otlp::collector::trace_service_client::TraceServiceClient;
use spar_proto::otlp::collector::ExportTraceServiceRequest;
use spar_proto::otlp::common::{any_value, AnyValue, InstrumentationScope, KeyValue};
use spar_proto::otlp::resource::Resource;
use spar_proto::otlp::trace::{span, status, ResourceSpans, ScopeSpans, Span, Status};

enum Transport {
    Http {
        url: String,
        client: reqwest::Client,
        headers: Vec<(String, String)>,
    },
    Grpc {
        client: TraceServiceClient<tonic::transport::Channel>,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
}

pub struct Otlp {
    transport: Transport,
    service: String,
}

impl Otlp {
    pub fn new(spec: &OtelSpec, service: &str, default_timeout: Duration) -> Result<Self, String> {
        let secure = spec.is_secure.unwrap_or(false);
        let timeout = spec
            .timeout
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| {
                humantime::parse_duration(t).map_err(|e| format!("spec.tracing.otel.timeout: {e}"))
            })
            .transpose()?
            .unwrap_or(default_timeout);
        let headers: Vec<(String, String)> = spec
            .headers
            .iter()
            .filter_map(|h| h.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        // daprd takes `host:port`; a full URL is accepted too.
        let addr = spec.endpoint_address.trim();
        let (scheme, rest) = match addr.split_once("://") {
            Some((s, r)) => (s.to_owned(), r.to_owned()),
            None => (
                (if secure { "https" } else { "http" }).to_owned(),
                addr.to_owned(),
            ),
        };
        let transport = match spec.protocol.as_str() {
            "http" => {
                let path = if rest.contains('/') { "" } else { "/v1/traces" };
                let url = format!("{scheme}://{rest}{path}");
                reqwest::Url::parse(&url)
                    .map_err(|e| format!("spec.tracing.otel.endpointAddress {addr:?}: {e}"))?;
                let client = super::http_client(timeout)?;
                Transport::Http {
                    url,
                    client,
                    headers,
                }
            }
            "grpc" => {
                let host = rest.trim_end_matches('/');
                let ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://{host}"))
                    .map_err(|e| format!("spec.tracing.otel.endpointAddress {addr:?}: {e}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(timeout);
                let channel = if scheme == "https" {
                    ep.connect_with_connector_lazy(crate::security::tls::TlsConnector::new(
                        spar_components::redis_wire::system_roots_config()?,
                    ))
                } else {
                    ep.connect_lazy()
                };
                Transport::Grpc {
                    client: TraceServiceClient::new(channel),
                    headers,
                    timeout,
                }
            }
            p => {
                return Err(format!(
                    "spec.tracing.otel.protocol {p:?}: expected http or grpc"
                ))
            }
        };
        Ok(Otlp {
            transport,
            service: service.to_owned(),
        })
    }

    pub fn request(&self, spans: &[SpanData]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &self.service)],
                    dropped_attributes_count: 0,
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "spar".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: spans.iter().map(span_of).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    pub async fn export(&self, spans: &[SpanData]) -> Result<(), String> {
        let req = self.request(spans);
        match &self.transport {
            Transport::Http {
                url,
                client,
                headers,
            } => {
                let mut r = client
                    .post(url)
                    .header("content-type", "application/x-protobuf")
                    .body(req.encode_to_vec());
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                let r = r.send().await.map_err(|e| e.to_string())?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("collector answered {}", r.status()))
                }
            }
            Transport::Grpc {
                client,
                headers,
                timeout,
            } => {
                let mut r = tonic::Request::new(req);
                r.set_timeout(*timeout);
                for (k, v) in headers {
                    if let (Ok(k), Ok(v)) = (
                        k.parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
                        v.parse(),
                    ) {
                        r.metadata_mut().insert(k, v);
                    }
                }
                client
                    .clone()
                    .export(r)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            }
        }
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
    }
}

fn span_of(s: &SpanData) -> Span {
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
    };
    Span {
        trace_id: s.ctx.trace_id.to_vec(),
        span_id: s.ctx.span_id.to_vec(),
        trace_state: s.ctx.tracestate.as_deref().unwrap_or_default().to_owned(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: u32::from(s.ctx.sampled),
        name: s.name.clone(),
        kind: match s.kind {
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Server => span::SpanKind::Server,
            SpanKind::Client => span::SpanKind::Client,
            SpanKind::Producer => span::SpanKind::Producer,
            SpanKind::Consumer => span::SpanKind::Consumer,
        } as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        status: s.error.as_ref().map(|m| Status {
            message: m.clone(),
            code: status::StatusCode::Error as i32,
        }),
        ..Default::default()
    }
}
