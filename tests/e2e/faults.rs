//! Each fault a real provider shows, injected by a fake OpenAI upstream
//! steered by model name, and what the client then sees: the answer or the
//! error (with its attempts), how many calls reached the provider, how long
//! it took, and that the next call is served.

use std::time::Duration;

use tokio::time::Instant;

use serde_json::{json, Value};

use crate::support::*;

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

const ROLE: &str = r#"{"role": "assistant", "content": ""}"#;
const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n";

fn whole_answer() -> Reply {
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
    )
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "code": code}}),
    )
}

/// A stream of `parts`, each its own write; `stall` stops after that many.
fn stream(parts: Vec<String>, stall: Option<usize>) -> Reply {
    let mut reply = Reply::sse("", 1);
    reply.parts = parts.into_iter().map(String::into_bytes).collect();
    reply.stall_after = stall;
    reply
}

/// The fault a model name asks for, on its `nth` call.
fn fault(model: &str, nth: usize) -> Reply {
    let role = chunk(serde_json::from_str(ROLE).unwrap(), None);
    let hel = chunk(json!({"content": "Hel"}), None);
    match (model, nth) {
        ("rate-limited", 0) => error(429, "rate_limit_exceeded", "slow down").header("retry-after-ms", "50"),
        ("rate-limited-bare", 0) => error(429, "rate_limit_exceeded", "slow down"),
        ("flaky", 0) => Reply::whole(500, "text/plain", "internal error"),
        ("reset", 0) => Reply::reset(),
        ("silent", _) => whole_answer().delay(Duration::from_secs(30)),
        ("slow-first", _) => stream(vec![role, hel], Some(1)),
        ("stall", _) => stream(vec![role + &hel, chunk(json!({"content": "lo"}), None)], Some(1)),
        ("malformed", _) => stream(vec![role + &hel, "data: {\"choices\": [{\"delta\": \n\n".into()], None),
        ("no-done", _) => stream(vec![role + &hel, chunk(json!({}), Some("stop")) + USAGE], None),
        ("no-done-no-finish", _) => stream(vec![role + &hel], None),
        ("too-long", _) => error(
            400,
            "context_length_exceeded",
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130001 tokens.",
        ),
        ("filtered", _) => error(
            400,
            "content_policy_violation",
            "Your request was rejected as a result of our safety system.",
        ),
        (_, _) if model.ends_with("stream") => stream(
            vec![role + &hel, chunk(json!({}), Some("stop")) + USAGE + "data: [DONE]\n\n"],
            None,
        ),
        _ => whole_answer(),
    }
}

async fn fake() -> FakeUpstream {
    let calls = std::sync::Mutex::new(std::collections::HashMap::<String, usize>::new());
    FakeUpstream::start(move |request| {
        let model = request.body["model"].as_str().unwrap_or_default().to_owned();
        let mut calls = calls.lock().unwrap();
        let nth = calls.entry(model.clone()).or_default();
        *nth += 1;
        fault(&model, *nth - 1)
    })
    .await
}

fn calls_for(fake: &FakeUpstream, model: &str) -> usize {
    fake.requests().iter().filter(|r| r.body["model"] == model).count()
}

fn ask(model: &str) -> Value {
    let mut body = hello(Some(model));
    body["agent_id"] = "faults".into();
    body
}

async fn gateway(fake: &FakeUpstream, extra: &[&str]) -> Gateway {
    let mut args = vec!["--llm-unpriced-models", "allow", "--llm-retry-backoff-ms", "1"];
    args.extend_from_slice(extra);
    Gateway::openai(fake, &args).await
}

async fn healthy_afterwards(gateway: &Gateway) {
    let (status, body) = gateway.chat(ask("healthy")).await;
    assert_eq!(
        (status.as_u16(), body["content"].as_str()),
        (200, Some("fine")),
        "{body}"
    );
}

