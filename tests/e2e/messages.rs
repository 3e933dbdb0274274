//! Anthropic's Messages API on the gateway (`/v1/messages`), to an Anthropic
//! fake (the body passes with its blocks intact) and to an OpenAI fake
//! (translated both ways), whole and streamed, read as raw HTTP.

use serde_json::{json, Value};

use crate::support::*;

async fn anthropic_gateway(fake: &FakeUpstream, extra: &[&str]) -> Gateway {
    let mut args = vec![
        "--llm-provider",
        "anthropic",
        "--anthropic-api-key",
        ANTHROPIC_KEY,
        "--anthropic-base-url",
        &fake.url,
    ];
    args.extend_from_slice(extra);
    Gateway::start(&args).await
}

/// An SSE body as `(event name, data)` pairs; every data's `type` must be
/// its event's name, as the SDKs dispatch on either.
fn events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        let Some(name) = name else { continue };
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(data["type"], name.as_str(), "{block}");
        out.push((name, data));
    }
    out
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "ping")
        .collect()
}

/// The text and the tool inputs a stream spells, block by block, as the
/// SDKs' stream helpers assemble them.
fn assembled(events: &[(String, Value)]) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    let mut json_parts: Vec<String> = Vec::new();
    for (name, data) in events {
        let index = data["index"].as_u64().map(|i| i as usize);
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(index, Some(blocks.len()), "blocks start in order: {data}");
                blocks.push(data["content_block"].clone());
                json_parts.push(String::new());
            }
            "content_block_delta" => {
                let i = index.unwrap();
                assert_eq!(i + 1, blocks.len(), "deltas go to the open block: {data}");
                match data["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text =
                            blocks[i]["text"].as_str().unwrap().to_owned() + data["delta"]["text"].as_str().unwrap();
                        blocks[i]["text"] = text.into();
                    }
                    "input_json_delta" => json_parts[i].push_str(data["delta"]["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = index.unwrap();
                if blocks[i]["type"] == "tool_use" && !json_parts[i].is_empty() {
                    blocks[i]["input"] = serde_json::from_str(&json_parts[i]).unwrap();
                }
            }
            _ => {}
        }
    }
    blocks
}

async fn post(gateway: &Gateway, body: &Value) -> reqwest::Response {
    gateway
        .post("/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn whole(gateway: &Gateway, body: &Value) -> (u16, Value) {
    let response = post(gateway, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn streamed(gateway: &Gateway, body: &Value) -> Vec<(String, Value)> {
    let response = post(gateway, body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    events(&response.text().await.unwrap())
}

fn anthropic_answer() -> Value {
    json!({"id": "msg_up", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
        "content": [
            {"type": "text", "text": "Checking the weather."},
            {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 50, "output_tokens": 20, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000}})
}

#[tokio::test]
async fn to_anthropic_the_body_passes_with_its_blocks_and_headers_intact_and_cache_tokens_are_priced() {
    let fake = FakeUpstream::always(Reply::json(200, anthropic_answer())).await;
    let gateway = anthropic_gateway(&fake, &[]).await;
    let body = json!({
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
            {"type": "text", "text": "Weather in Paris?", "cache_control": {"type": "ephemeral"}}
        ]}],
        "tools": [{"name": "weather", "description": "Weather by city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto"},
        "top_k": 5,
        "metadata": {"user_id": "user-7"}
    });
    let response = gateway
        .post("/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cost: f64 = response.headers()["x-gateway-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let answer: Value = response.json().await.unwrap();

    let sent = fake.last();
    assert_eq!(sent.path, "/v1/messages");
    let mut expected = body.clone();
    expected["stream"] = false.into();
    assert_eq!(
        sent.body, expected,
        "every block, cache_control and option as the client wrote it"
    );
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("anthropic-beta"), Some("prompt-caching-2024-07-31"));
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));

    assert_eq!(answer["type"], "message");
    assert_eq!(answer["role"], "assistant");
    assert!(answer["id"].as_str().unwrap().starts_with("msg_"), "{answer}");
    assert_eq!(
        answer["model"], "claude-3-5-haiku-latest",
        "the model asked for, as on every route"
    );
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "Checking the weather."},
               {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(answer["stop_reason"], "tool_use");
    assert_eq!(answer["stop_sequence"], Value::Null);
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 50, "output_tokens": 20, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000})
    );
    // claude-3-5-haiku: input 0.80, cache reads 0.08, cache writes 1.00, output 4.00 per million.
    assert_close(cost, (50.0 * 0.80 + 1000.0 * 0.08 + 200.0 * 1.00 + 20.0 * 4.00) / 1e6);
}

