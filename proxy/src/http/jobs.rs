//! HTTP codec of the Jobs API: `POST /v1.0-alpha1/jobs/{name}` reads
//! daprd's job body (protojson of its `JobHTTPRequest`: `data` any JSON,
//! kept as a `google.protobuf.Value`), `GET` answers the job as daprd
//! writes it, `DELETE` answers 204.

use std::time::Duration;

use prost::Message;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use spar_filters::handlers::jobs::{Job, JobData, JobFailurePolicy, JobsRequest, JobsResponse};
use spar_filters::{ApiError, Request};

use super::protojson;

const VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.Value";

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConstantJson {
    #[serde(deserialize_with = "duration")]
    interval: Option<Duration>,
    #[serde(
        rename = "maxRetries",
        alias = "max_retries",
        deserialize_with = "opt_u32"
    )]
    max_retries: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyJson {
    drop: Option<Value>,
    constant: Option<ConstantJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JobJson {
    #[serde(deserialize_with = "protojson::string")]
    name: String,
    schedule: Option<String>,
    #[serde(deserialize_with = "opt_u32")]
    repeats: Option<u32>,
    #[serde(rename = "dueTime", alias = "due_time")]
    due_time: Option<String>,
    ttl: Option<String>,
    data: Option<Value>,
    #[serde(deserialize_with = "protojson::opt_bool")]
    overwrite: Option<bool>,
    #[serde(rename = "failurePolicy", alias = "failure_policy")]
    failure_policy: Option<PolicyJson>,
}

/// A `uint32`: a number or a number in a string; negative or fractional
/// values are refused (as protojson refuses them).
fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        F(f64),
        S(String),
    }
    let n = match Option::<N>::deserialize(d)? {
        None => return Ok(None),
        Some(N::I(i)) => i as f64,
        Some(N::F(f)) => f,
        Some(N::S(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| de::Error::custom(format!("invalid value for uint32: {s:?}")))?,
    };
    if n.fract() != 0.0 || n < 0.0 || n > u32::MAX as f64 {
        return Err(de::Error::custom(format!("invalid value for uint32: {n}")));
    }
    Ok(Some(n as u32))
}

/// A `google.protobuf.Duration` in protojson: `"1.5s"`.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let secs = s
        .trim()
        .strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| *n >= 0.0 && n.is_finite())
        .ok_or_else(|| {
            de::Error::custom(format!("invalid google.protobuf.Duration value {s:?}"))
        })?;
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| de::Error::custom(format!("invalid google.protobuf.Duration value {s:?}")))
}

fn to_value(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    prost_types::Value {
        kind: Some(match v {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.iter().map(to_value).collect(),
            }),
            Value::Object(o) => Kind::StructValue(prost_types::Struct {
                fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
            }),
        }),
    }
}

fn from_value(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        // protojson writes integral doubles without a fraction.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
            Value::from(*n as i64)
        }
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), from_value(v)))
                .collect(),
        ),
    }
}

pub fn schedule(name: String, body: &[u8], app_id: &str) -> Result<Request, ApiError> {
    let j: JobJson = protojson::parse(body)?;
    if !j.name.is_empty() {
        return Err(ApiError::JobNameInBody {
            app_id: app_id.to_string(),
        });
    }
    let failure_policy = match j.failure_policy {
        None => None,
        Some(PolicyJson {
            constant: Some(c), ..
        }) => Some(JobFailurePolicy::Constant {
            interval: c.interval,
            max_retries: c.max_retries,
        }),
        Some(PolicyJson { drop: Some(_), .. }) => Some(JobFailurePolicy::Drop),
        Some(_) => None,
    };
    let job = Job {
        name: name.trim().to_string(),
        schedule: j.schedule,
        repeats: j.repeats,
        due_time: j.due_time,
        ttl: j.ttl,
        data: j.data.map(|v| JobData {
            type_url: VALUE_TYPE.into(),
            value: to_value(&v).encode_to_vec(),
        }),
        failure_policy,
    };
    Ok(Request::Jobs(Box::new(JobsRequest::Schedule {
        job: Some(job),
        overwrite: j.overwrite.unwrap_or(false),
    })))
}

/// `data` as protojson writes an `Any`: `{"@type": …, "value": …}` for a
/// `Value`, `{"@type": …, "value": base64}` otherwise.
fn data_json(d: &JobData) -> Value {
    if d.type_url == VALUE_TYPE {
        if let Ok(v) = prost_types::Value::decode(d.value.as_slice()) {
            return json!({ "@type": VALUE_TYPE, "value": from_value(&v) });
        }
    }
    use base64::Engine;
    json!({
        "@type": d.type_url,
        "value": base64::engine::general_purpose::STANDARD.encode(&d.value),
    })
}

fn job_json(j: &Job) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(j.name));
    if let Some(s) = &j.schedule {
        m.insert("schedule".into(), json!(s));
    }
    if let Some(r) = j.repeats {
        m.insert("repeats".into(), json!(r));
    }
    if let Some(s) = &j.due_time {
        m.insert("dueTime".into(), json!(s));
    }
    if let Some(s) = &j.ttl {
        m.insert("ttl".into(), json!(s));
    }
    if let Some(d) = &j.data {
        m.insert("data".into(), data_json(d));
    }
    match &j.failure_policy {
        None => {}
        Some(JobFailurePolicy::Drop) => {
            m.insert("failurePolicy".into(), json!({ "drop": {} }));
        }
        Some(JobFailurePolicy::Constant {
            interval,
            max_retries,
        }) => {
            let mut c = Map::new();
            if let Some(i) = interval {
                c.insert("interval".into(), json!(format!("{}s", i.as_secs_f64())));
            }
            if let Some(n) = max_retries {
                c.insert("maxRetries".into(), json!(n));
            }
            m.insert("failurePolicy".into(), json!({ "constant": c }));
        }
    }
    Value::Object(m)
}

pub fn encode(r: &JobsResponse) -> Value {
    match r {
        JobsResponse::Job(j) => job_json(j),
        JobsResponse::Jobs(list) => {
            json!({ "jobs": list.iter().map(job_json).collect::<Vec<_>>() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(body: &str) -> Result<Job, ApiError> {
        match schedule("j".into(), body.as_bytes(), "app")? {
            Request::Jobs(r) => match *r {
                JobsRequest::Schedule { job, .. } => Ok(job.unwrap_or_default()),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        }
    }

    #[test]
    fn bodies() {
        let j = job(r#"{"schedule":"@every 1s","repeats":"3","data":{"a":1},"failurePolicy":{"constant":{"interval":"0.5s","maxRetries":2}}}"#).unwrap();
        assert_eq!(j.repeats, Some(3));
        assert_eq!(
            j.failure_policy,
            Some(JobFailurePolicy::Constant {
                interval: Some(Duration::from_millis(500)),
                max_retries: Some(2)
            })
        );
        let back = job_json(&j);
        assert_eq!(back["data"]["value"], json!({"a": 1}));
        assert!(job(r#"{"repeats":-1}"#).is_err());
        assert!(job(r#"{"name":"x"}"#).is_err());
        assert_eq!(
            job(r#"{"failurePolicy":{"drop":{}}}"#)
                .unwrap()
                .failure_policy,
            Some(JobFailurePolicy::Drop)
        );
    }
}
