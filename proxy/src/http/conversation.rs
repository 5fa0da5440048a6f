//! HTTP codec of the conversation block: `POST
//! /v1.0-alpha1/conversation/{name}/converse` and its `v1.0-alpha2` twin.
//! Bodies are daprd's protojson forms of `ConversationRequest` /
//! `ConversationRequestAlpha2` (JSON or proto field names); answers are
//! the responses in protojson as daprd writes them: unset and empty fields
//! left out, 64-bit numbers as strings.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use spar_components::conversation as cv;
use spar_filters::handlers::conversation::{
    Alpha1Input, Alpha1Request, Alpha2Input, Alpha2Output, Alpha2Request, ConversationRequest,
    ConversationResponse, InMessage, InToolCall, Param, ToolDef,
};
use spar_filters::{ApiError, Request};

use super::protojson;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alpha1Json {
    #[serde(rename = "contextID")]
    context_id: Option<String>,
    inputs: Option<Vec<Alpha1InputJson>>,
    parameters: Option<HashMap<String, Value>>,
    metadata: Option<HashMap<String, String>>,
    #[serde(rename = "scrubPII", deserialize_with = "protojson::opt_bool")]
    scrub_pii: Option<bool>,
    #[serde(deserialize_with = "protojson::opt_f64")]
    temperature: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alpha1InputJson {
    content: Option<String>,
    role: Option<String>,
    #[serde(rename = "scrubPII", deserialize_with = "protojson::opt_bool")]
    scrub_pii: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alpha2Json {
    #[serde(rename = "contextId", alias = "context_id")]
    context_id: Option<String>,
    inputs: Option<Vec<Alpha2InputJson>>,
    metadata: Option<HashMap<String, String>>,
    #[serde(
        rename = "scrubPii",
        alias = "scrub_pii",
        deserialize_with = "protojson::opt_bool"
    )]
    scrub_pii: Option<bool>,
    #[serde(deserialize_with = "protojson::opt_f64")]
    temperature: Option<f64>,
    tools: Option<Vec<ToolJson>>,
    #[serde(rename = "toolChoice", alias = "tool_choice")]
    tool_choice: Option<String>,
    #[serde(rename = "responseFormat", alias = "response_format")]
    response_format: Option<Map<String, Value>>,
    #[serde(rename = "promptCacheRetention", alias = "prompt_cache_retention")]
    prompt_cache_retention: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alpha2InputJson {
    messages: Option<Vec<MessageJson>>,
    #[serde(
        rename = "scrubPii",
        alias = "scrub_pii",
        deserialize_with = "protojson::opt_bool"
    )]
    scrub_pii: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MessageJson {
    #[serde(rename = "ofDeveloper", alias = "of_developer")]
    of_developer: Option<PartsJson>,
    #[serde(rename = "ofSystem", alias = "of_system")]
    of_system: Option<PartsJson>,
    #[serde(rename = "ofUser", alias = "of_user")]
    of_user: Option<PartsJson>,
    #[serde(rename = "ofAssistant", alias = "of_assistant")]
    of_assistant: Option<PartsJson>,
    #[serde(rename = "ofTool", alias = "of_tool")]
    of_tool: Option<PartsJson>,
}

