//! OpenRouter: OpenAI's format plus keep-alive comments, cost accounting and attribution.

use serde_json::{json, Value};

use crate::support::*;

const KEY: &str = "sk-or-v1-test-0123456789";
const REPORTED_COST: f64 = 0.000_042;

async fn gateway(fake: &FakeUpstream) -> Gateway {
    let base = format!("{}/api/v1", fake.url);
    Gateway::start(&[
        "--llm-provider",
        "openrouter",
        "--openrouter-api-key",
        KEY,
        "--openrouter-base-url",
        &base,
        "--openrouter-site-url",
        "https://example.com",
        "--openrouter-app-name",
        "Chrysalis tests",
    ])
    .await
}

fn chunk(delta: Value, usage: Option<Value>) -> String {
    let mut chunk = json!({"id": "gen-1", "provider": "OpenAI", "model": "openai/gpt-4o-mini",
        "object": "chat.completion.chunk", "created": 1_700_000_000,
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    if let Some(usage) = usage {
        chunk["choices"] = json!([]);
        chunk["usage"] = usage;
    }
    format!("data: {chunk}\n\n")
}

fn usage() -> Value {
    json!({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "cost": REPORTED_COST,
        "prompt_tokens_details": {"cached_tokens": 0}})
}

#[tokio::test]
async fn the_upstreams_reported_cost_wins_and_attribution_is_sent() {
    let answer = json!({"id": "gen-1", "provider": "OpenAI", "model": "openai/gpt-4o-mini", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
        "usage": usage()});
    let fake = FakeUpstream::always(Reply::json(200, answer)).await;
    let (status, body) = gateway(&fake).await.chat(hello(None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["provider"].as_str(), body["model"].as_str()),
        (Some("openrouter"), Some("openai/gpt-4o-mini"))
    );
    assert_close(body["cost_usd"].as_f64().unwrap(), REPORTED_COST);

    let sent = fake.last();
    assert_eq!(sent.path, "/api/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.header("http-referer"), Some("https://example.com"));
    assert_eq!(sent.header("x-title"), Some("Chrysalis tests"));
    assert_eq!(sent.body["usage"], json!({"include": true}));
    assert_eq!(sent.body["max_tokens"], 256);
}

#[tokio::test]
async fn keep_alive_comments_and_split_frames_do_not_disturb_the_stream() {
    let mut body = String::from(": OPENROUTER PROCESSING\n\n");
    body.push_str(&chunk(json!({"role": "assistant", "content": "Hel"}), None));
    body.push_str(": OPENROUTER PROCESSING\n\n");
    body.push_str(&chunk(json!({"content": "lo"}), None));
    body.push_str(&chunk(json!({}), Some(usage())));
    body.push_str("data: [DONE]\n\n");
    let fake = FakeUpstream::always(Reply::sse(&body, 9)).await;
    let frames = gateway(&fake)
        .await
        .stream(hello(Some("openai/gpt-4o-mini")))
        .await
        .frames();
    let cost = assert_whole(&frames, "Hello", 12, 3);
    assert_close(cost, REPORTED_COST);
}

#[tokio::test]
async fn without_a_reported_cost_the_vendors_price_applies() {
    let body = chunk(json!({"content": "Hi"}), None)
        + &chunk(
            json!({}),
            Some(json!({"prompt_tokens": 1_000_000, "completion_tokens": 0})),
        )
        + "data: [DONE]\n\n";
    let fake = FakeUpstream::always(Reply::sse(&body, 4096)).await;
    let frames = gateway(&fake)
        .await
        .stream(hello(Some("openai/gpt-4o-mini")))
        .await
        .frames();
    assert_close(assert_whole(&frames, "Hi", 1_000_000, 0), 0.15);
}

#[tokio::test]
async fn a_mid_stream_error_chunk_ends_with_an_error_frame() {
    let error = json!({"id": "gen-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "openai/gpt-4o-mini",
        "provider": "OpenAI", "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]});
    let body = chunk(json!({"content": "Hel"}), None) + &format!("data: {error}\n\n");
    let fake = FakeUpstream::always(Reply::sse(&body, 16)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    let message = assert_cut(&frames, "Hel");
    assert!(message.contains("Provider disconnected unexpectedly"), "{message}");
}

#[tokio::test]
async fn a_stream_cut_before_done_is_an_error() {
    let body = String::from(": OPENROUTER PROCESSING\n\n") + &chunk(json!({"content": "Hel"}), None);
    let fake = FakeUpstream::always(Reply::sse(&body, 10).framing(Framing::ChunkedCut)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    assert_cut(&frames, "Hel");
}

#[tokio::test]
async fn a_402_out_of_credits_and_a_non_json_5xx_are_502s() {
    let credits = json!({"error": {"code": 402, "message": "Insufficient credits"}});
    let fake = FakeUpstream::always(Reply::json(402, credits)).await;
    let (status, body) = gateway(&fake).await.chat(hello(None)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["attempts"][0]["status"].as_u64()),
        (502, Some(402))
    );

    let fake = FakeUpstream::always(Reply::whole(500, "text/plain", "Internal Server Error")).await;
    let (status, body) = gateway(&fake).await.chat(hello(None)).await;
    assert_eq!(status, 502);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Internal Server Error"));
}
