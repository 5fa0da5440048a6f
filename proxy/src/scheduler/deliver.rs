//! A due job to the app, as daprd sends it. HTTP: `POST /job/{name}`,
//! `content-type: application/json`, the body the job's data (a
//! `google.protobuf.Value` as its JSON, anything else as its bytes,
//! trimmed). gRPC: `AppCallback/OnJobEvent`, falling back to
//! `AppCallbackAlpha/OnJobEventAlpha1` when the app lacks it. A 2xx / OK
//! answer is success; anything else (an error, no answer in time) is a
//! failure, and the scheduler applies the job's failure policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use spar_filters::Runtime;
use spar_proto::common::{http_extension::Verb, HttpExtension};
use spar_proto::runtime as rpb;
use spar_proto::scheduler as pb;
use tonic::transport::{Channel, Endpoint};

const APP_TIMEOUT: Duration = Duration::from_secs(60);
const VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.Value";

pub enum AppSink {
    Http {
        rt: Arc<Runtime>,
        client: reqwest::Client,
        base: String,
    },
    Grpc {
        rt: Arc<Runtime>,
        channel: Channel,
        /// The app answered UNIMPLEMENTED to `OnJobEvent` once.
        alpha: AtomicBool,
    },
}

/// The HTTP body daprd sends for a job's data.
pub fn http_body(data: Option<&prost_types::Any>) -> Vec<u8> {
    let Some(d) = data else {
        return Vec::new();
    };
    if d.type_url == VALUE_TYPE {
        return match prost_types::Value::decode(d.value.as_slice()) {
            Ok(v) if v.kind.is_some() => serde_json::to_vec(&value_json(&v)).unwrap_or_default(),
            _ => Vec::new(),
        };
    }
    d.value.trim_ascii().to_vec()
}

fn value_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        // protojson writes integral doubles without a fraction.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
            serde_json::Value::from(*n as i64)
        }
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_json).collect())
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value_json(v)))
                .collect(),
        ),
    }
}

impl AppSink {
    pub fn new(rt: &Arc<Runtime>, addr: std::net::SocketAddr) -> Option<AppSink> {
        let grpc = rt.app.as_ref().is_some_and(|a| a.protocol == "grpc");
        if grpc {
            let channel = Endpoint::from_shared(format!("http://{addr}"))
                .ok()?
                .connect_timeout(Duration::from_secs(5))
                .connect_lazy();
            return Some(AppSink::Grpc {
                rt: rt.clone(),
                channel,
                alpha: AtomicBool::new(false),
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(APP_TIMEOUT)
            .build()
            .ok()?;
        Some(AppSink::Http {
            rt: rt.clone(),
            client,
            base: format!("http://{addr}"),
        })
    }

    /// Whether the app took the job.
    pub async fn deliver(&self, job: &pb::WatchJobsResponse) -> bool {
        match self {
            AppSink::Http { rt, client, base } => {
                let url = format!("{base}/job/{}", job.name.trim_start_matches('/'));
                let mut req = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(http_body(job.data.as_ref()));
                if let Some(t) = rt.app_token.as_deref() {
                    req = req.header("dapr-api-token", t);
                }
                match req.send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        if !ok {
                            tracing::warn!("job {}: the app answered {}", job.name, r.status());
                        }
                        ok
                    }
                    Err(e) => {
                        tracing::warn!("job {}: {e}", job.name);
                        false
                    }
                }
            }
            AppSink::Grpc { rt, channel, alpha } => {
                let msg = rpb::JobEventRequest {
                    name: job.name.clone(),
                    data: job.data.clone(),
                    method: format!("job/{}", job.name),
                    content_type: job
                        .data
                        .as_ref()
                        .map(|d| d.type_url.clone())
                        .unwrap_or_default(),
                    http_extension: Some(HttpExtension {
                        verb: Verb::Post as i32,
                        querystring: String::new(),
                    }),
                };
                let request = |m: rpb::JobEventRequest| {
                    let mut r = tonic::Request::new(m);
                    r.set_timeout(APP_TIMEOUT);
                    if let Some(t) = rt.app_token.as_deref().and_then(|t| t.parse().ok()) {
                        r.metadata_mut().insert("dapr-api-token", t);
                    }
                    r
                };
                if !alpha.load(Ordering::Relaxed) {
                    let mut c = rpb::app_callback_client::AppCallbackClient::new(channel.clone());
                    match c.on_job_event(request(msg.clone())).await {
                        Ok(_) => return true,
                        Err(s) if s.code() == tonic::Code::Unimplemented => {
                            alpha.store(true, Ordering::Relaxed)
                        }
                        Err(s) => {
                            tracing::warn!("job {}: {}", job.name, s.message());
                            return false;
                        }
                    }
                }
                let mut c =
                    rpb::app_callback_alpha_client::AppCallbackAlphaClient::new(channel.clone());
                match c.on_job_event_alpha1(request(msg)).await {
                    Ok(_) => true,
                    Err(s) => {
                        tracing::warn!("job {}: {}", job.name, s.message());
                        false
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_as_daprd() {
        let v = prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("hi".into())),
        };
        let any = prost_types::Any {
            type_url: VALUE_TYPE.into(),
            value: v.encode_to_vec(),
        };
        assert_eq!(http_body(Some(&any)), b"\"hi\"");
        let raw = prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
            value: b" {\"a\":1} ".to_vec(),
        };
        assert_eq!(http_body(Some(&raw)), b"{\"a\":1}");
        assert!(http_body(None).is_empty());
    }
}