/// An OpenAI chat completion with `message`.
fn openai_answer(message: Value, finish: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}}),
    )
}

#[tokio::test]
async fn to_openai_a_two_turn_tool_loop_with_an_image_translates_both_ways() {
    let fake = FakeUpstream::start(|request| {
        let turns = request.body["messages"].as_array().unwrap().len();
        if turns == 2 {
            let call = json!({"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}});
            openai_answer(json!({"role": "assistant", "content": null, "tool_calls": [call]}), "tool_calls")
        } else {
            openai_answer(json!({"role": "assistant", "content": "Sunny, 24 C."}), "stop")
        }
    })
    .await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let tools = json!([{"name": "weather", "description": "Weather by city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let question = json!({"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}},
        {"type": "text", "text": "What is the weather where these are?"}
    ]});
    let first = json!({"model": "gpt-4o-mini", "max_tokens": 200, "system": "You are terse.",
        "messages": [question], "tools": tools, "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"], "temperature": 0.5});
    let (status, answer) = whole(&gateway, &first).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["content"],
        json!([{"type": "tool_use", "id": "call_7", "name": "weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(answer["stop_reason"], "tool_use");
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 40, "output_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
    let sent = fake.last().body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(
        sent["messages"][1]["content"],
        json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}},
               {"type": "text", "text": "What is the weather where these are?"}])
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["parallel_tool_calls"], false);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["max_completion_tokens"], 200);
    assert_eq!(sent["temperature"], 0.5);

    let mut second = first.clone();
    second["messages"] = json!([question,
        {"role": "assistant", "content": answer["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_7", "content": [{"type": "text", "text": "24 C, sunny"}]},
                                     {"type": "text", "text": "And now?"}]}]);
    let (status, answer) = whole(&gateway, &second).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["content"], json!([{"type": "text", "text": "Sunny, 24 C."}]));
    assert_eq!(answer["stop_reason"], "end_turn");
    let sent = fake.last().body;
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5, "{sent}");
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(
        messages[2]["tool_calls"],
        json!([{"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "24 C, sunny", "tool_call_id": "call_7"})
    );
    assert_eq!(messages[4], json!({"role": "user", "content": "And now?"}));
}

fn openai_chunk(delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

#[tokio::test]
async fn a_stream_from_openai_becomes_anthropic_events_with_text_then_a_tool_call_in_fragments() {
    let mut body = openai_chunk(json!({"role": "assistant", "content": ""}), None);
    body.push_str(": keep-alive\n\n");
    for text in ["Let me ", "check \"that\"."] {
        body.push_str(&openai_chunk(json!({"content": text}), None));
    }
    let start = json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "weather", "arguments": ""}}]});
    body.push_str(&openai_chunk(start, None));
    for piece in ["{\"ci", "ty\": \"Pa", "ris\"}"] {
        body.push_str(&openai_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            None,
        ));
    }
    body.push_str(&openai_chunk(json!({}), Some("tool_calls")));
    body.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":9,\"total_tokens\":39}}\n\ndata: [DONE]\n\n");
    // Seven-byte reads: every frame arrives split.
    let fake = FakeUpstream::always(Reply::sse(&body, 7)).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let request = json!({"model": "gpt-4o-mini", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}]});
    let events = streamed(&gateway, &request).await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let message = &events[0].1["message"];
    assert_eq!(
        (message["role"].as_str(), message["model"].as_str()),
        (Some("assistant"), Some("gpt-4o-mini"))
    );
    assert_eq!(message["content"], json!([]));
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        assembled(&events),
        [
            json!({"type": "text", "text": "Let me check \"that\"."}),
            json!({"type": "tool_use", "id": "call_9", "name": "weather", "input": {"city": "Paris"}})
        ]
    );
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "tool_use", "stop_sequence": null})
    );
    assert_eq!(delta["usage"]["input_tokens"], 30);
    assert_eq!(delta["usage"]["output_tokens"], 9);
    assert_eq!(fake.last().body["stream"], true);
}

