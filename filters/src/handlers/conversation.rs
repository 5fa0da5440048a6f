//! The conversation building block: gRPC `ConverseAlpha1`/`ConverseAlpha2`
//! and `POST /v1.0-alpha1|v1.0-alpha2/conversation/{name}/converse`. Checks
//! the request as daprd does, turns it into the component's request, calls
//! the component under its outbound resiliency policy, records daprd's
//! conversation metrics and shapes the answer per API version. `scrubPII`
//! is the PII filter's job (`builtin/pii.rs`), before and after this.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spar_components::conversation::{
    self as cv, Conversation, ConversationError, ConverseRequest, Message, Part, Role,
};

use crate::resiliency::{Refused, Verdict};
use crate::runtime::Live;
use crate::{ApiError, ApiResult, Response, Runtime};

/// An opaque `google.protobuf.Any` parameter, echoed back by alpha1 in the
/// form it came in (bytes over gRPC, JSON over HTTP).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Proto { type_url: String, value: Vec<u8> },
    Json(serde_json::Value),
}

#[derive(Debug)]
pub enum ConversationRequest {
    Alpha1(Alpha1Request),
    Alpha2(Alpha2Request),
}

impl ConversationRequest {
    pub fn name(&self) -> &str {
        match self {
            ConversationRequest::Alpha1(r) => &r.name,
            ConversationRequest::Alpha2(r) => &r.name,
        }
    }
}

#[derive(Debug, Default)]
pub struct Alpha1Input {
    pub content: String,
    pub role: Option<String>,
    pub scrub_pii: bool,
}

#[derive(Debug, Default)]
pub struct Alpha1Request {
    pub name: String,
    pub context_id: Option<String>,
    pub inputs: Vec<Alpha1Input>,
    pub parameters: Vec<(String, Param)>,
    pub metadata: HashMap<String, String>,
    /// Scrub the answers.
    pub scrub_pii: bool,
    pub temperature: Option<f64>,
}