/// The fields of every message type (each reads the ones it has).
#[derive(Deserialize, Default)]
#[serde(default)]
struct PartsJson {
    #[allow(dead_code)]
    name: Option<String>,
    content: Option<Vec<ContentJson>>,
    #[serde(rename = "toolCalls", alias = "tool_calls")]
    tool_calls: Option<Vec<ToolCallJson>>,
    #[serde(rename = "toolId", alias = "tool_id")]
    tool_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContentJson {
    text: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolCallJson {
    id: Option<String>,
    function: Option<FunctionCallJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FunctionCallJson {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolJson {
    function: Option<ToolFunctionJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolFunctionJson {
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Map<String, Value>>,
}

fn texts(p: &mut PartsJson) -> Vec<String> {
    p.content
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.text.unwrap_or_default())
        .collect()
}

fn malformed(m: &str) -> ApiError {
    ApiError::MalformedRequest(m.to_string())
}

fn message(m: MessageJson) -> Result<InMessage, ApiError> {
    let set = [
        m.of_developer.is_some(),
        m.of_system.is_some(),
        m.of_user.is_some(),
        m.of_assistant.is_some(),
        m.of_tool.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(malformed(
            "a message sets more than one of its message types",
        ));
    }
    Ok(if let Some(mut p) = m.of_developer {
        InMessage::Developer {
            content: texts(&mut p),
        }
    } else if let Some(mut p) = m.of_system {
        InMessage::System {
            content: texts(&mut p),
        }
    } else if let Some(mut p) = m.of_user {
        InMessage::User {
            content: texts(&mut p),
        }
    } else if let Some(mut p) = m.of_assistant {
        InMessage::Assistant {
            content: texts(&mut p),
            tool_calls: p
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|t| InToolCall {
                    id: t.id,
                    function: t
                        .function
                        .map(|f| (f.name.unwrap_or_default(), f.arguments.unwrap_or_default())),
                })
                .collect(),
        }
    } else if let Some(mut p) = m.of_tool {
        InMessage::Tool {
            content: texts(&mut p),
            tool_id: p.tool_id,
            name: p.name.unwrap_or_default(),
        }
    } else {
        InMessage::Empty
    })
}

/// A protojson `Duration`: seconds with an `s` suffix (`"3600s"`, `"1.5s"`).
fn duration(s: &str) -> Result<std::time::Duration, ApiError> {
    s.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .and_then(|n| std::time::Duration::try_from_secs_f64(n).ok())
        .ok_or_else(|| malformed(&format!("invalid google.protobuf.Duration value {s:?}")))
}

pub fn alpha1(name: String, body: &[u8]) -> Result<Request, ApiError> {
    let j: Alpha1Json = protojson::parse(body)?;
    // Each parameter is a `google.protobuf.Any`: an object naming its type.
    let mut parameters: Vec<(String, Param)> = Vec::new();
    for (k, v) in j.parameters.unwrap_or_default() {
        if !v.get("@type").is_some_and(Value::is_string) {
            return Err(malformed(&format!(
                "parameters.{k}: a google.protobuf.Any needs an \"@type\""
            )));
        }
        parameters.push((k, Param::Json(v)));
    }
    parameters.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Request::Conversation(Box::new(
        ConversationRequest::Alpha1(Alpha1Request {
            name,
            context_id: j.context_id,
            inputs: j
                .inputs
                .unwrap_or_default()
                .into_iter()
                .map(|i| Alpha1Input {
                    content: i.content.unwrap_or_default(),
                    role: i.role,
                    scrub_pii: i.scrub_pii.unwrap_or(false),
                })
                .collect(),
            parameters,
            metadata: j.metadata.unwrap_or_default(),
            scrub_pii: j.scrub_pii.unwrap_or(false),
            temperature: j.temperature,
        }),
    )))
}

pub fn alpha2(name: String, body: &[u8]) -> Result<Request, ApiError> {
    let j: Alpha2Json = protojson::parse(body)?;
    let mut inputs = Vec::new();
    for i in j.inputs.unwrap_or_default() {
        inputs.push(Alpha2Input {
            messages: i
                .messages
                .unwrap_or_default()
                .into_iter()
                .map(message)
                .collect::<Result<_, _>>()?,
            scrub_pii: i.scrub_pii.unwrap_or(false),
        });
    }
    let tools = j.tools.filter(|t| !t.is_empty()).map(|ts| {
        ts.into_iter()
            .map(|t| ToolDef {
                function: t.function.map(|f| cv::Tool {
                    name: f.name.unwrap_or_default(),
                    description: f.description.unwrap_or_default(),
                    parameters: f.parameters.map(Value::Object).unwrap_or(Value::Null),
                }),
            })
            .collect()
    });
    Ok(Request::Conversation(Box::new(
        ConversationRequest::Alpha2(Alpha2Request {
            name,
            context_id: j.context_id,
            inputs,
            metadata: j.metadata.unwrap_or_default(),
            scrub_pii: j.scrub_pii.unwrap_or(false),
            temperature: j.temperature,
            tools,
            tool_choice: j.tool_choice,
            response_format: j.response_format.map(Value::Object),
            prompt_cache_retention: j
                .prompt_cache_retention
                .as_deref()
                .map(duration)
                .transpose()?,
        }),
    )))
}

/// Sets `k` unless `v` is protojson's zero value (left out, as daprd does).
fn put(o: &mut Map<String, Value>, k: &str, v: Value) {
    let zero = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if !zero {
        o.insert(k.into(), v);
    }
}

/// A 64-bit number as protojson writes it: a string, left out when 0.
fn put64(o: &mut Map<String, Value>, k: &str, n: impl Into<i128>) {
    let n: i128 = n.into();
    if n != 0 {
        o.insert(k.into(), Value::String(n.to_string()));
    }
}

fn tool_call(t: &cv::ToolCall) -> Value {
    let mut o = Map::new();
    put(&mut o, "id", json!(t.id));
    let mut f = Map::new();
    put(&mut f, "name", json!(t.name));
    put(&mut f, "arguments", json!(t.arguments));
    o.insert("function".into(), Value::Object(f));
    Value::Object(o)
}

fn usage(u: &cv::Usage) -> Value {
    let mut o = Map::new();
    put64(&mut o, "completionTokens", u.completion_tokens);
    put64(&mut o, "promptTokens", u.prompt_tokens);
    put64(&mut o, "totalTokens", u.total_tokens);
    if let Some(d) = &u.completion_details {
        let mut c = Map::new();
        put64(
            &mut c,
            "acceptedPredictionTokens",
            d.accepted_prediction_tokens,
        );
        put64(&mut c, "audioTokens", d.audio_tokens);
        put64(&mut c, "reasoningTokens", d.reasoning_tokens);
        put64(
            &mut c,
            "rejectedPredictionTokens",
            d.rejected_prediction_tokens,
        );
        o.insert("completionTokensDetails".into(), Value::Object(c));
    }
    if let Some(d) = &u.prompt_details {
        let mut p = Map::new();
        put64(&mut p, "audioTokens", d.audio_tokens);
        put64(&mut p, "cachedTokens", d.cached_tokens);
        o.insert("promptTokensDetails".into(), Value::Object(p));
    }
    Value::Object(o)
}

fn output2(out: &Alpha2Output) -> Value {
    let mut o = Map::new();
    let choices: Vec<Value> = out
        .choices
        .iter()
        .map(|c| {
            let mut ch = Map::new();
            put(&mut ch, "finishReason", json!(c.finish_reason));
            put64(&mut ch, "index", c.index);
            let mut m = Map::new();
            put(&mut m, "content", json!(c.content));
            put(
                &mut m,
                "toolCalls",
                Value::Array(c.tool_calls.iter().map(tool_call).collect()),
            );
            ch.insert("message".into(), Value::Object(m));
            Value::Object(ch)
        })
        .collect();
    put(&mut o, "choices", Value::Array(choices));
    if let Some(m) = &out.model {
        o.insert("model".into(), json!(m));
    }
    if let Some(u) = &out.usage {
        o.insert("usage".into(), usage(u));
    }
    Value::Object(o)
}

pub fn encode(r: &ConversationResponse) -> Value {
    let mut o = Map::new();
    match r {
        ConversationResponse::Alpha1 {
            context_id,
            outputs,
        } => {
            if let Some(c) = context_id {
                o.insert("contextID".into(), json!(c));
            }
            let outs: Vec<Value> = outputs
                .iter()
                .map(|(result, params)| {
                    let mut out = Map::new();
                    put(&mut out, "result", json!(result));
                    let ps: Map<String, Value> = params
                        .iter()
                        .filter_map(|(k, p)| match p {
                            Param::Json(v) => Some((k.clone(), v.clone())),
                            Param::Proto { .. } => None,
                        })
                        .collect();
                    if !ps.is_empty() {
                        out.insert("parameters".into(), Value::Object(ps));
                    }
                    Value::Object(out)
                })
                .collect();
            put(&mut o, "outputs", Value::Array(outs));
        }
        ConversationResponse::Alpha2 {
            context_id,
            outputs,
        } => {
            if let Some(c) = context_id {
                o.insert("contextId".into(), json!(c));
            }
            put(
                &mut o,
                "outputs",
                Value::Array(outputs.iter().map(output2).collect()),
            );
        }
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha2_reads_both_field_spellings_and_refuses_two_types() {
        let body = br#"{"context_id":"c","inputs":[{"messages":[
            {"ofUser":{"content":[{"text":"hi"}]}},
            {"of_assistant":{"tool_calls":[{"id":"1","function":{"name":"f","arguments":"{}"}}]}},
            {"ofTool":{"toolId":"1","name":"f","content":[{"text":"42"}]}},
            {}
          ],"scrubPii":true}],"tools":[{"function":{"name":"f","parameters":{"type":"object"}}}],
          "toolChoice":"auto","promptCacheRetention":"3600s","temperature":"0.5"}"#;
        let Request::Conversation(b) = alpha2("llm".into(), body).unwrap() else {
            panic!()
        };
        let ConversationRequest::Alpha2(r) = *b else {
            panic!()
        };
        assert_eq!(r.context_id.as_deref(), Some("c"));
        assert!(r.inputs[0].scrub_pii);
        assert_eq!(r.inputs[0].messages.len(), 4);
        assert!(matches!(r.inputs[0].messages[3], InMessage::Empty));
        assert_eq!(
            r.prompt_cache_retention,
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(r.temperature, Some(0.5));
        let two = br#"{"inputs":[{"messages":[{"ofUser":{},"ofSystem":{}}]}]}"#;
        assert!(alpha2("llm".into(), two).is_err());
        assert!(alpha2("llm".into(), br#"{"inputs":"x"}"#).is_err());
        assert!(alpha2("llm".into(), br#"{"promptCacheRetention":"1h"}"#).is_err());
        assert!(alpha2("llm".into(), br#"{"promptCacheRetention":"1e300s"}"#).is_err());
        assert!(alpha2("llm".into(), br#"{"promptCacheRetention":"-1s"}"#).is_err());
    }

    #[test]
    fn encodes_as_protojson() {
        let r = ConversationResponse::Alpha2 {
            context_id: None,
            outputs: vec![Alpha2Output {
                choices: vec![cv::Choice {
                    finish_reason: "stop".into(),
                    index: 0,
                    content: "hi".into(),
                    tool_calls: vec![],
                }],
                model: None,
                usage: Some(cv::Usage {
                    completion_tokens: 1,
                    prompt_tokens: 1,
                    total_tokens: 2,
                    ..Default::default()
                }),
            }],
        };
        assert_eq!(
            encode(&r),
            json!({"outputs": [{"choices": [{"finishReason": "stop", "message": {"content": "hi"}}],
                "usage": {"completionTokens": "1", "promptTokens": "1", "totalTokens": "2"}}]})
        );
    }
}
