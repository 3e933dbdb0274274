//! Ollama's NDJSON chat API against a fake upstream.

use serde_json::json;

use crate::support::*;

async fn gateway(fake: &FakeUpstream) -> Gateway {
    Gateway::start(&["--llm-provider", "ollama", "--ollama-base-url", &fake.url]).await
}

fn line(content: &str) -> String {
    let line = json!({"model": "llama3.2", "created_at": "2026-11-28T17:00:00Z",
        "message": {"role": "assistant", "content": content}, "done": false});
    format!("{line}\n")
}

fn done() -> String {
    json!({"model": "llama3.2", "created_at": "2026-11-28T17:00:01Z",
        "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
        "total_duration": 4_883_583_458u64, "load_duration": 1_334_875, "prompt_eval_count": 26,
        "prompt_eval_duration": 342_546_000, "eval_count": 4, "eval_duration": 4_535_599_000u64})
    .to_string()
}

#[tokio::test]
async fn a_complete_call_asks_for_no_stream_and_counts_tokens() {
    let answer = json!({"model": "llama3.2", "created_at": "2026-11-28T17:00:00Z",
        "message": {"role": "assistant", "content": "Hello!"}, "done": true, "done_reason": "stop",
        "prompt_eval_count": 26, "eval_count": 3});
    let fake = FakeUpstream::always(Reply::json(200, answer)).await;
    let (status, body) = gateway(&fake).await.chat(hello(None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], "Hello!");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29})
    );
    assert_eq!(body["cost_usd"], 0.0);

    let sent = fake.last();
    assert_eq!(sent.path, "/api/chat");
    assert_eq!(sent.body["stream"], false);
    assert_eq!(sent.body["model"], "llama3.2");
    assert_eq!(sent.body["options"]["num_predict"], 256);
    assert_eq!(sent.body["messages"][1], json!({"role": "user", "content": "Hello"}));
}

#[tokio::test]
async fn ndjson_split_across_reads_and_a_last_line_without_newline_arrive_whole() {
    let body = line("Hel") + &line("lo") + &line(" there") + &done();
    let fake = FakeUpstream::always(Reply::pieces("application/x-ndjson", &body, 6)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    assert_eq!(assert_whole(&frames, "Hello there", 26, 4), 0.0);
    assert_eq!(fake.last().body["stream"], true);
}

#[tokio::test]
async fn an_error_line_mid_stream_ends_with_an_error_frame() {
    let body = line("Hel") + "{\"error\":\"an unknown error was encountered while running the model\"}\n";
    let fake = FakeUpstream::always(Reply::pieces("application/x-ndjson", &body, 11)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    let message = assert_cut(&frames, "Hel");
    assert!(message.contains("unknown error"), "{message}");
}

#[tokio::test]
async fn a_stream_without_done_is_an_error() {
    let body = line("Hel") + &line("lo");
    let fake = FakeUpstream::always(Reply::pieces("application/x-ndjson", &body, 20).framing(Framing::Close)).await;
    let frames = gateway(&fake).await.stream(hello(None)).await.frames();
    assert_cut(&frames, "Hello");
}

#[tokio::test]
async fn a_missing_model_is_the_clients_400_and_a_5xx_is_a_502() {
    let fake = FakeUpstream::always(Reply::json(
        404,
        json!({"error": "model \"llama9\" not found, try pulling it first"}),
    ))
    .await;
    let (status, body) = gateway(&fake).await.chat(hello(Some("llama9"))).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("try pulling it first"));

    let fake = FakeUpstream::always(Reply::whole(500, "text/plain", "Internal Server Error")).await;
    match gateway(&fake).await.stream(hello(None)).await {
        Streamed::Error(status, _) => assert_eq!(status, 502),
        frames => panic!("expected a JSON error, got {frames:?}"),
    }
}