fn anthropic_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn anthropic_stream(with_end: bool) -> String {
    let mut body = anthropic_event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "model": "claude-3-5-haiku-20241022", "stop_reason": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    );
    body.push_str(&anthropic_event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    body.push_str(&anthropic_event("ping", json!({"type": "ping"})));
    for part in ["Hello", " there"] {
        body.push_str(&anthropic_event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}),
        ));
    }
    if with_end {
        body.push_str(&anthropic_event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        body.push_str(&anthropic_event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {"output_tokens": 15}}),
        ));
        body.push_str(&anthropic_event("message_stop", json!({"type": "message_stop"})));
    }
    body
}

#[tokio::test]
async fn a_stream_from_anthropic_keeps_its_grammar_and_a_cut_one_ends_with_an_error_event() {
    let fake = FakeUpstream::start(|request| {
        let whole = request.body["metadata"]["user_id"] != "cut";
        Reply::sse(&anthropic_stream(whole), 11)
    })
    .await;
    let gateway = anthropic_gateway(&fake, &[]).await;
    let request = json!({"model": "claude-3-5-haiku-latest", "max_tokens": 15, "stream": true,
        "messages": [{"role": "user", "content": "Hi"}]});
    let events = streamed(&gateway, &request).await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(assembled(&events), [json!({"type": "text", "text": "Hello there"})]);
    let delta = &events[5].1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
    );
    assert_eq!(delta["usage"]["input_tokens"], 25);
    assert_eq!(delta["usage"]["output_tokens"], 15);
    assert_eq!(fake.last().body["stream"], true);

    let mut cut = request.clone();
    cut["metadata"] = json!({"user_id": "cut"});
    let events = streamed(&gateway, &cut).await;
    let names = names(&events);
    assert_eq!(names.last(), Some(&"error"), "{names:?}");
    assert!(
        !names.contains(&"message_stop"),
        "a cut stream must not end cleanly: {names:?}"
    );
    assert_eq!(assembled(&events), [json!({"type": "text", "text": "Hello there"})]);
    let error = &events.last().unwrap().1["error"];
    assert_eq!(error["type"], "api_error", "{error}");
    assert!(error["message"].as_str().unwrap().contains("before its end"), "{error}");
}

async fn error_of(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    (status, retry_after, body["error"].clone())
}

fn hi(model: &str) -> Value {
    json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]})
}

