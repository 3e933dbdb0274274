//! Anthropic's Messages API against a fake upstream.

use serde_json::{json, Value};

use crate::support::*;

const KEY: &str = "sk-ant-test-0123456789";

async fn gateway(fake: &FakeUpstream) -> Gateway {
    Gateway::start(&[
        "--llm-provider",
        "anthropic",
        "--anthropic-api-key",
        KEY,
        "--anthropic-base-url",
        &fake.url,
    ])
    .await
}

/// claude-3-5-haiku at 0.80 / 4.00 USD per million tokens.
fn haiku(input: f64, output: f64) -> f64 {
    (input * 0.80 + output * 4.00) / 1e6
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn start_and_deltas(parts: &[&str]) -> String {
    let mut body = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "model": "claude-3-5-haiku-20241022", "stop_reason": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    );
    body.push_str(&event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    body.push_str(&event("ping", json!({"type": "ping"})));
    for part in parts {
        body.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}),
        ));
    }
    body
}

fn ending() -> String {
    let mut body = event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    body.push_str(&event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 15}}),
    ));
    body.push_str(&event("message_stop", json!({"type": "message_stop"})));
    body
}

#[tokio::test]
async fn a_complete_call_sends_system_on_top_and_always_max_tokens() {
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "Hello! "}, {"type": "text", "text": "How can I help?"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 25, "output_tokens": 10}
    });
    let fake = FakeUpstream::always(Reply::json(200, answer)).await;
    let gateway = gateway(&fake).await;
    let mut request = hello(None);
    request.as_object_mut().unwrap().remove("max_tokens");
    let (status, body) = gateway.chat(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], "Hello! How can I help?");
    assert_eq!(
        (body["provider"].as_str(), body["model"].as_str()),
        (Some("anthropic"), Some("claude-3-5-haiku-latest"))
    );
    assert_eq!(body["usage"]["total_tokens"], 35);
    assert_close(body["cost_usd"].as_f64().unwrap(), haiku(25.0, 10.0));

    let sent = fake.last();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert!(sent.header("authorization").is_none());
    assert_eq!(sent.body["system"], "You are helpful.");
    assert_eq!(sent.body["messages"], json!([{"role": "user", "content": "Hello"}]));
    assert_eq!(sent.body["max_tokens"], 4096);
}

#[tokio::test]
async fn a_stream_of_typed_events_split_across_reads_arrives_whole() {
    let body = start_and_deltas(&["Hel", "lo", "!"]) + &ending();
    let fake = FakeUpstream::always(Reply::sse(&body, 5)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    let cost = assert_whole(&frames, "Hello!", 25, 15);
    assert_close(cost, haiku(25.0, 15.0));
    let sent = fake.last();
    assert_eq!(
        (sent.body["stream"].as_bool(), sent.body["max_tokens"].as_u64()),
        (Some(true), Some(256))
    );
}

#[tokio::test]
async fn cache_tokens_count_as_input() {
    let body = start_and_deltas(&["Hi"]).replace(
        r#""input_tokens":25,"output_tokens":1"#,
        r#""cache_creation_input_tokens":100,"cache_read_input_tokens":50,"input_tokens":25,"output_tokens":1"#,
    ) + &ending();
    let fake = FakeUpstream::always(Reply::sse(&body, 4096)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    assert_whole(&frames, "Hi", 175, 15);
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_with_an_error_frame() {
    let body = start_and_deltas(&["Hel"])
        + &event(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
    let fake = FakeUpstream::always(Reply::sse(&body, 33)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    let message = assert_cut(&frames, "Hel");
    assert!(message.contains("overloaded_error: Overloaded"), "{message}");
}

#[tokio::test]
async fn a_stream_cut_before_message_stop_is_an_error() {
    let body = start_and_deltas(&["Hel", "lo"]);
    let fake = FakeUpstream::always(Reply::sse(&body, 40).framing(Framing::Close)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    assert_cut(&frames, "Hello");
}

#[tokio::test]
async fn overloaded_529_and_non_json_5xx_are_502s() {
    let overloaded = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let fake = FakeUpstream::always(Reply::json(529, overloaded)).await;
    let (status, body) = gateway(&fake).await.chat(hello(None)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["attempts"][0]["status"].as_u64()),
        (502, Some(529))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("Overloaded"));

    let fake = FakeUpstream::always(Reply::whole(503, "text/plain", "upstream connect error")).await;
    match gateway(&fake).await.stream(hello(None)).await {
        Streamed::Error(status, body) => {
            assert_eq!(status, 502);
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("upstream connect error"));
        }
        frames => panic!("expected a JSON error, got {frames:?}"),
    }
}

#[tokio::test]
async fn a_429_is_reported_with_its_status() {
    let limited = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}});
    let fake = FakeUpstream::always(Reply::json(429, limited)).await;
    let (status, body) = gateway(&fake).await.chat(hello(None)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["attempts"][0]["status"].as_u64()),
        (502, Some(429))
    );
}
