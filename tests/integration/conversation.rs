//! The conversation API against the real binary: `conversation.echo` and
//! `conversation.openai` talking to a double of OpenAI's chat-completions
//! API served by the test (no model runs here), over HTTP (alpha1, alpha2)
//! and gRPC (the Rust `dapr` crate's `converse_alpha1/2`); PII scrubbing
//! on inputs and answers, tool calls both ways, usage, the key from a
//! `secretKeyRef`, `cacheTTL`, resiliency retries, bad input with daprd's
//! codes, metadata, metrics and hot reload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use reqwest::Client;
use serde_json::{json, Value};
use spar_tests::{get_json, Options, Sidecar};

/// What the double saw and how it should behave.
#[derive(Default)]
pub(crate) struct Double {
    requests: Mutex<Vec<(HeaderMap, Value)>>,
    /// Answer this many calls with 503 first.
    fail_first: AtomicUsize,
}

/// The text of an API message's `content` (a string or text parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// `POST /v1/chat/completions` as OpenAI documents it: Bearer key, the
/// request's `model`, `messages`, `tools`, `tool_choice`; answers with
/// `choices[].message` (content or `tool_calls`), `finish_reason`, `usage`.
/// It calls the first tool when tools are offered and the last message is
/// not a tool's result; else it repeats the last user text.
async fn completions(
    State(d): State<Arc<Double>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    d.requests
        .lock()
        .unwrap()
        .push((headers.clone(), body.clone()));
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    // OpenAI's Bearer key, or Azure OpenAI's `api-key`.
    if header("authorization") != Some("Bearer test-key") && header("api-key") != Some("test-key") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
            ),
        );
    }
    if d.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"message": "overloaded"}})),
        );
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    if last["content"] == "take your time" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    let choice = if !tools.is_empty() && body["tool_choice"] != "none" && last["role"] != "tool" {
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_abc123", "type": "function",
                "function": {"name": tools[0]["function"]["name"], "arguments": "{\"city\":\"Paris\"}"}
            }]},
            "finish_reason": "tool_calls"
        })
    } else {
        let said = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user" || m["role"] == "tool")
            .map(|m| text_of(&m["content"]))
            .unwrap_or_default();
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": format!("you said: {said}")},
            "finish_reason": "stop"
        })
    };
    (
        StatusCode::OK,
        Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
            "model": "double-model-2025",
            "choices": [choice],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                      "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 1}}
        })),
    )
}

