//! `conversation.openai`: OpenAI's chat-completions HTTP API
//! (`POST {endpoint}/chat/completions`), which Ollama, vLLM, LM Studio and
//! other servers also speak; Azure OpenAI with `apiType: azure`. Metadata
//! as daprd's component reads it: `key`, `model` (the `OPENAI_MODEL`
//! environment variable wins, as in daprd), `endpoint` (the API's base URL,
//! default OpenAI's), `cacheTTL` (answers to an identical request are
//! reused for that long), `apiType`, `apiVersion`; and spar's `timeout`
//! for one call (default 5 minutes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::{
    Choice, CompletionDetails, Conversation, ConversationError, ConverseRequest, ConverseResponse,
    Output, Part, PromptDetails, Role, ToolCall, Usage,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::per_thread::PerThread;

const DEFAULT_ENDPOINT: &str = "https://api.openai.com/v1";
const DEFAULT_MODEL: &str = "gpt-5-nano";
const DEFAULT_AZURE_MODEL: &str = "gpt-4.1-nano";
/// Cached answers kept at most; the oldest go first.
const CACHE_MAX: usize = 1024;
/// The largest answer read from the service.
const MAX_ANSWER: usize = 32 << 20;

pub struct OpenAi {
    url: String,
    /// (header, value) carrying the key.
    auth: Option<(&'static str, String)>,
    model: String,
    timeout: Duration,
    cache: Option<Cache>,
    /// A client per calling thread: its pooled connections live on the
    /// runtime of the thread that uses them.
    clients: PerThread<reqwest::Client>,
}

struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, (Instant, ConverseResponse)>>,
}

fn client(timeout: Duration) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .build()
        .ok()
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Conversation>, BuildError> {
    let m = Meta::new(c);
    let azure = m.one_of("apiType", &["open_ai", "azure"], "open_ai")? == "azure";
    let (env, default) = if azure {
        ("AZURE_OPENAI_MODEL", DEFAULT_AZURE_MODEL)
    } else {
        ("OPENAI_MODEL", DEFAULT_MODEL)
    };
    let model = std::env::var(env)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| m.str("model"))
        .unwrap_or_else(|| default.to_string());
    let key = m.str("key");
    let endpoint = m.str("endpoint");
    let (url, auth) = if azure {
        let (Some(endpoint), Some(version)) = (endpoint, m.str("apiVersion")) else {
            return Err(m.error(
                "endpoint",
                "endpoint and apiVersion must be provided when apiType is set to 'azure'",
            ));
        };
        (
            format!(
                "{}/openai/deployments/{model}/chat/completions?api-version={version}",
                endpoint.trim_end_matches('/')
            ),
            key.map(|k| ("api-key", k)),
        )
    } else {
        let base = endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        (
            format!("{}/chat/completions", base.trim_end_matches('/')),
            key.map(|k| ("authorization", format!("Bearer {k}"))),
        )
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(m.error("endpoint", format!("{url:?} is not an http(s) URL")));
    }
    let ttl = match m.duration_opt("cacheTTL")? {
        Some(d) => Some(d),
        None => m.duration_opt("responseCacheTTL")?,
    };
    let timeout = m.duration("timeout", Duration::from_secs(300))?;
    let fallback =
        client(timeout).ok_or_else(|| m.error("endpoint", "cannot make an HTTP client"))?;
    Ok(Arc::new(OpenAi {
        url,
        auth,
        model,
        timeout,
        cache: ttl.filter(|t| !t.is_zero()).map(|ttl| Cache {
            ttl,
            entries: Mutex::default(),
        }),
        clients: PerThread::new(fallback, move || client(timeout)),
    }))
}

fn failed(e: impl std::fmt::Display) -> ConversationError {
    ConversationError::Backend(e.to_string())
}

/// A message's content: a string for one text part, else text parts.
fn content(texts: &[&str]) -> Value {
    match texts {
        [] => Value::Null,
        [one] => json!(one),
        many => Value::Array(
            many.iter()
                .map(|t| json!({"type": "text", "text": t}))
                .collect(),
        ),
    }
}

