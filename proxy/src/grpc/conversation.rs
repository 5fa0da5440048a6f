//! The conversation RPCs of the Dapr service: `ConverseAlpha1` and
//! `ConverseAlpha2`, through the shared chain (the PII filter included).

use std::collections::BTreeMap;

use spar_components::conversation as cv;
use spar_filters::handlers::conversation::{
    Alpha1Input, Alpha1Request, Alpha2Input, Alpha2Request, ConversationRequest,
    ConversationResponse, InMessage, InToolCall, Param, ToolDef,
};
use spar_filters::{Request, Response};
use spar_proto::runtime as pb;
use tonic::{Request as GrpcRequest, Response as GrpcResponse};

use super::dapr::{unexpected, DaprApi, R};

/// `google.protobuf.Struct` as JSON.
pub fn struct_to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_to_json).collect())
        }
    }
}

fn texts(c: &[pb::ConversationMessageContent]) -> Vec<String> {
    c.iter().map(|c| c.text.clone()).collect()
}

fn params(p: &std::collections::HashMap<String, prost_types::Any>) -> Vec<(String, Param)> {
    // Sorted, so answers are stable whatever the map's order.
    let sorted: BTreeMap<_, _> = p.iter().collect();
    sorted
        .into_iter()
        .map(|(k, a)| {
            (
                k.clone(),
                Param::Proto {
                    type_url: a.type_url.clone(),
                    value: a.value.clone(),
                },
            )
        })
        .collect()
}

fn message(m: &pb::ConversationMessage) -> InMessage {
    use pb::conversation_message::MessageTypes as T;
    match &m.message_types {
        None => InMessage::Empty,
        Some(T::OfDeveloper(d)) => InMessage::Developer {
            content: texts(&d.content),
        },
        Some(T::OfSystem(s)) => InMessage::System {
            content: texts(&s.content),
        },
        Some(T::OfUser(u)) => InMessage::User {
            content: texts(&u.content),
        },
        Some(T::OfAssistant(a)) => InMessage::Assistant {
            content: texts(&a.content),
            tool_calls: a
                .tool_calls
                .iter()
                .map(|t| InToolCall {
                    id: t.id.clone(),
                    function: t.tool_types.as_ref().map(|f| {
                        let pb::conversation_tool_calls::ToolTypes::Function(f) = f;
                        (f.name.clone(), f.arguments.clone())
                    }),
                })
                .collect(),
        },
        Some(T::OfTool(t)) => InMessage::Tool {
            tool_id: t.tool_id.clone(),
            name: t.name.clone(),
            content: texts(&t.content),
        },
    }
}

fn tool_call(t: cv::ToolCall) -> pb::ConversationToolCalls {
    pb::ConversationToolCalls {
        id: Some(t.id).filter(|i| !i.is_empty()),
        tool_types: Some(pb::conversation_tool_calls::ToolTypes::Function(
            pb::ConversationToolCallsOfFunction {
                name: t.name,
                arguments: t.arguments,
            },
        )),
    }
}

fn usage(u: cv::Usage) -> pb::ConversationResultAlpha2CompletionUsage {
    pb::ConversationResultAlpha2CompletionUsage {
        completion_tokens: u.completion_tokens,
        prompt_tokens: u.prompt_tokens,
        total_tokens: u.total_tokens,
        completion_tokens_details: u.completion_details.map(|d| {
            pb::ConversationResultAlpha2CompletionUsageCompletionTokensDetails {
                accepted_prediction_tokens: d.accepted_prediction_tokens,
                audio_tokens: d.audio_tokens,
                reasoning_tokens: d.reasoning_tokens,
                rejected_prediction_tokens: d.rejected_prediction_tokens,
            }
        }),
        prompt_tokens_details: u.prompt_details.map(|d| {
            pb::ConversationResultAlpha2CompletionUsagePromptTokensDetails {
                audio_tokens: d.audio_tokens,
                cached_tokens: d.cached_tokens,
            }
        }),
    }
}

