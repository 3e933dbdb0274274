//! `/metrics`, `/v1/providers` and request ids, after known traffic.

use serde_json::{json, Value};

use crate::support::*;

fn answer() -> Reply {
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 15, "completion_tokens": 8, "total_tokens": 23}}),
    )
}

async fn scrape(gateway: &Gateway) -> String {
    let response = gateway.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("openmetrics-text"));
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap()
}

const OP: &str = r#"gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini",gen_ai_response_model="gpt-4o-mini""#;

#[tokio::test]
async fn counters_match_known_traffic_exactly() {
    let fake = FakeUpstream::always(answer()).await;
    let gateway = Gateway::openai(&fake, &["--gateway-rate-rps", "0.01", "--gateway-rate-burst", "3"]).await;
    for _ in 0..3 {
        assert_eq!(gateway.chat(hello(None)).await.0, 200);
    }
    assert_eq!(gateway.chat(hello(None)).await.0, 429);
    let text = scrape(&gateway).await;

    let served = r#"gateway_requests_total{provider="openai",model="gpt-4o-mini",outcome="success"}"#;
    assert_eq!(sample(&text, served), 3.0);
    let limited = r#"gateway_requests_total{provider="none",model="none",outcome="rate_limited"}"#;
    assert_eq!(sample(&text, limited), 1.0);
    let duration = format!(r#"gen_ai_client_operation_duration_seconds_count{{{OP},error_type=""}}"#);
    assert_eq!(sample(&text, &duration), 3.0);
    let input = format!(r#"gen_ai_client_token_usage_sum{{{OP},gen_ai_token_type="input"}}"#);
    assert_eq!(sample(&text, &input), 45.0);
    let output = format!(r#"gen_ai_client_token_usage_sum{{{OP},gen_ai_token_type="output"}}"#);
    assert_eq!(sample(&text, &output), 24.0);
    let cost = sample(
        &text,
        r#"gateway_cost_usd_total{provider="openai",model="gpt-4o-mini"}"#,
    );
    assert!((cost - 3.0 * (15.0 * 0.15 + 8.0 * 0.60) / 1e6).abs() < 1e-12, "{cost}");
    assert_eq!(sample(&text, "gateway_overhead_seconds_count"), 4.0);
    assert_eq!(sample(&text, "gateway_requests_in_flight"), 0.0);
    assert_eq!(sample(&text, "gateway_open_streams"), 0.0);
    assert_eq!(sample(&text, r#"gateway_budget_limit_usd{window="daily"}"#), 50.0);
    assert!((sample(&text, r#"gateway_budget_spent_usd{window="monthly"}"#) - cost).abs() < 1e-9);
    assert_eq!(sample(&text, r#"gateway_circuit_state{provider="openai"}"#), 0.0);
    assert_eq!(sample(&text, "gateway_unpriced_requests_total"), 0.0);
}

#[tokio::test]
async fn streams_count_time_to_first_chunk_and_close_when_done() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n\
                data: {\"choices\":[],\"usage\":{\"prompt_tokens\":15,\"completion_tokens\":8}}\n\ndata: [DONE]\n\n";
    let fake = FakeUpstream::always(Reply::sse(body, 40)).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    gateway.stream(hello(None)).await.frames();
    let text = scrape(&gateway).await;
    let first = format!(r#"gen_ai_client_operation_time_to_first_chunk_seconds_count{{{OP},error_type=""}}"#);
    assert_eq!(sample(&text, &first), 1.0);
    let served = r#"gateway_requests_total{provider="openai",model="gpt-4o-mini",outcome="success"}"#;
    assert_eq!(sample(&text, served), 1.0);
    assert_eq!(sample(&text, "gateway_open_streams"), 0.0);
}

#[tokio::test]
async fn random_model_names_cannot_create_unbounded_series() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--gateway-rate-burst", "1000"]).await;
    for i in 0..150 {
        assert_eq!(gateway.chat(hello(Some(&format!("mock-random-{i}")))).await.0, 200);
    }
    let text = scrape(&gateway).await;
    let served: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gateway_requests_total{"))
        .collect();
    assert!(served.len() <= 65, "{} series", served.len());
    let other = r#"gateway_requests_total{provider="mock",model="other",outcome="success"}"#;
    assert_eq!(sample(&text, other), 150.0 - 64.0);
}

#[tokio::test]
async fn providers_show_calls_failures_failovers_circuits_and_latency() {
    let fake = FakeUpstream::always(Reply::whole(503, "text/plain", "down")).await;
    let gateway = Gateway::openai(&fake, &["--llm-fallbacks", "mock", "--circuit-failure-threshold", "2"]).await;
    for _ in 0..3 {
        assert_eq!(gateway.chat(hello(None)).await.1["provider"], "mock");
    }
    let body: Value = gateway.get("/v1/providers").send().await.unwrap().json().await.unwrap();
    let [openai, mock] = [&body["providers"][0], &body["providers"][1]];
    assert_eq!(
        (openai["name"].as_str(), openai["role"].as_str()),
        (Some("openai"), Some("primary"))
    );
    assert_eq!(
        (openai["calls"].as_u64(), openai["failures"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(openai["failovers_from"], 3, "two failures and one skip");
    assert_eq!(openai["circuit"], "open");
    assert!(openai["circuit_retry_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (mock["role"].as_str(), mock["model"].as_str()),
        (Some("fallback"), Some("mock-1"))
    );
    assert_eq!((mock["calls"].as_u64(), mock["failures"].as_u64()), (Some(3), Some(0)));
    assert_eq!(
        (mock["failovers_to"].as_u64(), mock["circuit"].as_str()),
        (Some(3), Some("closed"))
    );
    assert!(mock["circuit_retry_at"].is_null());
    assert!(mock["latency_ms"]["p50"].as_f64().is_some() && mock["latency_ms"]["p99"].as_f64().is_some());

    let text = scrape(&gateway).await;
    assert_eq!(sample(&text, r#"gateway_circuit_state{provider="openai"}"#), 1.0);
    assert_eq!(sample(&text, r#"gateway_failovers_from_total{provider="openai"}"#), 3.0);
    assert_eq!(sample(&text, r#"gateway_failovers_to_total{provider="mock"}"#), 3.0);
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_echoed() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let response = gateway
        .post("/v1/chat")
        .header("x-request-id", "abc-123")
        .json(&hello(None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = gateway.post("/v1/chat/stream").json(&hello(None)).send().await.unwrap();
    let made = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(made.len(), 36, "a UUID: {made}");
}