/// The request's messages in the API's shapes: tool results become one
/// `tool` message each; an assistant's calls go in its `tool_calls`.
fn messages(req: &ConverseRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let texts: Vec<&str> = m
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let calls: Vec<Value> = m
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall(c) => Some(json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })),
                _ => None,
            })
            .collect();
        for p in &m.parts {
            if let Part::ToolResult {
                call_id,
                name,
                content,
            } = p
            {
                out.push(json!({"role": "tool", "tool_call_id": call_id, "name": name, "content": content}));
            }
        }
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        };
        if texts.is_empty() && calls.is_empty() {
            continue;
        }
        let mut o = Map::new();
        o.insert("role".into(), json!(role));
        o.insert("content".into(), content(&texts));
        if !calls.is_empty() {
            o.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(o));
    }
    out
}

impl OpenAi {
    fn body(&self, req: &ConverseRequest) -> Value {
        let mut b = Map::new();
        b.insert("model".into(), json!(self.model));
        b.insert("messages".into(), Value::Array(messages(req)));
        if req.temperature > 0.0 {
            b.insert("temperature".into(), json!(req.temperature));
        }
        let tools = req.tools.as_deref().unwrap_or_default();
        if !tools.is_empty() {
            b.insert(
                "tools".into(),
                tools
                    .iter()
                    .map(|t| {
                        let mut f = Map::new();
                        f.insert("name".into(), json!(t.name));
                        if !t.description.is_empty() {
                            f.insert("description".into(), json!(t.description));
                        }
                        if !t.parameters.is_null() {
                            f.insert("parameters".into(), t.parameters.clone());
                        }
                        json!({"type": "function", "function": f})
                    })
                    .collect(),
            );
        }
        match req.tool_choice.as_deref() {
            None | Some("") => {}
            Some(c @ ("auto" | "none" | "required")) => {
                b.insert("tool_choice".into(), json!(c));
            }
            Some("any") => {
                b.insert("tool_choice".into(), json!("required"));
            }
            Some(name) => {
                b.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": name}}),
                );
            }
        }
        if let Some(schema) = &req.response_format {
            b.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": schema}),
            );
        }
        let mut metadata = req.metadata.clone();
        if let Some(d) = req.prompt_cache_retention {
            b.insert(
                "prompt_cache_retention".into(),
                json!(humantime::format_duration(d).to_string().replace(' ', "")),
            );
            metadata.remove("prompt_cache_retention");
        }
        if !metadata.is_empty() {
            b.insert("metadata".into(), json!(metadata));
        }
        Value::Object(b)
    }

    async fn call(&self, body: Vec<u8>) -> Result<ConverseResponse, ConversationError> {
        let mut rb = self
            .clients
            .get()
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some((h, v)) = &self.auth {
            rb = rb.header(*h, v);
        }
        let send = async {
            let mut r = rb.send().await.map_err(failed)?;
            let status = r.status();
            let mut bytes = Vec::new();
            while let Some(chunk) = r.chunk().await.map_err(failed)? {
                if bytes.len() + chunk.len() > MAX_ANSWER {
                    return Err(failed(format!(
                        "the answer is larger than {MAX_ANSWER} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, ConversationError>((status, bytes))
        };
        // reqwest's own timeout covers the exchange; this bounds the whole
        // call, body included, whatever the client does.
        let (status, bytes) = tokio::time::timeout(self.timeout + Duration::from_secs(1), send)
            .await
            .map_err(|_| failed(format!("no answer within {:?}", self.timeout)))??;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let msg = v["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned()
                });
            return Err(failed(format!(
                "API returned unexpected status code: {}: {msg}",
                status.as_u16()
            )));
        }
        self.read(&bytes)
    }

    /// The API's answer: one output per choice, as daprd's components
    /// return them; the model reported is the one configured.
    fn read(&self, bytes: &[u8]) -> Result<ConverseResponse, ConversationError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| failed(format!("the answer is not JSON: {e}")))?;
        let Some(choices) = v["choices"].as_array() else {
            return Err(failed("the answer has no choices"));
        };
        let mut outputs = Vec::with_capacity(choices.len());
        for (i, c) in choices.iter().enumerate() {
            let msg = &c["message"];
            let mut tool_calls = Vec::new();
            for t in msg["tool_calls"].as_array().into_iter().flatten() {
                let f = &t["function"];
                tool_calls.push(ToolCall {
                    id: t["id"].as_str().unwrap_or_default().to_string(),
                    name: f["name"].as_str().unwrap_or_default().to_string(),
                    arguments: match &f["arguments"] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    },
                });
            }
            let finish = c["finish_reason"].as_str().unwrap_or_default();
            outputs.push(Output {
                choices: vec![Choice {
                    finish_reason: if finish.is_empty() { "unknown" } else { finish }.to_string(),
                    index: i as i64,
                    content: msg["content"].as_str().unwrap_or_default().to_string(),
                    tool_calls,
                }],
            });
        }
        Ok(ConverseResponse {
            model: Some(self.model.clone()),
            outputs,
            usage: usage(&v["usage"]),
        })
    }
}

