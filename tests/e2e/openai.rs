//! OpenAI's wire format against a fake upstream.

use serde_json::{json, Value};

use crate::support::*;

const KEY: &str = OPENAI_KEY;

fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 15, "completion_tokens": 8, "total_tokens": 23}
    })
}

fn chunk(content: &str) -> String {
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
    });
    format!("data: {chunk}\r\n\r\n")
}

fn usage_chunk() -> String {
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18", "choices": [],
        "usage": {"prompt_tokens": 15, "completion_tokens": 8, "total_tokens": 23}
    });
    format!("data: {chunk}\r\n\r\n")
}

fn stream_body(parts: &[&str]) -> String {
    let role = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
    let mut body = format!("data: {role}\r\n\r\n");
    parts.iter().for_each(|p| body.push_str(&chunk(p)));
    body
}

/// gpt-4o-mini at 0.15 / 0.60 USD per million tokens.
const COST_15_8: f64 = (15.0 * 0.15 + 8.0 * 0.60) / 1e6;

#[tokio::test]
async fn a_complete_call_is_priced_and_sent_in_openai_format() {
    let fake = FakeUpstream::always(Reply::json(200, completion("Hello! How can I help?"))).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let response = gateway.post("/v1/chat").json(&hello(None)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cost_header: f64 = response.headers()["x-gateway-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"], "Hello! How can I help?");
    assert_eq!(
        (body["provider"].as_str(), body["model"].as_str()),
        (Some("openai"), Some("gpt-4o-mini"))
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 15, "completion_tokens": 8, "total_tokens": 23})
    );
    assert_close(body["cost_usd"].as_f64().unwrap(), COST_15_8);
    assert_close(cost_header, COST_15_8);

    let sent = fake.last();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "You are helpful."})
    );
    assert_eq!(sent.body["max_completion_tokens"], 256);
    assert_eq!(sent.body["stream"], false);
    assert!(sent.body.get("stream_options").is_none());
}

