//! The conversation kind: the [`Conversation`] trait (one chat-completion
//! call to a language model) and its implementations.
//!
//! The request is the runtime's, already checked and PII-scrubbed: messages
//! by role with text, tool calls and tool results; the tools the model may
//! call; options. The response has one output per choice the model made,
//! as daprd's components return them.

pub mod conformance;
pub mod echo;
pub mod openai;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConversationError {
    /// The model's service failed or answered something unreadable.
    #[error("{0}")]
    Backend(String),
}

/// Who a message is from, as Dapr's components tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    /// The end user (also Dapr's `developer` and alpha1's `human`,
    /// `generic` and unknown roles).
    User,
    Assistant,
    /// Results of tool calls.
    Tool,
    /// Alpha1's deprecated `function` role.
    Function,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Empty when the caller gave none.
    pub id: String,
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// A call the assistant made (earlier turns of a conversation).
    ToolCall(ToolCall),
    /// What a tool answered to a call.
    ToolResult {
        call_id: String,
        name: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// A JSON Schema object; `Null` when none was given.
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConverseRequest {
    pub messages: Vec<Message>,
    /// `None`: the caller gave no tool list at all.
    pub tools: Option<Vec<Tool>>,
    /// `auto`, `none`, `required` or a tool's name.
    pub tool_choice: Option<String>,
    /// 0: the model's default.
    pub temperature: f64,
    /// Passed to the model's service (OpenAI's request `metadata`).
    pub metadata: HashMap<String, String>,
    /// A JSON Schema the answer must follow (structured output).
    pub response_format: Option<serde_json::Value>,
    pub prompt_cache_retention: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// `stop`, `length`, `tool_calls`, `content_filter`; `unknown` when the
    /// service gave none.
    pub finish_reason: String,
    pub index: i64,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub choices: Vec<Choice>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompletionDetails {
    pub accepted_prediction_tokens: u64,
    pub audio_tokens: u64,
    pub reasoning_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptDetails {
    pub audio_tokens: u64,
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub completion_tokens: u64,
    pub prompt_tokens: u64,
    pub total_tokens: u64,
    pub completion_details: Option<CompletionDetails>,
    pub prompt_details: Option<PromptDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConverseResponse {
    /// The model that answered, when the component knows it.
    pub model: Option<String>,
    pub outputs: Vec<Output>,
    pub usage: Option<Usage>,
}

#[async_trait]
pub trait Conversation: Send + Sync + 'static {
    /// Checks the component can work (daprd's `Init`); bounded by the
    /// component's `initTimeout`. Nothing is sent to the model here.
    async fn init(&self) -> Result<(), ConversationError> {
        Ok(())
    }

    async fn converse(&self, req: &ConverseRequest) -> Result<ConverseResponse, ConversationError>;
}