fn usage(u: &Value) -> Option<Usage> {
    let n = |v: &Value| {
        v.as_u64()
            .or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
            .unwrap_or(0)
    };
    let c = &u["completion_tokens_details"];
    let completion = CompletionDetails {
        accepted_prediction_tokens: n(&c["accepted_prediction_tokens"]),
        audio_tokens: n(&c["audio_tokens"]),
        reasoning_tokens: n(&c["reasoning_tokens"]),
        rejected_prediction_tokens: n(&c["rejected_prediction_tokens"]),
    };
    let p = &u["prompt_tokens_details"];
    let prompt = PromptDetails {
        audio_tokens: n(&p["audio_tokens"]),
        cached_tokens: n(&p["cached_tokens"]),
    };
    let out = Usage {
        completion_tokens: n(&u["completion_tokens"]),
        prompt_tokens: n(&u["prompt_tokens"]),
        total_tokens: n(&u["total_tokens"]),
        completion_details: (completion != CompletionDetails::default()).then_some(completion),
        prompt_details: (prompt != PromptDetails::default()).then_some(prompt),
    };
    (out.completion_tokens > 0 || out.prompt_tokens > 0 || out.total_tokens > 0).then_some(out)
}

#[async_trait]
impl Conversation for OpenAi {
    async fn converse(&self, req: &ConverseRequest) -> Result<ConverseResponse, ConversationError> {
        let body = serde_json::to_vec(&self.body(req)).map_err(failed)?;
        let Some(cache) = &self.cache else {
            return self.call(body).await;
        };
        {
            let entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, r)) = entries.get(&body) {
                if at.elapsed() < cache.ttl {
                    return Ok(r.clone());
                }
            }
        }
        let r = self.call(body.clone()).await?;
        let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < cache.ttl);
        if entries.len() >= CACHE_MAX {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(body, (Instant::now(), r.clone()));
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Message, Tool};

    fn comp(meta: &[(&str, &str)]) -> spar_config::Component {
        spar_config::Component::new("llm", "conversation.openai", meta)
    }

    #[test]
    fn metadata_as_daprd_reads_it() {
        assert!(build(&comp(&[("apiType", "azure")]), &Default::default()).is_err());
        assert!(build(&comp(&[("endpoint", "ftp://x")]), &Default::default()).is_err());
        assert!(build(&comp(&[("cacheTTL", "soon")]), &Default::default()).is_err());
        assert!(build(
            &comp(&[("key", "k"), ("cacheTTL", "10m")]),
            &Default::default()
        )
        .is_ok());
    }

    #[test]
    fn request_shapes() {
        let o = OpenAi {
            url: String::new(),
            auth: None,
            model: "m".into(),
            timeout: Duration::from_secs(1),
            cache: None,
            clients: PerThread::new(client(Duration::from_secs(1)).unwrap(), || None),
        };
        let req = ConverseRequest {
            messages: vec![
                Message {
                    role: Role::System,
                    parts: vec![Part::Text("be brief".into())],
                },
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall(ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: "{}".into(),
                    })],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![Part::ToolResult {
                        call_id: "c1".into(),
                        name: "f".into(),
                        content: "42".into(),
                    }],
                },
            ],
            tools: Some(vec![Tool {
                name: "f".into(),
                description: String::new(),
                parameters: json!({"type": "object"}),
            }]),
            tool_choice: Some("f".into()),
            temperature: 0.5,
            ..Default::default()
        };
        let b = o.body(&req);
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(b["messages"][1]["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(b["messages"][1]["content"], Value::Null);
        assert_eq!(
            b["messages"][2],
            json!({"role": "tool", "tool_call_id": "c1", "name": "f", "content": "42"})
        );
        assert_eq!(
            b["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(b["tool_choice"]["function"]["name"], "f");
        assert_eq!(b["temperature"], 0.5);
    }
}
