//! The HTTP contract on the mock provider: answers, streams, and clear 4xx errors.

use serde_json::{json, Value};

use crate::support::*;

async fn mock() -> Gateway {
    Gateway::start(&["--llm-provider", "mock", "--gateway-max-body-bytes", "4096"]).await
}

#[tokio::test]
async fn the_mock_answers_and_streams_without_keys() {
    let gateway = mock().await;
    let (status, body) = gateway.chat(hello(None)).await;
    assert_eq!(status, 200);
    assert_eq!(body["content"], "Hello from the mock provider! You said: Hello");
    assert_eq!(
        (body["provider"].as_str(), body["model"].as_str()),
        (Some("mock"), Some("mock-1"))
    );

    let frames = gateway.stream(hello(None)).await.frames();
    assert!(frames.len() > 2, "{frames:?}");
    assert_eq!(Streamed::text(&frames), body["content"].as_str().unwrap());
    assert_eq!(frames.last().unwrap()["usage"], body["usage"]);
}

#[tokio::test]
async fn a_cut_mock_stream_ends_with_an_error_frame_and_a_failing_mock_is_a_502() {
    let gateway = mock().await;
    let frames = gateway.stream(hello(Some("mock-cut"))).await.frames();
    assert_cut(&frames, "Hello from the mock provider! You said: Hello");
    let (status, body) = gateway.chat(hello(Some("mock-fail"))).await;
    assert_eq!(
        (status.as_u16(), body["error"]["type"].as_str()),
        (502, Some("upstream_error"))
    );
}

#[tokio::test]
async fn bad_requests_get_a_clear_400() {
    let gateway = mock().await;
    let user = json!([{"role": "user", "content": "Hi"}]);
    let cases: [(Value, &str); 8] = [
        (json!({"messages": user}), "agent_id"),
        (json!({"agent_id": "a"}), "messages"),
        (json!({"agent_id": "a", "messages": []}), "at least one message"),
        (
            json!({"agent_id": "a", "messages": [{"role": "bot", "content": "Hi"}]}),
            "unknown variant `bot`",
        ),
        (
            json!({"agent_id": "a", "messages": [{"role": "user", "content": 7}]}),
            "invalid type",
        ),
        (
            json!({"agent_id": "a", "messages": user, "temperature": 3.5}),
            "temperature",
        ),
        (json!({"agent_id": "", "messages": user}), "agent_id"),
        (
            json!({"agent_id": "a", "messages": user, "max_tokns": 5}),
            "unknown field `max_tokns`",
        ),
    ];
    for (body, expected) in cases {
        for path in ["/v1/chat", "/v1/chat/stream"] {
            let response = gateway.post(path).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 400, "{path} {body}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["type"], "invalid_request");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains(expected), "{body}: {message}");
        }
    }
    let response = gateway
        .post("/v1/chat")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn an_oversized_body_is_a_413_and_the_gateway_still_serves() {
    let gateway = mock().await;
    let big = json!({"agent_id": "a", "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let response = gateway.post("/v1/chat").json(&big).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "payload_too_large");
    assert_eq!(gateway.chat(hello(None)).await.0, 200);
}

#[tokio::test]
async fn health_and_unknown_routes_answer_json() {
    let gateway = mock().await;
    let health = gateway.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let missing = gateway.get("/v1/nothing").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"]["type"], "not_found");
    let wrong_method = gateway.get("/v1/chat").send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
}