#[tokio::test]
async fn what_can_succeed_on_a_second_try_is_tried_again_on_the_same_provider_and_counted() {
    let fake = fake().await;
    let gateway = gateway(&fake, &["--llm-fallbacks", "mock"]).await;
    for model in ["rate-limited", "rate-limited-bare", "flaky", "reset"] {
        let (status, body) = gateway.chat(ask(model)).await;
        assert_eq!(
            (status.as_u16(), body["provider"].as_str()),
            (200, Some("openai")),
            "{model}: {body}"
        );
        assert_eq!(calls_for(&fake, model), 2, "{model}: one retry, no failover");
    }
    let metrics = gateway.get("/metrics").send().await.unwrap().text().await.unwrap();
    for (reason, times) in [("429", 2), ("500", 1), ("connect", 1), ("503", 0)] {
        let line = format!("gateway_retries_total{{provider=\"openai\",reason=\"{reason}\"}} {times}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    let providers: Value = gateway.get("/v1/providers").send().await.unwrap().json().await.unwrap();
    assert_eq!(providers["providers"][0]["retries"], json!({"max": 1, "made": 4}));
    healthy_afterwards(&gateway).await;
}

#[tokio::test]
async fn a_failure_after_its_retries_lists_every_try() {
    let fake = FakeUpstream::always(Reply::whole(503, "text/plain", "overloaded")).await;
    let gateway = gateway(&fake, &["--llm-retries", "2"]).await;
    let (status, body) = gateway.chat(ask("healthy")).await;
    assert_eq!(status, 502, "{body}");
    let attempts = body["error"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{body}");
    assert!(
        attempts.iter().all(|a| a["provider"] == "openai" && a["status"] == 503),
        "{body}"
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_provider_that_never_answers_fails_over_at_its_first_token_deadline() {
    let fake = fake().await;
    let gateway = gateway(
        &fake,
        &["--llm-first-token-timeout-ms", "300", "--llm-fallbacks", "mock"],
    )
    .await;
    let started = Instant::now();
    let (status, body) = gateway.chat(ask("silent")).await;
    let took = started.elapsed();
    assert_eq!(
        (status.as_u16(), body["provider"].as_str()),
        (200, Some("mock")),
        "{body}"
    );
    assert_eq!(calls_for(&fake, "silent"), 1, "a timeout is not retried");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );

    let alone = gateway_alone(&fake).await;
    let (status, body) = alone.chat(ask("silent")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["attempts"][0]["error"], "timeout");
    healthy_afterwards(&gateway).await;
}

async fn gateway_alone(fake: &FakeUpstream) -> Gateway {
    gateway(
        fake,
        &["--llm-first-token-timeout-ms", "300", "--llm-stall-timeout-ms", "300"],
    )
    .await
}

#[tokio::test]
async fn a_stream_whose_first_text_is_late_fails_over_and_one_that_stalls_mid_way_is_cut() {
    let fake = fake().await;
    let gateway = gateway(
        &fake,
        &[
            "--llm-first-token-timeout-ms",
            "300",
            "--llm-stall-timeout-ms",
            "300",
            "--llm-fallbacks",
            "mock",
        ],
    )
    .await;
    let frames = gateway.stream(ask("slow-first")).await.frames();
    assert_eq!(frames[0]["provider"], "mock", "nothing reached the client: failed over");
    assert!(frames.last().unwrap().get("error").is_none(), "{frames:?}");

    let frames = gateway.stream(ask("stall")).await.frames();
    assert_eq!(frames[0]["provider"], "openai");
    assert_eq!(Streamed::text(&frames), "Hel");
    let last = frames.last().unwrap();
    assert_eq!(
        last["error"]["type"], "upstream_timeout",
        "text reached the client: cut, not failed over: {last}"
    );
    healthy_afterwards(&gateway).await;
}

#[tokio::test]
async fn a_malformed_chunk_ends_the_stream_with_an_error_and_nothing_garbled() {
    let fake = fake().await;
    let gateway = gateway(&fake, &[]).await;
    let frames = gateway.stream(ask("malformed")).await.frames();
    let last = frames.last().unwrap();
    assert_eq!(Streamed::text(&frames), "Hel", "{frames:?}");
    assert_eq!(last["error"]["type"], "upstream_error", "{last}");
    let frames = gateway.stream(ask("healthy-stream")).await.frames();
    assert_whole(&frames, "Hel", 5, 2);
}

#[tokio::test]
async fn a_clean_end_without_done_is_whole_only_when_its_last_chunk_said_so() {
    let fake = fake().await;
    let gateway = gateway(&fake, &[]).await;
    let frames = gateway.stream(ask("no-done")).await.frames();
    assert_whole(&frames, "Hel", 5, 2);
    let frames = gateway.stream(ask("no-done-no-finish")).await.frames();
    assert_cut(&frames, "Hel");
}

#[tokio::test]
async fn context_length_and_content_policy_refusals_come_back_at_once_with_their_code() {
    let fake = fake().await;
    let gateway = gateway(&fake, &["--llm-fallbacks", "mock"]).await;
    for (model, code) in [
        ("too-long", "context_length_exceeded"),
        ("filtered", "content_policy_violation"),
    ] {
        let mut openai_body = ask(model);
        openai_body.as_object_mut().unwrap().remove("agent_id");
        let response = gateway
            .post("/v1/chat/completions")
            .json(&openai_body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("tokens") || model == "filtered",
            "{body}"
        );
        assert_eq!(calls_for(&fake, model), 1, "{model}: neither retried nor failed over");
        let (status, body) = gateway.chat(ask(model)).await;
        assert_eq!(
            (status.as_u16(), body["error"]["type"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    healthy_afterwards(&gateway).await;
}

#[tokio::test]
async fn a_prompt_too_long_for_its_model_fails_over_to_a_fallback_with_a_larger_window() {
    let openai = FakeUpstream::always(fault("too-long", 0)).await;
    let claude_answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "read it all"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 130001, "output_tokens": 3}});
    let anthropic = FakeUpstream::always(Reply::json(200, claude_answer)).await;
    let gateway = Gateway::openai_then_anthropic(&openai, &anthropic, "claude-sonnet-4-5", &[]).await;
    let (status, body) = gateway.chat(ask("gpt-4o-mini")).await;
    assert_eq!(
        (status.as_u16(), body["provider"].as_str()),
        (200, Some("anthropic")),
        "{body}"
    );
    assert_eq!(openai.requests().len(), 1, "the refusal is not retried");
    assert_eq!(anthropic.last().body["model"], "claude-sonnet-4-5");
}
