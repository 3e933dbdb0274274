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

/// An upstream that writes as long an answer as the request lets it:
/// `max_completion_tokens` tokens, or 20,000 when the request sets no cap.
fn as_long_as_allowed() -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    |request| {
        let cap = request.body["max_completion_tokens"].as_u64().unwrap_or(20_000);
        answer(20, cap)
    }
}

fn without_max_tokens() -> Value {
    let mut body = hello(Some("gpt-4o"));
    body.as_object_mut().unwrap().remove("max_tokens");
    body
}

#[tokio::test]
async fn calls_without_max_tokens_cannot_spend_past_the_budget() {
    let fake = FakeUpstream::start(as_long_as_allowed()).await;
    // Each call may reserve up to 1000 output tokens of gpt-4o ($0.01).
    let args = [
        "--llm-daily-budget-usd",
        "0.03",
        "--llm-budget-default-max-tokens",
        "1000",
    ];
    let gateway = Gateway::openai(&fake, &args).await;
    let calls = (0..40).map(|_| gateway.chat(without_max_tokens()));
    let results = futures_util::future::join_all(calls).await;
    let served = results.iter().filter(|(status, _)| *status == 200).count();
    assert!(served >= 1, "{results:?}");
    for request in fake.requests() {
        assert_eq!(request.body["max_completion_tokens"], 1000, "the reserved cap is sent");
    }
    let usage: Value = gateway.get("/v1/usage").send().await.unwrap().json().await.unwrap();
    let spent = usage["day"]["spent_usd"].as_f64().unwrap();
    assert!(spent <= 0.03, "spent {spent} of a $0.03 budget");
    // A request's own cap is sent as it is, on both APIs.
    let openai = json!({"model": "gpt-4o", "max_tokens": 33, "messages": [{"role": "user", "content": "Hi"}]});
    let fresh = Gateway::openai(&fake, &[]).await;
    let response = fresh.post("/v1/chat/completions").json(&openai).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fake.last().body["max_completion_tokens"], 33);
    let no_cap = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]});
    fresh.post("/v1/chat/completions").json(&no_cap).send().await.unwrap();
    assert_eq!(fake.last().body["max_completion_tokens"], 4096);
}

#[tokio::test]
async fn an_unpriced_model_is_refused_with_a_400_naming_it_and_the_prices_file() {
    let fake = FakeUpstream::always(answer(1_000, 1_000)).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let (status, body) = gateway.chat(hello(Some("gpt-9-ultra"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "unpriced_model");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gpt-9-ultra") && message.contains("LLM_PRICES_FILE"),
        "{message}"
    );
    let openai = json!({"model": "gpt-9-ultra", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let response = gateway.post("/v1/chat/completions").json(&openai).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(fake.requests().is_empty(), "no provider was called");
}

#[tokio::test]
async fn an_unpriced_model_is_charged_the_ceiling_or_served_unbudgeted_when_configured() {
    let fake = FakeUpstream::start(|request| {
        let mut reply = answer(1_000, 1_000);
        let mut body: Value = serde_json::from_slice(&reply.parts[0]).unwrap();
        body["model"] = request.body["model"].clone();
        reply.parts = vec![body.to_string().into_bytes()];
        reply
    })
    .await;
    let ceiling = Gateway::openai(&fake, &["--llm-unpriced-models", "ceiling"]).await;
    let (status, body) = ceiling.chat(hello(Some("gpt-9-ultra"))).await;
    assert_eq!(status, 200, "{body}");
    // OpenAI's dearest known price: o1-pro, 150 / 600 USD per million tokens.
    assert_close(
        body["cost_usd"].as_f64().unwrap(),
        (1_000.0 * 150.0 + 1_000.0 * 600.0) / 1e6,
    );
    let usage: Value = ceiling.get("/v1/usage").send().await.unwrap().json().await.unwrap();
    assert_close(usage["day"]["spent_usd"].as_f64().unwrap(), 0.75);

    let allow = Gateway::openai(&fake, &["--llm-unpriced-models", "allow"]).await;
    let (status, body) = allow.chat(hello(Some("gpt-9-ultra"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cost_usd"], 0.0);
}

#[test]
fn a_provider_whose_own_model_has_no_price_stops_start_up() {
    use clap::Parser;
    let args = [
        "gateway",
        "--llm-provider",
        "openai",
        "--openai-api-key",
        OPENAI_KEY,
        "--llm-default-model",
        "gpt-9-ultra",
    ];
    let config = chrysalis_gateway::config::Config::try_parse_from(args).unwrap();
    let Err(error) = chrysalis_gateway::stack::app(&config) else {
        panic!("start-up is refused");
    };
    let error = error.to_string();
    assert!(
        error.contains("gpt-9-ultra") && error.contains("LLM_PRICES_FILE"),
        "{error}"
    );
    let allow =
        chrysalis_gateway::config::Config::try_parse_from(args.iter().chain(&["--llm-unpriced-models", "allow"]))
            .unwrap();
    let db = temp_db();
    let allow = chrysalis_gateway::config::Config {
        gateway_db: db,
        ..allow
    };
    assert!(chrysalis_gateway::stack::app(&allow).is_ok());
}

#[tokio::test]
async fn anthropic_and_ollama_get_the_reserved_cap_in_their_own_field() {
    let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 1}});
    let anthropic = FakeUpstream::always(Reply::json(200, message)).await;
    let ollama = FakeUpstream::always(Reply::json(
        200,
        json!({"model": "llama3.2", "message": {"role": "assistant", "content": "ok"}, "done": true,
            "prompt_eval_count": 5, "eval_count": 1}),
    ))
    .await;
    let mut body = hello(None);
    body.as_object_mut().unwrap().remove("max_tokens");
    let cap = ["--llm-budget-default-max-tokens", "900"];
    let claude = Gateway::start(
        &[
            &[
                "--llm-provider",
                "anthropic",
                "--anthropic-api-key",
                "sk-ant-test-0123456789",
            ][..],
            &["--anthropic-base-url", &anthropic.url],
            &cap,
        ]
        .concat(),
    )
    .await;
    assert_eq!(claude.chat(body.clone()).await.0, 200);
    assert_eq!(anthropic.last().body["max_tokens"], 900);
    let local = Gateway::start(
        &[
            &["--llm-provider", "ollama", "--ollama-base-url", &ollama.url][..],
            &cap,
        ]
        .concat(),
    )
    .await;
    assert_eq!(local.chat(body).await.0, 200);
    assert_eq!(ollama.last().body["options"]["num_predict"], 900);
}