/// A tool call in an assistant message; `function` is `None` when the
/// caller set no tool type (refused, as daprd does).
#[derive(Debug, Default, Clone)]
pub struct InToolCall {
    pub id: Option<String>,
    pub function: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum InMessage {
    Developer {
        content: Vec<String>,
    },
    System {
        content: Vec<String>,
    },
    User {
        content: Vec<String>,
    },
    Assistant {
        content: Vec<String>,
        tool_calls: Vec<InToolCall>,
    },
    Tool {
        tool_id: Option<String>,
        name: String,
        content: Vec<String>,
    },
    /// No message type set.
    Empty,
}

impl InMessage {
    /// The texts the PII filter scrubs.
    pub fn texts_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            InMessage::Developer { content }
            | InMessage::System { content }
            | InMessage::User { content }
            | InMessage::Assistant { content, .. }
            | InMessage::Tool { content, .. } => Some(content),
            InMessage::Empty => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Alpha2Input {
    pub messages: Vec<InMessage>,
    pub scrub_pii: bool,
}

#[derive(Debug, Default, Clone)]
pub struct ToolDef {
    /// `None`: no tool type set (ignored, as daprd does).
    pub function: Option<cv::Tool>,
}

#[derive(Debug, Default)]
pub struct Alpha2Request {
    pub name: String,
    pub context_id: Option<String>,
    pub inputs: Vec<Alpha2Input>,
    pub metadata: HashMap<String, String>,
    /// Scrub the answers.
    pub scrub_pii: bool,
    pub temperature: Option<f64>,
    /// `None`: no `tools` field given.
    pub tools: Option<Vec<ToolDef>>,
    pub tool_choice: Option<String>,
    pub response_format: Option<serde_json::Value>,
    pub prompt_cache_retention: Option<Duration>,
}

#[derive(Debug)]
pub enum ConversationResponse {
    Alpha1 {
        context_id: Option<String>,
        /// (result, parameters echoed back).
        outputs: Vec<(String, Vec<(String, Param)>)>,
    },
    Alpha2 {
        context_id: Option<String>,
        outputs: Vec<Alpha2Output>,
    },
}

#[derive(Debug)]
pub struct Alpha2Output {
    pub choices: Vec<cv::Choice>,
    pub model: Option<String>,
    pub usage: Option<cv::Usage>,
}

/// The conversation components by name.
#[derive(Default)]
pub struct Conversations {
    map: HashMap<String, Arc<dyn Conversation>>,
}

impl Conversations {
    pub fn insert(&mut self, name: String, c: Arc<dyn Conversation>) {
        self.map.insert(name, c);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Conversation>> {
        self.map.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Alpha1's role names, as daprd maps them; anything else is the user.
fn alpha1_role(role: Option<&str>) -> Role {
    match role.unwrap_or_default() {
        "system" => Role::System,
        "assistant" | "ai" => Role::Assistant,
        "tool" => Role::Tool,
        "function" => Role::Function,
        _ => Role::User,
    }
}

fn invalid(name: &str, reason: &str) -> ApiError {
    ApiError::ConversationInvalidParams {
        name: name.into(),
        reason: reason.into(),
    }
}

fn texts(content: Vec<String>) -> Vec<Part> {
    content.into_iter().map(Part::Text).collect()
}

/// Alpha2's messages in the component's terms, checked as daprd checks them.
fn alpha2_messages(name: &str, inputs: Vec<Alpha2Input>) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::new();
    for input in inputs {
        for m in input.messages {
            out.push(match m {
                InMessage::Empty => return Err(invalid(name, "message type cannot be nil")),
                // daprd sends the developer's messages as the user's.
                InMessage::Developer { content } | InMessage::User { content } => Message {
                    role: Role::User,
                    parts: texts(content),
                },
                InMessage::System { content } => Message {
                    role: Role::System,
                    parts: texts(content),
                },
                InMessage::Assistant {
                    content,
                    tool_calls,
                } => {
                    let mut parts = texts(content);
                    for t in tool_calls {
                        let Some((fname, args)) = t.function else {
                            return Err(invalid(name, "tool types cannot be nil"));
                        };
                        parts.push(Part::ToolCall(cv::ToolCall {
                            id: t.id.unwrap_or_default(),
                            name: fname,
                            arguments: args,
                        }));
                    }
                    Message {
                        role: Role::Assistant,
                        parts,
                    }
                }
                InMessage::Tool {
                    tool_id,
                    name: tool,
                    content,
                } => Message {
                    role: Role::Tool,
                    parts: content
                        .into_iter()
                        .map(|c| Part::ToolResult {
                            call_id: tool_id.clone().unwrap_or_default(),
                            name: tool.clone(),
                            content: c,
                        })
                        .collect(),
                },
            });
        }
    }
    Ok(out)
}

/// daprd's `tool_choice` rules: `auto` when tools are given and no choice;
/// `required` needs tools; a name must be one of the tools'.
fn tool_choice(
    name: &str,
    choice: Option<String>,
    tools: &[cv::Tool],
) -> Result<Option<String>, ApiError> {
    let choice = choice.filter(|c| !c.is_empty());
    let choice = match choice {
        None if !tools.is_empty() => Some("auto".to_string()),
        other => other,
    };
    match choice.as_deref() {
        None | Some("auto" | "none") => {}
        Some("required") if tools.is_empty() => {
            return Err(invalid(
                name,
                "tool choice must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used",
            ))
        }
        Some("required") => {}
        Some(specific) => {
            if !tools.iter().any(|t| t.name == specific) {
                return Err(invalid(
                    name,
                    "tool choice selected was not found. Must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used",
                ));
            }
        }
    }
    Ok(choice)
}

/// The component call under its outbound resiliency policy.
async fn guarded(
    live: &Live,
    name: &str,
    c: &Arc<dyn Conversation>,
    req: &ConverseRequest,
) -> Result<cv::ConverseResponse, ConversationError> {
    let Some(p) = live.resiliency.component_outbound(name) else {
        return c.converse(req).await;
    };
    p.run(
        || c.converse(req),
        |r| match r {
            Err(_) => Verdict::Failed(None),
            Ok(_) => Verdict::Success,
        },
    )
    .await
    .map_err(|r| match r {
        Refused::Failed(e) => e,
        Refused::Timeout(d) => {
            ConversationError::Backend(format!("timeout after {d:?} (resiliency policy)"))
        }
        Refused::BreakerOpen => ConversationError::Backend("circuit breaker is open".into()),
    })
}

async fn converse(
    rt: &Runtime,
    live: &Live,
    name: &str,
    c: &Arc<dyn Conversation>,
    req: &ConverseRequest,
) -> Result<cv::ConverseResponse, ApiError> {
    let started = Instant::now();
    // A child span of the API call, as state calls have (daprd has none).
    let mut span = crate::trace::filter::child_span(
        &live.tracer,
        || format!("conversation/{name}/converse"),
        crate::trace::SpanKind::Client,
    );
    let r = guarded(live, name, c, req).await;
    if let (Some(s), Err(e)) = (span.as_mut(), &r) {
        s.error(e.to_string());
    }
    if let Some(m) = &rt.metrics {
        m.conversation(name, r.is_ok(), started);
    }
    r.map_err(|e| ApiError::ConversationInvoke {
        name: name.into(),
        reason: e.to_string(),
    })
}

pub async fn handle(rt: &Runtime, req: ConversationRequest) -> ApiResult {
    let live = rt.live();
    let name = req.name().to_string();
    let Some(c) = live.conversations.get(&name).cloned() else {
        return Err(ApiError::ConversationNotFound(name));
    };
    let out = match req {
        ConversationRequest::Alpha1(r) => {
            if r.inputs.is_empty() {
                return Err(ApiError::ConversationMissingInputs(name));
            }
            let messages = r
                .inputs
                .into_iter()
                .map(|i| Message {
                    role: alpha1_role(i.role.as_deref()),
                    parts: vec![Part::Text(i.content)],
                })
                .collect();
            let creq = ConverseRequest {
                messages,
                tools: Some(Vec::new()),
                temperature: r.temperature.unwrap_or_default(),
                ..Default::default()
            };
            let resp = converse(rt, &live, &name, &c, &creq).await?;
            // Alpha1 answers one string per output: its first choice's text.
            let outputs = resp
                .outputs
                .into_iter()
                .map(|o| {
                    let text = o
                        .choices
                        .into_iter()
                        .next()
                        .map(|c| c.content)
                        .unwrap_or_default();
                    (text, r.parameters.clone())
                })
                .collect();
            ConversationResponse::Alpha1 {
                context_id: r.context_id.filter(|c| !c.is_empty()),
                outputs,
            }
        }
        ConversationRequest::Alpha2(r) => {
            if r.inputs.is_empty() {
                return Err(ApiError::ConversationMissingInputs(name));
            }
            let messages = alpha2_messages(&name, r.inputs)?;
            let tools: Option<Vec<cv::Tool>> = r
                .tools
                .map(|ts| ts.into_iter().filter_map(|t| t.function).collect());
            let choice = tool_choice(&name, r.tool_choice, tools.as_deref().unwrap_or_default())?;
            let creq = ConverseRequest {
                messages,
                tools,
                tool_choice: choice,
                temperature: r.temperature.unwrap_or_default(),
                metadata: r.metadata,
                response_format: r.response_format,
                prompt_cache_retention: r.prompt_cache_retention,
            };
            let resp = converse(rt, &live, &name, &c, &creq).await?;
            let model = resp.model.filter(|m| !m.is_empty());
            ConversationResponse::Alpha2 {
                context_id: r.context_id.filter(|c| !c.is_empty()),
                outputs: resp
                    .outputs
                    .into_iter()
                    .map(|o| Alpha2Output {
                        choices: o.choices,
                        model: model.clone(),
                        usage: resp.usage,
                    })
                    .collect(),
            }
        }
    };
    Ok(Response::Conversation(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> cv::Tool {
        cv::Tool {
            name: name.into(),
            description: String::new(),
            parameters: serde_json::Value::Null,
        }
    }

    #[test]
    fn tool_choice_rules() {
        assert_eq!(
            tool_choice("c", None, &[tool("f")]).unwrap().as_deref(),
            Some("auto")
        );
        assert_eq!(tool_choice("c", None, &[]).unwrap(), None);
        assert!(tool_choice("c", Some("required".into()), &[]).is_err());
        assert!(tool_choice("c", Some("g".into()), &[tool("f")]).is_err());
        assert_eq!(
            tool_choice("c", Some("f".into()), &[tool("f")])
                .unwrap()
                .as_deref(),
            Some("f")
        );
    }

    #[test]
    fn alpha2_messages_checked() {
        let e = alpha2_messages(
            "c",
            vec![Alpha2Input {
                messages: vec![InMessage::Empty],
                scrub_pii: false,
            }],
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_CONVERSATION_INVALID_PARMS");
        let e = alpha2_messages(
            "c",
            vec![Alpha2Input {
                messages: vec![InMessage::Assistant {
                    content: vec![],
                    tool_calls: vec![InToolCall::default()],
                }],
                scrub_pii: false,
            }],
        )
        .unwrap_err();
        assert!(e.to_string().contains("tool types cannot be nil"));
    }
}