pub(crate) async fn openai_double() -> (u16, Arc<Double>) {
    let d = Arc::new(Double::default());
    // Azure OpenAI's path: a deployment per model, the API version in the query.
    let azure = |State(d): State<Arc<Double>>,
                 axum::extract::Path(model): axum::extract::Path<String>,
                 axum::extract::RawQuery(q): axum::extract::RawQuery,
                 headers: HeaderMap,
                 Json(mut body): Json<Value>| async move {
        body["azure_deployment"] = json!(model);
        body["azure_query"] = json!(q);
        completions(State(d), headers, Json(body)).await
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .route(
            "/openai/deployments/{model}/chat/completions",
            axum::routing::post(azure),
        )
        .with_state(d.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (port, d)
}

fn component(name: &str, ty: &str, meta: &str) -> String {
    format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n{meta}")
}

fn openai(name: &str, port: u16, extra: &str) -> String {
    component(
        name,
        "conversation.openai",
        &format!("  - name: endpoint\n    value: \"http://127.0.0.1:{port}/v1\"\n  - name: model\n    value: gpt-test\n  - name: key\n    secretKeyRef:\n      name: SPARTEST_LLM_KEY\n      key: SPARTEST_LLM_KEY\n{extra}"),
    )
}

fn echo(name: &str) -> String {
    format!("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: conversation.echo\n  version: v1\n")
}

async fn post(c: &Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(&url).json(&body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn user(text: &str) -> Value {
    json!({"ofUser": {"content": [{"text": text}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_http_with_pii_scrubbing() {
    let sc = Sidecar::start(Options {
        resources: vec![echo("echo")],
        ..Default::default()
    });
    let c = Client::new();
    let v1 = format!("{}/v1.0-alpha1/conversation/echo/converse", sc.http());
    let v2 = format!("{}/v1.0-alpha2/conversation/echo/converse", sc.http());

    // Alpha1: inputs joined, contextID and parameters echoed; an input
    // that asks is scrubbed before the component sees it.
    let (s, b) = post(&c, v1.clone(), json!({
        "contextID": "ctx-1",
        "inputs": [{"content": "mail me at jane@example.com", "role": "user", "scrubPII": true},
                   {"content": "or call 555-123-4567"}],
        "parameters": {"p": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x"}},
    })).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["contextID"], "ctx-1");
    assert_eq!(
        b["outputs"][0]["result"],
        "mail me at <EMAIL_ADDRESS>\nor call 555-123-4567"
    );
    assert_eq!(b["outputs"][0]["parameters"]["p"]["value"], "x");
    // Request-level scrubPII: the answer is scrubbed.
    let (_, b) = post(
        &c,
        v1.clone(),
        json!({
            "inputs": [{"content": "card 4111 1111 1111 1111 from 10.0.0.7"}],
            "scrubPII": true,
        }),
    )
    .await;
    assert_eq!(b["outputs"][0]["result"], "card <CREDIT_CARD> from <IP>");

    // Alpha2: roles, tools answered with calls, usage as protojson strings.
    let (s, b) = post(&c, v2.clone(), json!({
        "contextId": "ctx-2",
        "inputs": [{"messages": [
            {"ofSystem": {"content": [{"text": "be brief"}]}},
            user("weather? my ssn is 078-05-1120"),
        ], "scrubPii": true}],
        "tools": [{"function": {"name": "get_weather", "description": "weather",
                   "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}}}}],
    })).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["contextId"], "ctx-2");
    let choice = &b["outputs"][0]["choices"][0];
    assert_eq!(choice["finishReason"], "tool_calls");
    assert_eq!(
        choice["message"]["content"],
        "be brief\nweather? my ssn is <US_SSN>"
    );
    assert_eq!(
        choice["message"]["toolCalls"],
        json!([{"id": "0", "function": {"name": "get_weather", "arguments": "location,unit"}}])
    );
    assert_eq!(b["outputs"][0]["usage"]["totalTokens"], "14");

    // Alpha2 answers scrubbed when the request asks.
    let (_, b) = post(
        &c,
        v2,
        json!({
            "inputs": [{"messages": [user("reach me at bob@corp.example")]}],
            "scrubPii": true,
        }),
    )
    .await;
    assert_eq!(
        b["outputs"][0]["choices"][0]["message"]["content"],
        "reach me at <EMAIL_ADDRESS>"
    );
    assert!(!sc.stderr().contains("panicked"));
}

/// `conversation.openai` against the double, over gRPC with the Rust SDK:
/// a tool call comes back, the tool's result goes in the next turn, and the
/// request the API received has the documented shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_over_grpc_with_tool_calls() {
    use dapr::client::{
        ConversationInputAlpha2, ConversationMessage, ConversationMessageContent,
        ConversationRequestAlpha2, ConversationTools,
    };
    use dapr::dapr::proto::runtime::v1 as pb;
    let (port, double) = openai_double().await;
    let sc = Sidecar::start(Options {
        resources: vec![openai("llm", port, "")],
        env: vec![("SPARTEST_LLM_KEY".into(), "test-key".into())],
        ..Default::default()
    });
    let mut client =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(sc.grpc()))
            .await
            .unwrap();
    let text = |t: &str| vec![ConversationMessageContent { text: t.into() }];
    let msg = |m| ConversationMessage {
        message_types: Some(m),
    };
    use pb::conversation_message::MessageTypes as T;
    let weather_tool = ConversationTools {
        tool_types: Some(pb::conversation_tools::ToolTypes::Function(
            pb::ConversationToolsFunction {
                name: "get_weather".into(),
                description: Some("the weather in a city".into()),
                parameters: Some(prost_types::Struct {
                    fields: [(
                        "type".to_string(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue("object".into())),
                        },
                    )]
                    .into(),
                }),
            },
        )),
    };
    let first = ConversationRequestAlpha2 {
        name: "llm".into(),
        context_id: Some("chat-9".into()),
        inputs: vec![ConversationInputAlpha2 {
            messages: vec![
                msg(T::OfSystem(pb::ConversationMessageOfSystem {
                    name: None,
                    content: text("be brief"),
                })),
                msg(T::OfUser(pb::ConversationMessageOfUser {
                    name: None,
                    content: text("weather in Paris?"),
                })),
            ],
            scrub_pii: None,
        }],
        temperature: Some(0.3),
        tools: vec![weather_tool.clone()],
        ..Default::default()
    };
    let r = client.converse_alpha2(first).await.unwrap();
    assert_eq!(r.context_id.as_deref(), Some("chat-9"));
    let out = &r.outputs[0];
    assert_eq!(
        out.model.as_deref(),
        Some("gpt-test"),
        "the configured model, as daprd"
    );
    let ch = &out.choices[0];
    assert_eq!(ch.finish_reason, "tool_calls");
    let call = &ch.message.as_ref().unwrap().tool_calls[0];
    assert_eq!(call.id.as_deref(), Some("call_abc123"));
    let Some(pb::conversation_tool_calls::ToolTypes::Function(f)) = &call.tool_types else {
        panic!("{call:?}")
    };
    assert_eq!(
        (f.name.as_str(), f.arguments.as_str()),
        ("get_weather", "{\"city\":\"Paris\"}")
    );
    let usage = out.usage.as_ref().unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (7, 3, 10)
    );
    assert_eq!(
        usage.prompt_tokens_details.as_ref().unwrap().cached_tokens,
        2
    );
    assert_eq!(
        usage
            .completion_tokens_details
            .as_ref()
            .unwrap()
            .reasoning_tokens,
        1
    );
    {
        let seen = double.requests.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(headers["authorization"], "Bearer test-key");
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["temperature"], 0.3);
        assert_eq!(body["tool_choice"], "auto", "daprd's default with tools");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather in Paris?"},
            ])
        );
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {
            "name": "get_weather", "description": "the weather in a city", "parameters": {"type": "object"}}}])
        );
    }

    // The next turn carries the call and the tool's result.
    let second = ConversationRequestAlpha2 {
        name: "llm".into(),
        inputs: vec![ConversationInputAlpha2 {
            messages: vec![
                msg(T::OfUser(pb::ConversationMessageOfUser {
                    name: None,
                    content: text("weather in Paris?"),
                })),
                msg(T::OfAssistant(pb::ConversationMessageOfAssistant {
                    name: None,
                    content: vec![],
                    tool_calls: vec![call.clone()],
                })),
                msg(T::OfTool(pb::ConversationMessageOfTool {
                    tool_id: Some("call_abc123".into()),
                    name: "get_weather".into(),
                    content: text("sunny, 21C"),
                })),
            ],
            scrub_pii: None,
        }],
        tools: vec![weather_tool],
        ..Default::default()
    };
    let r = client.converse_alpha2(second).await.unwrap();
    let ch = &r.outputs[0].choices[0];
    assert_eq!(ch.finish_reason, "stop");
    assert_eq!(ch.message.as_ref().unwrap().content, "you said: sunny, 21C");
    {
        let seen = double.requests.lock().unwrap();
        let body = &seen[1].1;
        assert_eq!(
            body["messages"][1],
            json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "tool", "tool_call_id": "call_abc123", "name": "get_weather", "content": "sunny, 21C"})
        );
    }

    // Alpha1 through the same component.
    let r = client
        .converse_alpha1(dapr::client::ConversationRequest {
            name: "llm".into(),
            inputs: vec![dapr::client::ConversationInput {
                content: "hello".into(),
                role: Some("user".into()),
                scrub_pii: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outputs[0].result, "you said: hello");

    // Errors as gRPC codes.
    let e = client
        .converse_alpha2(ConversationRequestAlpha2 {
            name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("failed finding conversation component nope"),
        "{e:?}"
    );
}

/// The model's service refusing the key is ERR_CONVERSATION_INVOKE with its
/// message; `cacheTTL` answers an identical request without a call; a
/// retry policy on the component gets past a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_errors_cache_and_resiliency() {
    let (port, double) = openai_double().await;
    let policy = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  policies:\n    retries:\n      twice:\n        policy: constant\n        duration: 10ms\n        maxRetries: 2\n  targets:\n    components:\n      retried:\n        outbound:\n          retry: twice\n";
    let sc = Sidecar::start(Options {
        resources: vec![
            openai("llm", port, "  - name: cacheTTL\n    value: 10m\n"),
            openai("retried", port, ""),
            openai("slow", port, "  - name: timeout\n    value: 500ms\n"),
            component("azure", "conversation.openai", &format!("  - name: apiType\n    value: azure\n  - name: endpoint\n    value: \"http://127.0.0.1:{port}\"\n  - name: apiVersion\n    value: 2025-01-01-preview\n  - name: model\n    value: gpt-4o-dep\n  - name: key\n    value: test-key\n")),
            component("badkey", "conversation.openai", &format!("  - name: endpoint\n    value: \"http://127.0.0.1:{port}/v1\"\n  - name: key\n    value: wrong\n")),
            policy.into(),
        ],
        env: vec![("SPARTEST_LLM_KEY".into(), "test-key".into())],
        ..Default::default()
    });
    let c = Client::new();
    let url = |n: &str| format!("{}/v1.0-alpha2/conversation/{n}/converse", sc.http());
    let req = json!({"inputs": [{"messages": [user("cache me")]}]});

    let (s, b) = post(&c, url("badkey"), req.clone()).await;
    assert_eq!(
        (s, b["errorCode"].as_str()),
        (500, Some("ERR_CONVERSATION_INVOKE")),
        "{b}"
    );
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key provided"),
        "{b}"
    );

    let before = double.requests.lock().unwrap().len();
    for _ in 0..3 {
        let (s, b) = post(&c, url("llm"), req.clone()).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["outputs"][0]["choices"][0]["message"]["content"],
            "you said: cache me"
        );
    }
    assert_eq!(
        double.requests.lock().unwrap().len(),
        before + 1,
        "answered from the cache"
    );

    double.fail_first.store(1, Ordering::SeqCst);
    let (s, b) = post(&c, url("retried"), req.clone()).await;
    assert_eq!(s, 200, "retried past the 503: {b}");
    double.fail_first.store(5, Ordering::SeqCst);
    let (s, b) = post(&c, url("retried"), req.clone()).await;
    assert_eq!(
        (s, b["errorCode"].as_str()),
        (500, Some("ERR_CONVERSATION_INVOKE"))
    );
    double.fail_first.store(0, Ordering::SeqCst);

    // A service that does not answer fails the call at the component's
    // `timeout` (500 ms here; the bound checked is generous).
    let t = Instant::now();
    let (s, b) = post(
        &c,
        url("slow"),
        json!({"inputs": [{"messages": [user("take your time")]}]}),
    )
    .await;
    assert_eq!(
        (s, b["errorCode"].as_str()),
        (500, Some("ERR_CONVERSATION_INVOKE")),
        "{b}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Azure OpenAI: the deployment path, the API version, the `api-key` header.
    let (s, b) = post(&c, url("azure"), req.clone()).await;
    assert_eq!(s, 200, "{b}");
    {
        let seen = double.requests.lock().unwrap();
        let (headers, body) = seen.last().unwrap();
        assert_eq!(headers["api-key"], "test-key");
        assert!(headers.get("authorization").is_none());
        assert_eq!(body["azure_deployment"], "gpt-4o-dep");
        assert_eq!(body["azure_query"], "api-version=2025-01-01-preview");
    }

    // daprd's metric, per component and outcome.
    let metrics = c
        .get(sc.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dapr_component_conversation_count")
                && l.contains("component=\"badkey\"")
                && l.contains("success=\"false\"")),
        "{metrics}"
    );
    assert!(metrics.contains("dapr_component_conversation_latencies_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_daprds_errors() {
    let sc = Sidecar::start(Options {
        resources: vec![echo("echo")],
        ..Default::default()
    });
    let c = Client::new();
    let base = sc.http();
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        (
            "/v1.0-alpha1/conversation/nope/converse",
            r#"{"inputs":[{"content":"x"}]}"#,
            400,
            "ERR_CONVERSATION_NOT_FOUND",
            "failed finding conversation component nope",
        ),
        (
            "/v1.0-alpha2/conversation/nope/converse",
            "",
            400,
            "ERR_CONVERSATION_NOT_FOUND",
            "",
        ),
        (
            "/v1.0-alpha1/conversation/echo/converse",
            "",
            400,
            "ERR_CONVERSATION_MISSING_INPUTS",
            "failed conversing with component echo: missing inputs in request",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":[]}"#,
            400,
            "ERR_CONVERSATION_MISSING_INPUTS",
            "",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":[{"messages":[{}]}]}"#,
            400,
            "ERR_CONVERSATION_INVALID_PARMS",
            "message type cannot be nil",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":[{"messages":[{"ofAssistant":{"toolCalls":[{"id":"1"}]}}]}]}"#,
            400,
            "ERR_CONVERSATION_INVALID_PARMS",
            "tool types cannot be nil",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":[{"messages":[{"ofUser":{}}]}],"toolChoice":"required"}"#,
            400,
            "ERR_CONVERSATION_INVALID_PARMS",
            "tool choice must be",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":[{"messages":[{"ofUser":{}}]}],"tools":[{"function":{"name":"f"}}],"toolChoice":"g"}"#,
            400,
            "ERR_CONVERSATION_INVALID_PARMS",
            "tool choice selected was not found",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":"many"}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":[{"messages":[{"ofUser":{"content":[{"text":5}]}}]}]}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"inputs":[{"messages":[{"ofUser":{},"ofSystem":{}}]}]}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha2/conversation/echo/converse",
            r#"{"temperature":"hot","inputs":[]}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/conversation/echo/converse",
            r#"{"inputs":[{"content":"x","scrubPII":"yes"}]}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/conversation/echo/converse",
            "{oops",
            400,
            "ERR_MALFORMED_REQUEST",
            "",
        ),
        (
            "/v1.0-alpha1/conversation/echo/converse",
            r#"{"inputs":[{"content":"x"}],"parameters":{"p":"plain"}}"#,
            400,
            "ERR_MALFORMED_REQUEST",
            "google.protobuf.Any",
        ),
    ];
    for (path, body, status, code, msg) in cases {
        let r = c
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), *status, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errorCode"], *code, "{path} {body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(msg),
            "{path} {body}: {v}"
        );
    }
    let r = c
        .get(format!("{base}/v1.0-alpha1/conversation/echo/converse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(!sc.stderr().contains("panicked"));
}

/// Listed in the metadata API; added by hot reload without a restart; a
/// component whose key's secret is missing fails start-up as daprd does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reload_and_missing_secret() {
    let sc = Sidecar::start(Options {
        resources: vec![echo("first")],
        ..Default::default()
    });
    let c = Client::new();
    let md = get_json(&c, format!("{}/v1.0/metadata", sc.http())).await;
    assert!(
        md["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "first"
                && x["type"] == "conversation.echo"
                && x["capabilities"] == json!([])),
        "{md}"
    );
    std::fs::write(
        sc.dir.path().join("resources").join("components.yaml"),
        format!("{}\n---\n{}", echo("first"), echo("second")),
    )
    .unwrap();
    let url = format!("{}/v1.0-alpha2/conversation/second/converse", sc.http());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = post(
            &c,
            url.clone(),
            json!({"inputs": [{"messages": [user("hi")]}]}),
        )
        .await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new component never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("llm.yaml"), openai("llm", 1, "")).unwrap();
    let out = std::process::Command::new(spar_tests::spar_bin())
        .args([
            "run",
            "--app-id",
            "x",
            "--dapr-listen-addresses",
            "127.0.0.1",
        ])
        .args(["--dapr-http-port", &spar_tests::free_port().to_string()])
        .args(["--dapr-grpc-port", &spar_tests::free_port().to_string()])
        .args(["--metrics-port", &spar_tests::free_port().to_string()])
        .arg("--resources-path")
        .arg(dir.path())
        .env_remove("SPARTEST_LLM_KEY")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("llm") && err.contains("SPARTEST_LLM_KEY"),
        "{err}"
    );
}

