//! `conversation.echo`: answers with what it was given, for tests and
//! local development, as daprd's echo component does: one choice whose
//! content is every text (and tool result) of the request joined by
//! newlines; with tools, one call per tool (ids "0", "1", …, arguments the
//! tool's parameter names, sorted, joined by commas) plus the calls already
//! in the request, and `tool_calls` as the finish reason; usage counts
//! words.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Choice, Conversation, ConversationError, ConverseRequest, ConverseResponse, Output, Part,
    ToolCall, Usage,
};
use crate::build::{BuildContext, BuildError};

pub struct Echo;

pub fn build(
    _c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Conversation>, BuildError> {
    Ok(Arc::new(Echo))
}

#[async_trait]
impl Conversation for Echo {
    async fn converse(&self, req: &ConverseRequest) -> Result<ConverseResponse, ConversationError> {
        let mut calls: Vec<ToolCall> = Vec::new();
        for (i, t) in req.tools.iter().flatten().enumerate() {
            let mut args: Vec<&str> = match t.parameters.get("properties") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Object(p)) => p.keys().map(String::as_str).collect(),
                Some(other) => {
                    return Err(ConversationError::Backend(format!(
                        "tool function properties must be an object, got {other}"
                    )))
                }
            };
            args.sort_unstable();
            calls.push(ToolCall {
                id: i.to_string(),
                name: t.name.clone(),
                arguments: args.join(","),
            });
        }
        let mut texts: Vec<String> = Vec::new();
        for m in &req.messages {
            for p in &m.parts {
                match p {
                    Part::Text(t) => texts.push(t.clone()),
                    Part::ToolCall(c) => calls.push(c.clone()),
                    Part::ToolResult {
                        call_id,
                        name,
                        content,
                    } => texts.push(format!(
                        "Tool Response for tool ID '{call_id}' with name '{name}': {content}"
                    )),
                }
            }
        }
        let content = texts.join("\n");
        let finish_reason = if calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        let words = content.split_whitespace().count() as u64;
        Ok(ConverseResponse {
            model: None,
            outputs: vec![Output {
                choices: vec![Choice {
                    finish_reason: finish_reason.into(),
                    index: 0,
                    content,
                    tool_calls: calls,
                }],
            }],
            usage: Some(Usage {
                completion_tokens: words,
                prompt_tokens: words,
                total_tokens: 2 * words,
                ..Default::default()
            }),
        })
    }
}
