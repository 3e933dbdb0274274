//! Failover, circuit breaking, timeouts and the rate limit, over real HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn openai_answer(text: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
    )
}

fn openai_sse(parts: &[&str], done: bool) -> String {
    let mut body = String::new();
    for part in parts {
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": part}, "finish_reason": null}]});
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    if done {
        body.push_str(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        );
    }
    body
}

fn down() -> Reply {
    Reply::whole(503, "text/plain", "upstream unavailable")
}

#[tokio::test]
async fn a_complete_call_fails_over_to_a_pinned_fallback() {
    let primary = FakeUpstream::always(down()).await;
    let answer = json!({"id": "msg", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "from claude"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 3}});
    let fallback = FakeUpstream::always(Reply::json(200, answer)).await;
    let gateway = Gateway::openai(
        &primary,
        &[
            "--llm-fallbacks",
            "anthropic:claude-sonnet-4-5",
            "--anthropic-api-key",
            "sk-ant-test-123456",
            "--anthropic-base-url",
            &fallback.url,
        ],
    )
    .await;
    let (status, body) = gateway.chat(hello(Some("gpt-4o"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["provider"].as_str(), body["model"].as_str()),
        (Some("anthropic"), Some("claude-sonnet-4-5"))
    );
    assert_eq!(
        primary.last().body["model"],
        "gpt-4o",
        "the request's model is for the primary"
    );
    assert_eq!(fallback.last().body["model"], "claude-sonnet-4-5");
}

#[tokio::test]
async fn a_stream_that_breaks_before_its_first_chunk_fails_over() {
    let primary = FakeUpstream::always(Reply::sse(&openai_sse(&[], false), 8).framing(Framing::Close)).await;
    let gateway = Gateway::openai(&primary, &["--llm-fallbacks", "mock"]).await;
    let frames = gateway.stream(hello(None)).await.frames();
    assert_eq!(frames[0]["provider"], "mock");
    assert_whole(&frames, "Hello from the mock provider! You said: Hello", 6, 12);
}

#[tokio::test]
async fn a_stream_that_breaks_after_text_reached_the_client_is_not_failed_over() {
    let primary = FakeUpstream::always(Reply::sse(&openai_sse(&["Hel"], false), 8).framing(Framing::Close)).await;
    let gateway = Gateway::openai(&primary, &["--llm-fallbacks", "mock"]).await;
    let frames = gateway.stream(hello(None)).await.frames();
    assert_eq!(frames[0]["provider"], "openai");
    assert_cut(&frames, "Hel");
}

#[tokio::test]
async fn the_breaker_opens_skips_the_dead_provider_then_closes_after_a_probe() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let primary = FakeUpstream::start(move |_| match counted.fetch_add(1, Ordering::SeqCst) {
        0 | 1 => down(),
        _ => openai_answer("back"),
    })
    .await;
    let gateway = Gateway::openai(
        &primary,
        &[
            "--llm-fallbacks",
            "mock",
            "--circuit-failure-threshold",
            "2",
            "--circuit-reset-time-ms",
            "300",
            // Each failure counts once: no retry on the same provider first.
            "--llm-retries",
            "0",
        ],
    )
    .await;
    for _ in 0..4 {
        let (status, body) = gateway.chat(hello(None)).await;
        assert_eq!((status.as_u16(), body["provider"].as_str()), (200, Some("mock")));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "an open circuit sends nothing upstream"
    );

    // Once the reset time has passed, the next call is the probe; until then
    // calls go to the fallback without reaching the primary.
    let probed = loop {
        let (_, body) = gateway.chat(hello(None)).await;
        if body["provider"] == "openai" {
            break body;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "nothing reaches an open circuit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(probed["content"], "back", "the probe succeeded");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one probe");
    let (_, body) = gateway.chat(hello(None)).await;
    assert_eq!(body["provider"], "openai", "and the circuit is closed");
    let metrics = gateway.get("/metrics").send().await.unwrap().text().await.unwrap();
    for (to, times) in [("open", 1), ("half_open", 1), ("closed", 1)] {
        let line = format!("gateway_circuit_transitions_total{{provider=\"openai\",to=\"{to}\"}} {times}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn all_circuits_open_is_a_503_with_retry_after() {
    let primary = FakeUpstream::always(down()).await;
    let gateway = Gateway::openai(&primary, &["--circuit-failure-threshold", "1"]).await;
    assert_eq!(gateway.chat(hello(None)).await.0, 502);
    let response = gateway.post("/v1/chat").json(&hello(None)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "60");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "unavailable");
}

#[tokio::test]
async fn a_silent_upstream_is_a_504_or_fails_over() {
    let primary = FakeUpstream::always(openai_answer("late").delay(Duration::from_secs(5))).await;
    let alone = Gateway::openai(&primary, &["--llm-timeout-ms", "200"]).await;
    let (status, body) = alone.chat(hello(None)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["type"].as_str()),
        (504, Some("upstream_timeout"))
    );

    let backed = Gateway::openai(&primary, &["--llm-timeout-ms", "200", "--llm-fallbacks", "mock"]).await;
    let (status, body) = backed.chat(hello(None)).await;
    assert_eq!((status.as_u16(), body["provider"].as_str()), (200, Some("mock")));
}

#[tokio::test]
async fn a_stalled_stream_ends_with_a_timeout_frame() {
    let body = openai_sse(&["Hel", "lo"], true);
    let primary = FakeUpstream::always(Reply::sse(&body, body.len() / 3 + 1).stall_after(1)).await;
    let gateway = Gateway::openai(&primary, &["--llm-timeout-ms", "300"]).await;
    let frames = gateway.stream(hello(None)).await.frames();
    let last = frames.last().unwrap();
    assert_eq!(last["error"]["type"], "upstream_timeout", "{frames:?}");
    assert_eq!(Streamed::text(&frames), "Hel");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_the_real_wait_and_headers() {
    let gateway = Gateway::start(&[
        "--llm-provider",
        "mock",
        "--gateway-rate-rps",
        "0.5",
        "--gateway-rate-burst",
        "2",
    ])
    .await;
    for remaining in ["1", "0"] {
        let response = gateway.post("/v1/chat").json(&hello(None)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "2");
        assert_eq!(response.headers()["x-ratelimit-remaining-requests"], remaining);
    }
    let response = gateway.post("/v1/chat/stream").json(&hello(None)).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limited");
}

#[tokio::test]
async fn per_agent_limits_keep_agents_apart() {
    let gateway = Gateway::start(&[
        "--llm-provider",
        "mock",
        "--gateway-rate-rps",
        "0.1",
        "--gateway-rate-burst",
        "1",
        "--gateway-rate-key",
        "agent",
    ])
    .await;
    let as_agent = |agent: &str| {
        let mut body = hello(None);
        body["agent_id"] = agent.into();
        body
    };
    assert_eq!(gateway.chat(as_agent("a")).await.0, 200);
    assert_eq!(gateway.chat(as_agent("a")).await.0, 429);
    assert_eq!(gateway.chat(as_agent("b")).await.0, 200);
}
