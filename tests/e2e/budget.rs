//! Cost on every answer, budgets, and `/v1/usage`, over real HTTP.

use serde_json::{json, Value};

use crate::support::*;

fn answer(prompt: u64, completion: u64) -> Reply {
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}),
    )
}

fn as_agent(agent: &str, model: &str) -> Value {
    let mut body = hello(Some(model));
    body["agent_id"] = agent.into();
    body
}

#[tokio::test]
async fn a_call_that_could_pass_the_budget_is_refused_with_402_before_any_provider() {
    let fake = FakeUpstream::always(answer(10, 10)).await;
    let gateway = Gateway::openai(&fake, &["--llm-daily-budget-usd", "0.0001"]).await;
    let (status, body) = gateway.chat(hello(None)).await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["type"], "budget_exceeded");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("daily budget"),
        "{body}"
    );
    assert!(fake.requests().is_empty());
    match gateway.stream(hello(None)).await {
        Streamed::Error(status, _) => assert_eq!(status, 402),
        frames => panic!("expected a 402, got {frames:?}"),
    }
}

#[tokio::test]
async fn usage_reports_spend_by_agent_and_model_with_limits_and_what_is_left() {
    let fake = FakeUpstream::always(answer(1_000, 500)).await;
    let gateway = Gateway::openai(
        &fake,
        &["--llm-daily-budget-usd", "2", "--llm-monthly-budget-usd", "20"],
    )
    .await;
    // gpt-4o-mini: 1000 x 0.15 + 500 x 0.60 per million = $0.00045 a call.
    for (agent, model) in [
        ("planner", "gpt-4o-mini"),
        ("planner", "gpt-4o-mini"),
        ("writer", "gpt-4o-mini"),
    ] {
        let (status, body) = gateway.chat(as_agent(agent, model)).await;
        assert_eq!(status, 200, "{body}");
        assert_close(body["cost_usd"].as_f64().unwrap(), 0.000_45);
    }
    let usage: Value = gateway.get("/v1/usage").send().await.unwrap().json().await.unwrap();
    for (window, limit) in [("day", 2.0), ("month", 20.0)] {
        let w = &usage[window];
        assert_close(w["spent_usd"].as_f64().unwrap(), 0.001_35);
        assert_eq!(w["limit_usd"], limit);
        assert_close(w["remaining_usd"].as_f64().unwrap(), limit - 0.001_35);
        assert_eq!(w["reserved_usd"], 0.0);
        assert_close(w["by_agent"]["planner"].as_f64().unwrap(), 0.000_9);
        assert_close(w["by_agent"]["writer"].as_f64().unwrap(), 0.000_45);
        assert_close(w["by_model"]["gpt-4o-mini"].as_f64().unwrap(), 0.001_35);
    }
    assert!(usage["day"]["start"].as_str().unwrap().ends_with("T00:00:00Z"));
}

#[tokio::test]
async fn a_streams_spend_is_settled_when_it_ends() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n\
                data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":500}}\n\n\
                data: [DONE]\n\n";
    let fake = FakeUpstream::always(Reply::sse(body, 32)).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let frames = gateway.stream(hello(Some("gpt-4o-mini"))).await.frames();
    assert_close(assert_whole(&frames, "hi", 1000, 500), 0.000_45);
    let usage: Value = gateway.get("/v1/usage").send().await.unwrap().json().await.unwrap();
    assert_close(usage["day"]["spent_usd"].as_f64().unwrap(), 0.000_45);
}