#[tokio::test]
async fn errors_come_in_anthropics_shape_with_the_gateways_statuses() {
    let fake = FakeUpstream::always(Reply::json(500, json!({"error": {"message": "boom"}}))).await;
    let gateway = Gateway::openai(&fake, &["--circuit-failure-threshold", "1"]).await;
    let missing_cap = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _, error) = error_of(post(&gateway, &missing_cap).await).await;
    assert_eq!((status, error["type"].as_str()), (400, Some("invalid_request_error")));
    assert!(error["message"].as_str().unwrap().contains("max_tokens"), "{error}");

    let (status, _, error) = error_of(post(&gateway, &hi("gpt-4o-mini")).await).await;
    assert_eq!((status, error["type"].as_str()), (502, Some("api_error")), "{error}");
    assert_eq!(error["attempts"][0]["status"], 500);
    // The breaker is open now: overloaded, with when to come back.
    let (status, retry_after, error) = error_of(post(&gateway, &hi("gpt-4o-mini")).await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (503, Some("overloaded_error")),
        "{error}"
    );
    assert!(retry_after.is_some());

    let unknown = gateway
        .post("/v1/messages/batches")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, _, error) = error_of(unknown).await;
    assert_eq!((status, error["type"].as_str()), (404, Some("not_found_error")));
    let not_json = gateway.post("/v1/messages").body("{}").send().await.unwrap();
    let (status, _, error) = error_of(not_json).await;
    assert_eq!((status, error["type"].as_str()), (415, Some("invalid_request_error")));
}

#[tokio::test]
async fn the_gateway_token_is_taken_as_x_api_key_or_bearer_and_a_missing_one_is_an_authentication_error() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--gateway-auth-token", "gw-secret-token"]).await;
    let call = |key: Option<(&'static str, &'static str)>| {
        let mut request = gateway
            .post("/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .json(&hi("mock-1"));
        if let Some((name, value)) = key {
            request = request.header(name, value);
        }
        request.send()
    };
    let (status, _, error) = error_of(call(None).await.unwrap()).await;
    assert_eq!((status, error["type"].as_str()), (401, Some("authentication_error")));
    let (status, _, error) = error_of(call(Some(("x-api-key", "wrong"))).await.unwrap()).await;
    assert_eq!((status, error["type"].as_str()), (401, Some("authentication_error")));
    for key in [
        ("x-api-key", "gw-secret-token"),
        ("authorization", "Bearer gw-secret-token"),
    ] {
        let response = call(Some(key)).await.unwrap();
        assert_eq!(response.status(), 200, "{key:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["content"][0]["type"], "text", "{answer}");
    }
}

#[tokio::test]
async fn the_budget_and_the_rate_limit_apply_to_this_route_as_to_the_others() {
    let fake = FakeUpstream::always(openai_answer(json!({"role": "assistant", "content": "ok"}), "stop")).await;
    let poor = Gateway::openai(&fake, &["--llm-daily-budget-usd", "0.000001"]).await;
    let (status, _, error) = error_of(post(&poor, &hi("gpt-4o-mini")).await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (402, Some("billing_error")),
        "{error}"
    );
    assert!(fake.requests().is_empty(), "refused before any provider");

    let limited = Gateway::openai(&fake, &["--gateway-rate-rps", "0.01", "--gateway-rate-burst", "1"]).await;
    let (status, _) = whole(&limited, &hi("gpt-4o-mini")).await;
    assert_eq!(status, 200);
    let (status, retry_after, error) = error_of(post(&limited, &hi("gpt-4o-mini")).await).await;
    assert_eq!((status, error["type"].as_str()), (429, Some("rate_limit_error")));
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn what_only_anthropic_can_do_fails_over_to_it_or_is_a_400_naming_it() {
    let openai = FakeUpstream::always(openai_answer(json!({"role": "assistant", "content": "no"}), "stop")).await;
    let anthropic = FakeUpstream::always(Reply::json(200, anthropic_answer())).await;
    let both = Gateway::openai_then_anthropic(&openai, &anthropic, "claude-3-5-haiku-latest", &[]).await;
    let document = json!({"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a contract"}},
        {"type": "text", "text": "Summarise it."}]}]});
    let (status, answer) = whole(&both, &document).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "claude-3-5-haiku-latest");
    assert!(
        openai.requests().is_empty(),
        "OpenAI was never sent what it cannot read"
    );
    let sent = anthropic.last().body;
    assert_eq!(sent["messages"], document["messages"]);
    assert_eq!(sent["model"], "claude-3-5-haiku-latest");

    let only_openai = Gateway::openai(&openai, &[]).await;
    let (status, _, error) = error_of(post(&only_openai, &document).await).await;
    assert_eq!((status, error["type"].as_str()), (400, Some("invalid_request_error")));
    assert!(
        error["message"].as_str().unwrap().contains("`document` content blocks"),
        "{error}"
    );
}

