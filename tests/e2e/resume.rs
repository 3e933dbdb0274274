//! `LLM_STREAM_RESUME=prefill`: a stream cut after its text reached the
//! client is finished by the next provider that continues an assistant
//! prefill, spliced into the same stream, and charged for both parts.

use serde_json::{json, Value};

use crate::support::*;

fn text_chunks(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|part| {
            let chunk = json!({"choices": [{"index": 0, "delta": {"content": part}, "finish_reason": null}]});
            format!("data: {chunk}\n\n")
        })
        .collect()
}

/// An OpenAI stream that sends `parts` and then breaks off.
fn cut_after(parts: &[&str]) -> Reply {
    Reply::sse(&text_chunks(parts), 9).framing(Framing::ChunkedCut)
}

async fn usage(gateway: &Gateway) -> Value {
    gateway.get("/v1/usage").send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_stream_cut_after_text_is_finished_by_the_next_provider_once_in_order_and_charged_for_both() {
    let openai = FakeUpstream::always(cut_after(&["Hello from", " the m"])).await;
    let gateway = Gateway::openai(&openai, &["--llm-fallbacks", "mock", "--llm-stream-resume", "prefill"]).await;
    let frames = gateway.stream(hello(None)).await.frames();
    assert_eq!(
        Streamed::text(&frames),
        "Hello from the mock provider! You said: Hello",
        "the whole answer, once, in order: {frames:?}"
    );
    assert_eq!(frames[0]["provider"], "openai");
    let last = frames.last().unwrap();
    assert!(last.get("error").is_none(), "{last}");
    assert_eq!(
        (last["resumed"].as_bool(), last["resumed_by"].as_str()),
        (Some(true), Some("mock"))
    );
    // The cut part as the budget charges a cut: 21 prompt bytes and 16 of text at
    // four a token, at gpt-4o-mini's price; the mock's part is free.
    assert_close(last["cost_usd"].as_f64().unwrap(), (6.0 * 0.15 + 4.0 * 0.60) / 1e6);
    assert_eq!(openai.requests().len(), 1);
    let spent = usage(&gateway).await["day"]["spent_usd"].as_f64().unwrap();
    assert_close(spent, last["cost_usd"].as_f64().unwrap());
}

#[tokio::test]
async fn a_fallback_that_refuses_the_prefill_is_not_asked_again_and_the_client_gets_the_original_cut() {
    let openai = FakeUpstream::always(cut_after(&["Hel"])).await;
    let refusal = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "This model does not support assistant prefill"}});
    let anthropic = FakeUpstream::always(Reply::json(400, refusal)).await;
    let resume = ["--llm-stream-resume", "prefill"];
    let gateway = Gateway::openai_then_anthropic(&openai, &anthropic, "claude-3-5-haiku-latest", &resume).await;
    for round in 0..2 {
        let frames = gateway.stream(hello(None)).await.frames();
        let message = assert_cut(&frames, "Hel");
        assert!(
            message.starts_with("openai:"),
            "the original cut, not the refusal: {message}"
        );
        assert_eq!(
            anthropic.requests().len(),
            1,
            "round {round}: asked once, then remembered"
        );
    }
    let sent = anthropic.last().body;
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        json!({"role": "assistant", "content": "Hel"}),
        "asked to continue the text so far"
    );
}

#[tokio::test]
async fn openai_is_never_asked_to_continue_and_a_tool_call_is_never_resumed_half_way() {
    let cut_claude = format!(
        "event: message_start\ndata: {}\n\nevent: content_block_start\ndata: {}\n\nevent: content_block_delta\ndata: {}\n\n",
        json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [],
            "model": "claude-3-5-haiku-latest", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Par"}})
    );
    // Asked to continue (the same provider is tried again last), it refuses.
    let anthropic = FakeUpstream::start(move |request| {
        let last = request.body["messages"]
            .as_array()
            .and_then(|m| m.last().cloned())
            .unwrap_or_default();
        match last["role"].as_str() {
            Some("assistant") => Reply::json(
                400,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}),
            ),
            _ => Reply::sse(&cut_claude, 16).framing(Framing::ChunkedCut),
        }
    })
    .await;
    let openai = FakeUpstream::always(Reply::sse("data: [DONE]\n\n", 4)).await;
    let base = format!("{}/v1", openai.url);
    let gateway = Gateway::start(&[
        "--llm-provider",
        "anthropic",
        "--anthropic-api-key",
        ANTHROPIC_KEY,
        "--anthropic-base-url",
        &anthropic.url,
        "--llm-fallbacks",
        "openai",
        "--openai-api-key",
        OPENAI_KEY,
        "--openai-base-url",
        &base,
        "--llm-stream-resume",
        "prefill",
    ])
    .await;
    let frames = gateway.stream(hello(None)).await.frames();
    assert_cut(&frames, "Par");
    assert!(openai.requests().is_empty(), "OpenAI answers anew rather than continue");
    assert_eq!(anthropic.requests().len(), 2, "the cut call, then its own continuation");

    let call = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"ci"}}]}, "finish_reason": null}]});
    let half_call =
        FakeUpstream::always(Reply::sse(&format!("data: {call}\n\n"), 11).framing(Framing::ChunkedCut)).await;
    let gateway = Gateway::openai(
        &half_call,
        &["--llm-fallbacks", "mock", "--llm-stream-resume", "prefill"],
    )
    .await;
    let mut body = hello(None);
    body["tools"] =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let frames = gateway.stream(body).await.frames();
    let last = frames.last().unwrap();
    assert_eq!(last["error"]["type"], "upstream_error", "{last}");
    let providers: Value = gateway.get("/v1/providers").send().await.unwrap().json().await.unwrap();
    assert_eq!(
        providers["providers"][1]["calls"], 0,
        "the mock was not asked to finish a tool call"
    );
}
