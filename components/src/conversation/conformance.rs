//! The conversation conformance suite: what every component answers,
//! whatever model is behind it. The harness gives a component whose model
//! answers (the echo, or the OpenAI API served by a test double that
//! repeats the last user text and calls the first tool it is offered when
//! `tool_choice` is `required`).

use std::sync::Arc;

use serde_json::json;

use super::{Conversation, ConverseRequest, Message, Part, Role, Tool, ToolCall};

fn user(text: &str) -> Message {
    Message {
        role: Role::User,
        parts: vec![Part::Text(text.into())],
    }
}

pub async fn run_all(c: Arc<dyn Conversation>) {
    c.init().await.expect("init");
    answers_text(&*c).await;
    calls_a_required_tool(&*c).await;
    takes_a_tool_round_trip(&*c).await;
}

/// A user message gets an output with one choice carrying the text back.
pub async fn answers_text(c: &dyn Conversation) {
    let r = c
        .converse(&ConverseRequest {
            messages: vec![
                Message {
                    role: Role::System,
                    parts: vec![Part::Text("answer briefly".into())],
                },
                user("hello there"),
            ],
            ..Default::default()
        })
        .await
        .expect("converse");
    assert!(!r.outputs.is_empty(), "{r:?}");
    let ch = &r.outputs[0].choices[0];
    assert!(ch.content.contains("hello there"), "{r:?}");
    assert_eq!(ch.finish_reason, "stop");
    assert!(ch.tool_calls.is_empty());
    if let Some(u) = r.usage {
        assert!(u.total_tokens >= u.completion_tokens, "{u:?}");
    }
}

/// Offered one tool that must be used, the model calls it.
pub async fn calls_a_required_tool(c: &dyn Conversation) {
    let r = c
        .converse(&ConverseRequest {
            messages: vec![user("what is the weather in Paris?")],
            tools: Some(vec![Tool {
                name: "get_weather".into(),
                description: "the weather in a city".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            }]),
            tool_choice: Some("required".into()),
            ..Default::default()
        })
        .await
        .expect("converse");
    let ch = &r.outputs[0].choices[0];
    assert_eq!(ch.finish_reason, "tool_calls", "{r:?}");
    assert_eq!(ch.tool_calls.len(), 1, "{r:?}");
    assert_eq!(ch.tool_calls[0].name, "get_weather");
    assert!(!ch.tool_calls[0].id.is_empty());
}

/// An assistant's earlier call and the tool's result are accepted as the
/// next turn's history.
pub async fn takes_a_tool_round_trip(c: &dyn Conversation) {
    let r = c
        .converse(&ConverseRequest {
            messages: vec![
                user("weather in Paris?"),
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall(ToolCall {
                        id: "call-1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    })],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![Part::ToolResult {
                        call_id: "call-1".into(),
                        name: "get_weather".into(),
                        content: "sunny".into(),
                    }],
                },
                user("so?"),
            ],
            ..Default::default()
        })
        .await
        .expect("converse");
    assert!(!r.outputs.is_empty(), "{r:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo() {
        // The echo returns every call it was given, so the required-tool
        // case sees exactly the one tool.
        run_all(Arc::new(super::super::echo::Echo)).await;
    }
}