#[tokio::test]
async fn count_tokens_and_the_model_list_answer_as_anthropic_does() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let text = "word ".repeat(100);
    let count = |body: Value| gateway.post("/v1/messages/count_tokens").json(&body).send();
    let response = count(json!({"model": "mock-1", "messages": [{"role": "user", "content": text}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-gateway-token-count"], "estimate");
    let counted: Value = response.json().await.unwrap();
    assert_eq!(counted, json!({"input_tokens": 125}), "500 bytes at four a token");
    let with_image = json!({"model": "mock-1", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "text", "text": text}]}]});
    let counted: Value = count(with_image).await.unwrap().json().await.unwrap();
    assert!(
        counted["input_tokens"].as_u64().unwrap() > 1000,
        "an image counts: {counted}"
    );

    let anthropic: Value = gateway
        .get("/v1/models")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["data"][0]["type"], "model", "{anthropic}");
    assert_eq!(anthropic["data"][0]["id"], "mock-1");
    assert_eq!(anthropic["has_more"], false);
    assert_eq!(anthropic["first_id"], "mock-1");
    let openai: Value = gateway.get("/v1/models").send().await.unwrap().json().await.unwrap();
    assert_eq!(openai["object"], "list", "{openai}");
    assert_eq!(openai["data"][0]["object"], "model");
}

#[tokio::test]
async fn count_tokens_asks_anthropic_when_it_is_the_primary_and_estimates_when_it_cannot() {
    let fake = FakeUpstream::start(|request| match request.body["system"].as_str() {
        Some("down") => Reply::json(
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
        _ => Reply::json(200, json!({"input_tokens": 42})),
    })
    .await;
    let gateway = anthropic_gateway(&fake, &[]).await;
    let body = json!({"model": "claude-3-5-haiku-latest", "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}], "temperature": 0.2});
    let response = gateway
        .post("/v1/messages/count_tokens")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "token-counting-2024-11-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-gateway-token-count").is_none());
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"input_tokens": 42}));
    let sent = fake.last();
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(
        sent.body,
        json!({"model": "claude-3-5-haiku-latest", "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}], "tools": [{"name": "t", "input_schema": {"type": "object"}}]}),
        "only what count_tokens takes"
    );
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(sent.header("anthropic-beta"), Some("token-counting-2024-11-01"));

    let mut down = body.clone();
    down["system"] = "down".into();
    let response = gateway
        .post("/v1/messages/count_tokens")
        .json(&down)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-gateway-token-count"], "estimate");
    assert!(
        response.json::<Value>().await.unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn the_layers_own_refusals_come_in_anthropics_shape_too() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--gateway-max-inflight", "1"]).await;
    // One slow call holds the only slot; the next is refused by the in-flight cap, a layer.
    let slow = gateway.post("/v1/messages").json(&hi("mock-slow-1000")).send();
    let slow = tokio::spawn(slow);
    // Once the slow call holds the slot (the in-flight gauge says so), the next is refused.
    loop {
        let metrics = gateway.get("/metrics").send().await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l == "gateway_requests_in_flight 1") {
            break;
        }
        tokio::task::yield_now().await;
    }
    let (status, retry_after, error) = error_of(post(&gateway, &hi("mock-1")).await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (503, Some("overloaded_error")),
        "{error}"
    );
    assert!(retry_after.is_some());
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    let long_uri = format!("/v1/messages?{}", "q".repeat(9 * 1024));
    let response = gateway.post(&long_uri).json(&hi("mock-1")).send().await.unwrap();
    let (status, _, error) = error_of(response).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (414, Some("invalid_request_error")),
        "{error}"
    );
}
