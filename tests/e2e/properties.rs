//! Property tests of request parsing: whatever JSON (or bytes) a client
//! sends to a chat route, the gateway answers a valid call or a 4xx JSON
//! error, and never panics or answers 5xx. Requests go through the whole
//! router and chat stack in process (the mock serves), without a socket.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrysalis_gateway::config::Config;
use chrysalis_gateway::stack;
use clap::Parser;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::temp_db;

const ROUTES: [&str; 6] = [
    "/v1/chat",
    "/v1/chat/stream",
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
];

fn app() -> Router {
    let db = temp_db();
    let args = [
        "gateway",
        "--llm-provider",
        "mock",
        "--gateway-rate-rps",
        "1000000",
        "--gateway-rate-burst",
        "1000000",
        "--gateway-db",
        db.to_str().unwrap(),
    ];
    let config = Config::try_parse_from(args).unwrap();
    config.validate().unwrap();
    stack::app(&config).unwrap()
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A full, valid call to `route`: every field it knows, so a change to one
/// reaches that field's own parsing.
fn valid_call(route: &str) -> Value {
    if route == "/v1/responses" {
        return json!({
            "model": "mock-1", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.5,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                {"role": "user", "content": "Thanks."}
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": "auto", "text": {"format": {"type": "text"}}, "store": false
        });
    }
    if route.starts_with("/v1/messages") {
        return json!({
            "model": "mock-1", "max_tokens": 50,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather",
                    "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]},
                {"role": "user", "content": "Thanks."}
            ],
            "tools": [{"name": "get_weather", "description": "d",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "auto"}, "temperature": 0.5, "top_p": 0.9, "top_k": 5,
            "stop_sequences": ["END"], "metadata": {"user_id": "u"}
        });
    }
    let mut call = json!({
        "model": "mock-1", "agent_id": "prop",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto", "max_tokens": 50, "temperature": 0.5, "top_p": 0.9, "seed": 1,
        "stop": ["END"], "response_format": {"type": "text"}, "user": "u"
    });
    if route == "/v1/chat/completions" {
        // OpenAI's API names the caller with `user`; agent ids travel in a header.
        call.as_object_mut().unwrap().remove("agent_id");
    }
    call
}

const FIELDS: [&str; 26] = [
    "input",
    "instructions",
    "max_output_tokens",
    "text",
    "system",
    "stop_sequences",
    "top_k",
    "metadata",
    "model",
    "agent_id",
    "messages",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "response_format",
    "user",
    "stream",
    "n",
    "parallel_tool_calls",
    "stream_options",
    "unknown_field",
];
const MESSAGE_FIELDS: [&str; 6] = ["role", "content", "tool_calls", "tool_call_id", "name", "extra"];
/// What is in an Anthropic message's content blocks.
const BLOCK_FIELDS: [&str; 8] = [
    "type",
    "text",
    "source",
    "id",
    "input",
    "tool_use_id",
    "content",
    "name",
];

/// A valid call to `route` with one of its fields, one message's, or
/// (Anthropic's) one content block's, set to `value`.
fn changed_call(route: &'static str) -> impl Strategy<Value = Value> {
    let change = (0..3usize, any::<prop::sample::Index>(), 0..4usize, any_json());
    change.prop_map(move |(depth, field, message, value)| {
        let mut call = valid_call(route);
        match depth {
            0 => call[*field.get(&FIELDS)] = value,
            1 if call.get("input").is_some() => call["input"][message][*field.get(&MESSAGE_FIELDS)] = value,
            1 => call["messages"][message][*field.get(&MESSAGE_FIELDS)] = value,
            _ => {
                let list = if call.get("input").is_some() {
                    "input"
                } else {
                    "messages"
                };
                match call[list][message]["content"].as_array_mut() {
                    Some(blocks) => blocks[0][*field.get(&BLOCK_FIELDS)] = value,
                    None => call[list][message]["content"] = value,
                }
            }
        }
        call
    })
}

/// Sends `body` to `route` and checks the answer: 200 with a readable body,
/// or a 4xx whose body is a JSON error with a message.
async fn answers_sanely(app: &Router, route: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let request = Request::post(route)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    prop_assert!(
        status == StatusCode::OK || status.is_client_error(),
        "{route}: {status} {text}"
    );
    if status.is_client_error() {
        let error: Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert!(error["error"]["message"].is_string(), "{route}: {text}");
    }
    Ok(())
}

fn check<S: Strategy<Value = Vec<u8>>>(cases: u32, strategy: impl Fn(&'static str) -> S) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async { app() });
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let calls = prop::sample::select(&ROUTES[..]).prop_flat_map(|route| (Just(route), strategy(route)));
    proptest!(config, |((route, body) in calls)| {
        runtime.block_on(answers_sanely(&app, route, body))?;
    });
}

#[test]
fn any_json_body_gets_a_call_or_a_4xx_on_every_chat_route() {
    check(256, |_| any_json().prop_map(|v| v.to_string().into_bytes()));
}

#[test]
fn a_valid_call_with_any_field_changed_gets_a_call_or_a_4xx_on_every_chat_route() {
    check(512, |route| {
        changed_call(route).prop_map(|v| v.to_string().into_bytes())
    });
}

#[test]
fn any_bytes_get_a_4xx_on_every_chat_route() {
    check(128, |_| prop::collection::vec(any::<u8>(), 0..256));
}

#[tokio::test]
async fn the_call_the_changes_start_from_is_served_on_every_chat_route() {
    let app = app();
    for route in ROUTES {
        let request = Request::post(route)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(valid_call(route).to_string()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, StatusCode::OK, "{route}: {}", String::from_utf8_lossy(&bytes));
    }
}