impl DaprApi {
    pub(super) async fn converse1(
        &self,
        req: GrpcRequest<pb::ConversationRequest>,
    ) -> R<pb::ConversationResponse> {
        let m = req.get_ref();
        let typed = Request::Conversation(Box::new(ConversationRequest::Alpha1(Alpha1Request {
            name: m.name.clone(),
            context_id: m.context_id.clone(),
            inputs: m
                .inputs
                .iter()
                .map(|i| Alpha1Input {
                    content: i.content.clone(),
                    role: i.role.clone(),
                    scrub_pii: i.scrub_pii.unwrap_or(false),
                })
                .collect(),
            parameters: params(&m.parameters),
            metadata: m.metadata.clone(),
            scrub_pii: m.scrub_pii.unwrap_or(false),
            temperature: m.temperature,
        })));
        match self
            .call(
                "/dapr.proto.runtime.v1.Dapr/ConverseAlpha1",
                &req,
                Ok(typed),
            )
            .await?
        {
            Response::Conversation(ConversationResponse::Alpha1 {
                context_id,
                outputs,
            }) => Ok(GrpcResponse::new(pb::ConversationResponse {
                context_id,
                outputs: outputs
                    .into_iter()
                    .map(|(result, ps)| pb::ConversationResult {
                        result,
                        parameters: ps
                            .into_iter()
                            .filter_map(|(k, p)| match p {
                                Param::Proto { type_url, value } => {
                                    Some((k, prost_types::Any { type_url, value }))
                                }
                                Param::Json(_) => None,
                            })
                            .collect(),
                    })
                    .collect(),
            })),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn converse2(
        &self,
        req: GrpcRequest<pb::ConversationRequestAlpha2>,
    ) -> R<pb::ConversationResponseAlpha2> {
        let m = req.get_ref();
        let typed = Request::Conversation(Box::new(ConversationRequest::Alpha2(Alpha2Request {
            name: m.name.clone(),
            context_id: m.context_id.clone(),
            inputs: m
                .inputs
                .iter()
                .map(|i| Alpha2Input {
                    messages: i.messages.iter().map(message).collect(),
                    scrub_pii: i.scrub_pii.unwrap_or(false),
                })
                .collect(),
            metadata: m.metadata.clone(),
            scrub_pii: m.scrub_pii.unwrap_or(false),
            temperature: m.temperature,
            tools: (!m.tools.is_empty()).then(|| {
                m.tools
                    .iter()
                    .map(|t| ToolDef {
                        function: t.tool_types.as_ref().map(|f| {
                            let pb::conversation_tools::ToolTypes::Function(f) = f;
                            cv::Tool {
                                name: f.name.clone(),
                                description: f.description.clone().unwrap_or_default(),
                                parameters: f
                                    .parameters
                                    .as_ref()
                                    .map(struct_to_json)
                                    .unwrap_or(serde_json::Value::Null),
                            }
                        }),
                    })
                    .collect()
            }),
            tool_choice: m.tool_choice.clone(),
            response_format: m.response_format.as_ref().map(struct_to_json),
            prompt_cache_retention: m.prompt_cache_retention.as_ref().and_then(|d| {
                (d.seconds >= 0 && d.nanos >= 0).then(|| {
                    std::time::Duration::new(d.seconds as u64, d.nanos.min(999_999_999) as u32)
                })
            }),
        })));
        match self
            .call(
                "/dapr.proto.runtime.v1.Dapr/ConverseAlpha2",
                &req,
                Ok(typed),
            )
            .await?
        {
            Response::Conversation(ConversationResponse::Alpha2 {
                context_id,
                outputs,
            }) => Ok(GrpcResponse::new(pb::ConversationResponseAlpha2 {
                context_id,
                outputs: outputs
                    .into_iter()
                    .map(|o| pb::ConversationResultAlpha2 {
                        choices: o
                            .choices
                            .into_iter()
                            .map(|c| pb::ConversationResultChoices {
                                finish_reason: c.finish_reason,
                                index: c.index,
                                message: Some(pb::ConversationResultMessage {
                                    content: c.content,
                                    tool_calls: c.tool_calls.into_iter().map(tool_call).collect(),
                                }),
                            })
                            .collect(),
                        model: o.model,
                        usage: o.usage.map(usage),
                    })
                    .collect(),
            })),
            _ => Err(unexpected()),
        }
    }
}