/// Lock and conversation component calls are child spans of their API
/// call (`lock/{store}/trylock`, `conversation/{name}/converse`), as state
/// calls are; here exported to a Zipkin receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_calls_are_traced() {
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s = spans.clone();
    let app = axum::Router::new().route(
        "/api/v2/spans",
        axum::routing::post(move |Json(v): Json<Vec<Value>>| {
            let s = s.clone();
            async move {
                s.lock().unwrap().extend(v);
                StatusCode::ACCEPTED
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let locks = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: locks\nspec:\n  type: lock.in-memory\n  version: v1\n";
    let sc = Sidecar::start(Options {
        resources: vec![echo("echo"), locks.into()],
        config: Some(format!("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: t\nspec:\n  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: \"http://127.0.0.1:{port}/api/v2/spans\"\n")),
        ..Default::default()
    });
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let c = Client::new();
    let r = c
        .post(format!("{}/v1.0-alpha1/lock/locks", sc.http()))
        .header("traceparent", format!("00-{trace}-1111111111111111-01"))
        .json(&json!({"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!(
            "{}/v1.0-alpha2/conversation/echo/converse",
            sc.http()
        ))
        .header("traceparent", format!("00-{trace}-2222222222222222-01"))
        .json(&json!({"inputs": [{"messages": [user("hi")]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let child_of = |name: &str, api_parent: &str| {
        let got = spans.lock().unwrap();
        let api = got
            .iter()
            .find(|s| s["traceId"] == trace && s["parentId"] == api_parent)?
            .clone();
        got.iter()
            .find(|s| s["name"] == name && s["parentId"] == api["id"])
            .cloned()
    };
    loop {
        let lock = child_of("lock/locks/trylock", "1111111111111111");
        let conv = child_of("conversation/echo/converse", "2222222222222222");
        if lock.is_some() && conv.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans: {:?}",
            spans.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