#[tokio::test]
async fn a_stream_split_across_reads_with_crlf_arrives_whole() {
    let mut body = stream_body(&["Hel", "lo", "! ✓"]);
    body.push_str(&usage_chunk());
    body.push_str("data: [DONE]\r\n\r\n");
    let fake = FakeUpstream::always(Reply::sse(&body, 7)).await;
    let gateway = Gateway::openai(&fake, &[]).await;

    let frames = gateway.stream(hello(Some("gpt-4o-mini"))).await.frames();
    let cost = assert_whole(&frames, "Hello! ✓", 15, 8);
    assert_close(cost, COST_15_8);
    assert_eq!(
        frames[0],
        json!({"content": "Hel", "model": "gpt-4o-mini", "provider": "openai"})
    );

    let sent = fake.last();
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_with_an_error_frame() {
    let mut body = stream_body(&["Hel"]);
    body.push_str("data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n");
    let fake = FakeUpstream::always(Reply::sse(&body, 64)).await;
    let frames = Gateway::openai(&fake, &[]).await.stream(hello(None)).await.frames();
    let message = assert_cut(&frames, "Hel");
    assert!(message.contains("The server had an error"), "{message}");
}

/// A key another project holds, echoed by a misbehaving upstream or proxy.
const FOREIGN_KEY: &str = "sk-proj-Qw3rTy6uIo9pAs2dFg5hJk8lZx1cVb4nM7qW0eR3tY6uI9oP";

fn error_event_quoting_keys() -> String {
    let message = format!("Incorrect API key provided: {KEY}; also tried {FOREIGN_KEY}.");
    format!(
        "data: {}\n\n",
        json!({"error": {"message": message, "type": "invalid_request_error"}})
    )
}

#[tokio::test]
async fn a_key_in_a_stream_error_event_never_reaches_the_client() {
    for before_text in [true, false] {
        let mut body = stream_body(if before_text { &[] } else { &["Hel"] });
        body.push_str(&error_event_quoting_keys());
        let fake = FakeUpstream::always(Reply::sse(&body, 40)).await;
        let gateway = Gateway::openai(&fake, &[]).await;
        let chat = gateway.post("/v1/chat/stream").json(&hello(None)).send().await.unwrap();
        let openai = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
        let compat = gateway.post("/v1/chat/completions").json(&openai).send().await.unwrap();
        for response in [chat, compat] {
            let text = response.text().await.unwrap();
            assert!(text.contains("Incorrect API key provided"), "{text}");
            assert!(
                !text.contains(KEY) && !text.contains(FOREIGN_KEY),
                "a key leaked: {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_stream_cut_before_done_is_an_error_not_a_success() {
    for framing in [Framing::Close, Framing::ChunkedCut] {
        let mut body = stream_body(&["Hel", "lo"]);
        body.push_str(&usage_chunk());
        let fake = FakeUpstream::always(Reply::sse(&body, 50).framing(framing)).await;
        let frames = Gateway::openai(&fake, &[]).await.stream(hello(None)).await.frames();
        let message = assert_cut(&frames, "Hello");
        assert!(message.contains("cut short"), "{framing:?}: {message}");
    }
}

#[tokio::test]
async fn a_non_json_5xx_is_a_502_on_both_endpoints() {
    let fake = FakeUpstream::always(Reply::whole(502, "text/html", "<html>Bad Gateway</html>")).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let (status, body) = gateway.chat(hello(None)).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["type"], "upstream_error");
    assert_eq!(body["error"]["attempts"][0]["status"], 502);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("<html>Bad Gateway</html>"));
    match gateway.stream(hello(None)).await {
        Streamed::Error(status, body) => {
            assert_eq!(status, 502);
            assert_eq!(body["error"]["type"], "upstream_error");
        }
        frames => panic!("expected a JSON error before the first chunk, got {frames:?}"),
    }
}

#[tokio::test]
async fn a_429_keeps_the_upstream_status_and_message() {
    let error = json!({"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "code": "rate_limit_exceeded"}});
    let fake = FakeUpstream::always(Reply::json(429, error)).await;
    let (status, body) = Gateway::openai(&fake, &[]).await.chat(hello(None)).await;
    assert_eq!(status, 502);
    let attempt = &body["error"]["attempts"][0];
    assert_eq!(
        (attempt["provider"].as_str(), attempt["status"].as_u64()),
        (Some("openai"), Some(429))
    );
    assert!(attempt["message"].as_str().unwrap().contains("Rate limit reached"));
}

#[tokio::test]
async fn an_upstream_bad_request_is_the_clients_400() {
    let error =
        json!({"error": {"message": "The model `gpt-4o-2099-01-01` does not exist", "type": "invalid_request_error"}});
    let fake = FakeUpstream::always(Reply::json(404, error)).await;
    let (status, body) = Gateway::openai(&fake, &[])
        .await
        .chat(hello(Some("gpt-4o-2099-01-01")))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request");
    assert!(body["error"]["message"].as_str().unwrap().contains("does not exist"));
}

#[tokio::test]
async fn the_key_never_appears_in_an_error() {
    let echo = format!("Incorrect API key provided: {KEY}. You can find your API key at ...");
    let fake = FakeUpstream::always(Reply::json(401, json!({"error": {"message": echo}}))).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let response = gateway.post("/v1/chat").json(&hello(None)).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(text.contains("Incorrect API key provided"), "{text}");
    assert!(!text.contains(KEY), "{text}");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_connect_error() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let gateway = Gateway::start(&[
        "--llm-provider",
        "openai",
        "--openai-api-key",
        KEY,
        "--openai-base-url",
        &base,
    ])
    .await;
    let (status, body) = gateway.chat(hello(None)).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["attempts"][0]["error"], "connect");
}

#[tokio::test]
async fn an_endless_line_or_a_huge_answer_from_upstream_is_an_error_not_unbounded_memory() {
    let endless = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}",
        "x".repeat(2 << 20)
    );
    let huge = format!("{{\"padding\":\"{}\"}}", " ".repeat(17 << 20));
    let fake = FakeUpstream::start(move |request| match request.body["stream"] == true {
        true => Reply::sse(&endless, 64 * 1024),
        false => Reply::whole(200, "application/json", huge.clone()),
    })
    .await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let (status, body) = gateway.chat(hello(None)).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
    let response = gateway.post("/v1/chat/stream").json(&hello(None)).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let error: serde_json::Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"].as_str().unwrap().contains("longer than"),
        "{error}"
    );
}
