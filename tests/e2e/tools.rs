//! Tools, images, structured output and sampling, end to end: each provider
//! against a fake upstream that checks what it received in its own format.

use serde_json::{json, Value};

use crate::support::*;

const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789";

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": true}})
}

fn asks_for_weather() -> Vec<Value> {
    vec![
        json!({"role": "developer", "content": "Use tools."}),
        json!({"role": "user", "content": "Weather in Paris?"}),
    ]
}

/// The second turn: the assistant's calls and their results.
fn with_results(mut messages: Vec<Value>) -> Vec<Value> {
    messages.push(json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}]}));
    messages.push(json!({"role": "tool", "tool_call_id": "call_1", "content": "18°C"}));
    messages.push(json!({"role": "tool", "tool_call_id": "call_2", "content": "21°C"}));
    messages
}

fn openai_tool_answer() -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}})
}

fn openai_text_answer(text: &str) -> Value {
    json!({"id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 80, "completion_tokens": 8, "total_tokens": 88}})
}

fn openai_tool_stream() -> String {
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut body = chunk(json!({"role": "assistant", "content": null}), Value::Null);
    body += &chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}]}),
        Value::Null,
    );
    for piece in ["{\"ci", "ty\":\"Pa", "ris\"}"] {
        body += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        );
    }
    body += &chunk(json!({}), json!("tool_calls"));
    body += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":10}}\n\ndata: [DONE]\n\n";
    body
}

/// Streams `body` through `/v1/chat/completions` and joins its tool calls.
async fn streamed_calls(gateway: &Gateway, body: &Value) -> (Vec<(String, String, String)>, Option<String>) {
    let response = gateway.post("/v1/chat/completions").json(body).send().await.unwrap();
    assemble(&response.text().await.unwrap())
}

/// Joins the `delta.tool_calls` of OpenAI stream chunks into whole calls.
fn assemble(sse: &str) -> (Vec<(String, String, String)>, Option<String>) {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for data in sse_data(sse).filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).unwrap();
        for choice in chunk["choices"].as_array().unwrap() {
            for call in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap() as usize;
                if index == calls.len() {
                    calls.push(Default::default());
                }
                let entry = &mut calls[index];
                entry.0 += call["id"].as_str().unwrap_or("");
                entry.1 += call["function"]["name"].as_str().unwrap_or("");
                entry.2 += call["function"]["arguments"].as_str().unwrap_or("");
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_owned());
            }
        }
    }
    (calls, finish)
}

#[tokio::test]
async fn openai_gets_every_parameter_in_its_own_names_and_a_tool_loop_completes() {
    let fake = FakeUpstream::start(|request| {
        let last = request.body["messages"].as_array().unwrap().last().unwrap().clone();
        match (last["role"].as_str(), request.body["stream"] == true) {
            (Some("tool"), _) => Reply::json(200, openai_text_answer("Paris 18°C, Lyon 21°C.")),
            (_, true) => Reply::sse(&openai_tool_stream(), 7),
            (_, false) => Reply::json(200, openai_tool_answer()),
        }
    })
    .await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let schema = json!({"type": "json_schema", "json_schema": {"name": "weather", "strict": true,
        "schema": {"type": "object", "properties": {"summary": {"type": "string"}}}}});
    let first = json!({"model": "gpt-4o-mini", "messages": asks_for_weather(), "tools": [weather_tool()],
        "tool_choice": "auto", "parallel_tool_calls": false, "stop": "END", "top_p": 0.9, "seed": 7,
        "presence_penalty": 0.5, "frequency_penalty": 0.25, "response_format": schema,
        "reasoning_effort": "low", "user": "end-user-1"});
    let response = gateway.post("/v1/chat/completions").json(&first).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        openai_tool_answer()["choices"][0]["message"]["tool_calls"]
    );
    let sent = fake.last().body;
    assert_eq!(sent["tools"], json!([weather_tool()]));
    assert_eq!(
        sent["messages"][0],
        json!({"role": "developer", "content": "Use tools."})
    );
    for (field, value) in [
        ("tool_choice", json!("auto")),
        ("parallel_tool_calls", json!(false)),
        ("stop", json!(["END"])),
        ("top_p", json!(0.9)),
        ("seed", json!(7)),
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(0.25)),
        ("response_format", schema.clone()),
        ("reasoning_effort", json!("low")),
        ("user", json!("end-user-1")),
    ] {
        assert_close_json(&sent[field], &value, field);
    }

    let second =
        json!({"model": "gpt-4o-mini", "messages": with_results(asks_for_weather()), "tools": [weather_tool()]});
    let response = gateway.post("/v1/chat/completions").json(&second).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"], "Paris 18°C, Lyon 21°C.",
        "{body}"
    );
    let sent = fake.last().body;
    assert_eq!(
        sent["messages"][2]["tool_calls"][1]["function"]["arguments"],
        "{\"city\":\"Lyon\"}"
    );
    assert_eq!(sent["messages"][2]["content"], Value::Null);
    assert_eq!(
        sent["messages"][4],
        json!({"role": "tool", "tool_call_id": "call_2", "content": "21°C"})
    );

    let streamed =
        json!({"model": "gpt-4o-mini", "stream": true, "messages": asks_for_weather(), "tools": [weather_tool()]});
    let (calls, finish) = streamed_calls(&gateway, &streamed).await;
    let paris = (
        "call_1".to_owned(),
        "get_weather".to_owned(),
        "{\"city\":\"Paris\"}".to_owned(),
    );
    assert_eq!((calls, finish.as_deref()), (vec![paris], Some("tool_calls")));
}

/// f32 values come back as the nearest f32, not the decimal that was sent.
fn assert_close_json(sent: &Value, expected: &Value, field: &str) {
    match (sent.as_f64(), expected.as_f64()) {
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{field}: {sent} != {expected}"),
        _ => assert_eq!(sent, expected, "{field}"),
    }
}

fn anthropic_tool_use() -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 12, "cache_read_input_tokens": 0}})
}

/// An Anthropic stream of one `tool_use` block calling `name`, its input in
/// `pieces`, with a ping between.
fn anthropic_tool_use_stream(name: &str, pieces: &[&str]) -> String {
    let event = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    let mut body = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "model": "claude-haiku-4-5", "usage": {"input_tokens": 40, "output_tokens": 1}}}),
    );
    body += &event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}}),
    );
    body += &event("ping", json!({"type": "ping"}));
    for piece in pieces {
        body += &event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece}}),
        );
    }
    body += &event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    body += &event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 15}}),
    );
    body += &event("message_stop", json!({"type": "message_stop"}));
    body
}

async fn anthropic(fake: &FakeUpstream) -> Gateway {
    Gateway::start(&[
        "--llm-provider",
        "anthropic",
        "--anthropic-api-key",
        ANTHROPIC_KEY,
        "--anthropic-base-url",
        &fake.url,
        "--llm-default-model",
        "claude-haiku-4-5",
    ])
    .await
}

#[tokio::test]
async fn anthropic_gets_tools_images_and_results_as_blocks() {
    let fake = FakeUpstream::always(Reply::json(200, anthropic_tool_use())).await;
    let gateway = anthropic(&fake).await;
    let image = json!({"role": "user", "content": [{"type": "text", "text": "And this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/sky.jpg", "detail": "low"}}]});
    let mut messages = asks_for_weather();
    messages.push(image);
    let first = json!({"agent_id": "planner", "messages": messages, "tools": [weather_tool()],
        "tool_choice": "required", "parallel_tool_calls": false, "stop": ["END", "STOP"], "top_p": 0.5, "user": "u-9"});
    let (status, body) = gateway.chat(first).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], "Let me check.");
    assert_eq!(body["finish_reason"], "tool_calls");
    assert_eq!(
        body["tool_calls"],
        json!([{"id": "toolu_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    let sent = fake.last().body;
    assert_eq!(sent["system"], "Use tools.");
    assert_eq!(
        sent["tools"],
        json!([{"name": "get_weather", "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(sent["stop_sequences"], json!(["END", "STOP"]));
    assert_eq!(sent["top_p"], 0.5);
    assert_eq!(sent["metadata"], json!({"user_id": "u-9"}));
    // Two user messages in a row are one turn; images are blocks with their sources.
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        sent["messages"][0]["content"],
        json!([
        {"type": "text", "text": "Weather in Paris?"},
        {"type": "text", "text": "And this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.jpg"}}])
    );

    let second =
        json!({"agent_id": "planner", "messages": with_results(asks_for_weather()), "tools": [weather_tool()]});
    let (status, _) = gateway.chat(second).await;
    assert_eq!(status, 200);
    let turns = fake.last().body["messages"].clone();
    assert_eq!(
        turns[1],
        json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Lyon"}}]})
    );
    assert_eq!(
        turns[2],
        json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "21°C"}]}),
        "results merged into one user turn"
    );
    assert_eq!(turns.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn anthropic_tool_use_streams_as_tool_call_frames_on_both_apis() {
    let body = anthropic_tool_use_stream("get_weather", &["{\"city\": ", "\"Paris\"}"]);
    let fake = FakeUpstream::always(Reply::sse(&body, 5)).await;
    let gateway = anthropic(&fake).await;
    let request = json!({"agent_id": "planner", "messages": asks_for_weather(), "tools": [weather_tool()]});
    let frames = gateway.stream(request).await.frames();
    let arguments: String = frames
        .iter()
        .filter_map(|f| f["tool_call"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");
    assert_eq!(
        frames[0]["tool_call"],
        json!({"index": 0, "id": "toolu_1", "name": "get_weather", "arguments": ""})
    );
    let done = frames.last().unwrap();
    assert_eq!(
        (done["done"].as_bool(), done["finish_reason"].as_str()),
        (Some(true), Some("tool_calls"))
    );

    let openai =
        json!({"model": "claude-haiku-4-5", "stream": true, "messages": asks_for_weather(), "tools": [weather_tool()]});
    let (calls, finish) = streamed_calls(&gateway, &openai).await;
    let paris = (
        "toolu_1".to_owned(),
        "get_weather".to_owned(),
        "{\"city\": \"Paris\"}".to_owned(),
    );
    assert_eq!((calls, finish.as_deref()), (vec![paris], Some("tool_calls")));
}

#[tokio::test]
async fn ollama_gets_tools_base64_images_format_and_options() {
    let answer = json!({"model": "llama3.2", "created_at": "2026-12-03T08:00:00Z", "done": true, "done_reason": "stop",
        "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        "prompt_eval_count": 40, "eval_count": 9});
    let fake = FakeUpstream::always(Reply::json(200, answer)).await;
    let gateway = Gateway::start(&["--llm-provider", "ollama", "--ollama-base-url", &fake.url]).await;
    let image = json!({"role": "user", "content": [{"type": "text", "text": "See?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]});
    let mut messages = with_results(asks_for_weather());
    messages.push(image);
    let format = json!({"type": "object", "properties": {"summary": {"type": "string"}}});
    let request = json!({"agent_id": "local", "messages": messages, "tools": [weather_tool()], "stop": ["END"],
        "top_p": 0.8, "seed": 42, "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": format}}});
    let (status, body) = gateway.chat(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["finish_reason"], "tool_calls");
    assert_eq!(
        body["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );
    let sent = fake.last().body;
    assert_eq!(sent["tools"], json!([weather_tool()]));
    assert_eq!(sent["format"], format);
    assert_eq!(sent["options"]["stop"], json!(["END"]));
    assert_eq!(sent["options"]["seed"], 42);
    assert_close_json(&sent["options"]["top_p"], &json!(0.8), "top_p");
    assert_eq!(sent["messages"][0]["role"], "system", "developer is system to Ollama");
    assert_eq!(
        sent["messages"][2]["tool_calls"][0],
        json!({"function": {"name": "get_weather", "arguments": {"city": "Paris"}}})
    );
    assert_eq!(
        sent["messages"][3],
        json!({"role": "tool", "content": "18°C", "tool_name": "get_weather"})
    );
    assert_eq!(sent["messages"][5]["images"], json!(["/9j/4AAQ"]));
    // Images by URL cannot reach Ollama: a 400 naming the parameter, nothing sent.
    let by_url = json!({"agent_id": "local", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
    let before = fake.requests().len();
    let (status, body) = gateway.chat(by_url).await;
    assert_eq!(
        (status.as_u16(), body["error"]["param"].as_str()),
        (400, Some("messages[].content")),
        "{body}"
    );
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test]
async fn the_mock_runs_a_whole_tool_loop_without_a_network() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let request = json!({"agent_id": "a", "messages": asks_for_weather(), "tools": [weather_tool()]});
    let (status, body) = gateway.chat(request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["finish_reason"], "tool_calls");
    let call = body["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Weather in Paris?"}));
    let frames = gateway.stream(request.clone()).await.frames();
    let streamed: String = frames
        .iter()
        .filter_map(|f| f["tool_call"]["arguments"].as_str())
        .collect();
    assert_eq!(streamed, call["function"]["arguments"].as_str().unwrap());
    let mut messages = asks_for_weather();
    messages.push(json!({"role": "assistant", "tool_calls": [call.clone()]}));
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "18°C"}));
    let (status, body) = gateway
        .chat(json!({"agent_id": "a", "messages": messages, "tools": [weather_tool()]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["content"].as_str(), body["finish_reason"].as_str()),
        (Some("The tool answered: 18°C"), Some("stop"))
    );
}

#[tokio::test]
async fn a_tool_call_fails_over_from_openai_to_anthropic_translated() {
    let openai = FakeUpstream::always(Reply::json(
        500,
        json!({"error": {"message": "The server had an error"}}),
    ))
    .await;
    let claude = FakeUpstream::always(Reply::json(200, anthropic_tool_use())).await;
    let gateway = Gateway::openai(
        &openai,
        &[
            "--llm-fallbacks",
            "anthropic:claude-haiku-4-5",
            "--anthropic-api-key",
            ANTHROPIC_KEY,
            "--anthropic-base-url",
            &claude.url,
            "--llm-retries",
            "0",
        ],
    )
    .await;
    let request =
        json!({"model": "gpt-4o-mini", "messages": with_results(asks_for_weather()), "tools": [weather_tool()]});
    let response = gateway
        .post("/v1/chat/completions")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-gateway-provider"], "anthropic");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["id"], "toolu_1",
        "{body}"
    );
    assert_eq!(openai.requests().len(), 1);
    let sent = claude.last().body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["messages"][2]["content"][1]["type"], "tool_result");
}

#[tokio::test]
async fn what_a_provider_cannot_do_is_a_400_naming_it_or_goes_to_one_that_can() {
    let claude = FakeUpstream::always(Reply::json(200, anthropic_tool_use())).await;
    let gateway = anthropic(&claude).await;
    let seeded = json!({"agent_id": "a", "messages": asks_for_weather(), "seed": 7});
    let (status, body) = gateway.chat(seeded.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "seed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("seed") && message.contains("anthropic"), "{message}");
    assert!(claude.requests().is_empty(), "nothing was sent");

    let openai = FakeUpstream::always(Reply::json(200, openai_text_answer("seeded"))).await;
    let base = format!("{}/v1", openai.url);
    let both = Gateway::start(&[
        "--llm-provider",
        "anthropic",
        "--anthropic-api-key",
        ANTHROPIC_KEY,
        "--anthropic-base-url",
        &claude.url,
        "--llm-fallbacks",
        "openai",
        "--openai-api-key",
        OPENAI_KEY,
        "--openai-base-url",
        &base,
    ])
    .await;
    let (status, body) = both.chat(seeded).await;
    assert_eq!(
        (status.as_u16(), body["provider"].as_str()),
        (200, Some("openai")),
        "{body}"
    );
    assert_eq!(openai.last().body["seed"], 7);
    assert!(claude.requests().is_empty());
    let providers: Value = both.get("/v1/providers").send().await.unwrap().json().await.unwrap();
    assert_eq!(providers["providers"][0]["circuit"], "closed", "{providers}");
}

fn image_message() -> Value {
    json!({"role": "user", "content": [{"type": "text", "text": "And this sky?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/sky.jpg", "detail": "low"}}]})
}

/// Two calls whose fragments interleave by index, as parallel calls stream.
fn parallel_stream() -> String {
    let chunk = |calls: Value| {
        let chunk = json!({"id": "gen-1", "object": "chat.completion.chunk", "model": "openai/gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": null}]});
        format!(": OPENROUTER PROCESSING\n\ndata: {chunk}\n\n")
    };
    let head = |index: u32, id: &str| json!([{"index": index, "id": id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}]);
    let piece = |index: u32, text: &str| json!([{"index": index, "function": {"arguments": text}}]);
    let mut body = chunk(head(0, "call_p"));
    body += &chunk(piece(0, "{\"city\":"));
    body += &chunk(head(1, "call_l"));
    body += &chunk(piece(1, "{\"city\":\"Lyon\"}"));
    body += &chunk(piece(0, "\"Paris\"}"));
    body += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n";
    body += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":60,\"completion_tokens\":20,\"cost\":0.0001}}\n\n";
    body + "data: [DONE]\n\n"
}

#[tokio::test]
async fn openrouter_gets_images_and_parameters_natively_and_parallel_calls_stream_back() {
    let fake = FakeUpstream::always(Reply::sse(&parallel_stream(), 9)).await;
    let base = format!("{}/api/v1", fake.url);
    let gateway = Gateway::start(&[
        "--llm-provider",
        "openrouter",
        "--openrouter-api-key",
        "sk-or-v1-test-0123456789",
        "--openrouter-base-url",
        &base,
    ])
    .await;
    let schema = json!({"type": "json_schema", "json_schema": {"name": "sky", "schema": {"type": "object"}}});
    let mut messages = asks_for_weather();
    messages.push(image_message());
    let request = json!({"model": "openai/gpt-4o-mini", "stream": true, "messages": messages, "tools": [weather_tool()],
        "stop": ["END"], "top_p": 0.5, "seed": 3, "response_format": schema, "reasoning_effort": "high"});
    let (calls, finish) = streamed_calls(&gateway, &request).await;
    let call = |id: &str, city: &str| {
        let arguments = format!("{{\"city\":\"{city}\"}}");
        (id.to_owned(), "get_weather".to_owned(), arguments)
    };
    assert_eq!(
        (calls, finish.as_deref()),
        (
            vec![call("call_p", "Paris"), call("call_l", "Lyon")],
            Some("tool_calls")
        )
    );
    let sent = fake.last().body;
    assert_eq!(
        sent["messages"][0]["role"], "system",
        "OpenRouter takes no developer role"
    );
    assert_eq!(sent["messages"][2], image_message(), "image parts pass as sent");
    assert_eq!(sent["reasoning"], json!({"effort": "high"}));
    assert_eq!((&sent["stop"], &sent["seed"]), (&json!(["END"]), &json!(3)));
    assert_eq!(sent["response_format"], schema);
    assert_close_json(&sent["top_p"], &json!(0.5), "top_p");

    // The seed API streams the same two calls as `tool_call` frames.
    let frames = gateway
        .stream(json!({"agent_id": "a", "model": "openai/gpt-4o-mini", "messages": asks_for_weather(), "tools": [weather_tool()]}))
        .await
        .frames();
    let arguments = |index: u64| -> String {
        let frames = frames.iter().filter(|f| f["tool_call"]["index"] == index);
        frames.filter_map(|f| f["tool_call"]["arguments"].as_str()).collect()
    };
    assert_eq!((arguments(0), arguments(1)), (call("", "Paris").2, call("", "Lyon").2));
    assert_eq!(frames.last().unwrap()["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn openai_gets_image_parts_as_sent_and_parallel_calls_come_back_whole() {
    let mut answer = openai_tool_answer();
    let calls = answer["choices"][0]["message"]["tool_calls"].as_array_mut().unwrap();
    calls.push(json!({"id": "call_2", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}));
    let fake = FakeUpstream::always(Reply::json(200, answer.clone())).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let request = json!({"agent_id": "a", "model": "gpt-4o-mini", "tools": [weather_tool()],
        "messages": [image_message()]});
    let (status, body) = gateway.chat(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tool_calls"], answer["choices"][0]["message"]["tool_calls"]);
    assert_eq!(fake.last().body["messages"][0], image_message());
}

#[tokio::test]
async fn parallel_calls_come_back_whole_from_anthropic_and_ollama() {
    let mut claude_answer = anthropic_tool_use();
    let blocks = claude_answer["content"].as_array_mut().unwrap();
    blocks.push(json!({"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Lyon"}}));
    let claude = FakeUpstream::always(Reply::json(200, claude_answer)).await;
    let ollama_answer = json!({"model": "llama3.2", "created_at": "2026-12-03T08:00:00Z", "done": true,
        "done_reason": "stop", "prompt_eval_count": 40, "eval_count": 9,
        "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}]}});
    let local = FakeUpstream::always(Reply::json(200, ollama_answer)).await;
    let local = Gateway::start(&["--llm-provider", "ollama", "--ollama-base-url", &local.url]).await;
    let cases = [
        (anthropic(&claude).await, "claude-haiku-4-5", ["toolu_1", "toolu_2"]),
        (local, "llama3.2", ["call_0", "call_1"]),
    ];
    for (gateway, model, ids) in cases {
        let request = json!({"model": model, "messages": asks_for_weather(), "tools": [weather_tool()]});
        let response = gateway
            .post("/v1/chat/completions")
            .json(&request)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
        let calls: Vec<(&str, &str)> = choice["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap(), c["function"]["arguments"].as_str().unwrap()))
            .collect();
        assert_eq!(
            calls,
            [(ids[0], "{\"city\":\"Paris\"}"), (ids[1], "{\"city\":\"Lyon\"}")]
        );
    }
}

/// A fake Claude that answers through the answer tool only if the request
/// made it the one tool the model must call, with the schema as its input.
fn claude_answering_with(tool: &'static str, schema: Value) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |request| {
        let forced = request.body["tools"]
            == json!([{"name": tool, "description": request.body["tools"][0]["description"], "input_schema": schema}])
            && request.body["tool_choice"] == json!({"type": "tool", "name": tool, "disable_parallel_tool_use": true});
        let (name, pieces) = match forced {
            true => (tool, ["{\"city\": \"Par", "is\", \"temp_c\": 21}"]),
            false => ("untranslated", ["{}", ""]),
        };
        if request.body["stream"] != true {
            let input: Value = serde_json::from_str(&pieces.concat()).unwrap();
            return Reply::json(
                200,
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": name, "input": input}],
                    "stop_reason": "tool_use", "usage": {"input_tokens": 40, "output_tokens": 15}}),
            );
        }
        Reply::sse(&anthropic_tool_use_stream(name, &pieces), 7)
    }
}

fn weather_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
        "required": ["city", "temp_c"], "additionalProperties": false})
}

#[tokio::test]
async fn anthropic_answers_a_json_schema_through_a_forced_tool_as_content_whole_and_streamed() {
    let fake = FakeUpstream::start(claude_answering_with("weather_report", weather_schema())).await;
    let gateway = anthropic(&fake).await;
    let format = json!({"type": "json_schema",
        "json_schema": {"name": "weather_report", "schema": weather_schema(), "strict": true}});
    let expected = json!({"city": "Paris", "temp_c": 21});
    let openai = json!({"model": "claude-haiku-4-5", "messages": asks_for_weather(), "response_format": format});

    let response = gateway.post("/v1/chat/completions").json(&openai).send().await.unwrap();
    let whole: Value = response.json().await.unwrap();
    let message = &whole["choices"][0]["message"];
    let content: Value = serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, expected, "{whole}");
    assert!(message.get("tool_calls").is_none_or(Value::is_null), "{whole}");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");

    let mut streamed = openai.clone();
    streamed["stream"] = json!(true);
    let sse = gateway
        .post("/v1/chat/completions")
        .json(&streamed)
        .send()
        .await
        .unwrap();
    let sse = sse.text().await.unwrap();
    let (calls, finish) = assemble(&sse);
    let text: String = sse_data(&sse)
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected, "{sse}");
    assert_eq!((calls.len(), finish.as_deref()), (0, Some("stop")));

    let seed = json!({"agent_id": "a", "messages": asks_for_weather(), "response_format": format});
    let (status, body) = gateway.chat(seed.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(body["content"].as_str().unwrap()).unwrap(),
        expected
    );
    let frames = gateway.stream(seed).await.frames();
    assert_eq!(
        serde_json::from_str::<Value>(&Streamed::text(&frames)).unwrap(),
        expected
    );
    assert_eq!(frames.last().unwrap()["finish_reason"], "stop");
}

#[tokio::test]
async fn anthropic_answers_json_object_through_a_forced_tool_and_refuses_what_a_tool_cannot_carry() {
    let fake = FakeUpstream::start(claude_answering_with("json_answer", json!({"type": "object"}))).await;
    let gateway = anthropic(&fake).await;
    let asked = json!({"agent_id": "a", "messages": asks_for_weather(), "response_format": {"type": "json_object"}});
    let (status, body) = gateway.chat(asked).await;
    assert_eq!(status, 200, "{body}");
    let content: Value = serde_json::from_str(body["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["city"], "Paris");
    let sent = fake.requests().len();

    let list = json!({"type": "json_schema", "json_schema": {"name": "cities", "schema": {"type": "array"}}});
    let with_tools = json!({"type": "json_schema", "json_schema": {"name": "w", "schema": weather_schema()}});
    for (format, tools) in [(list, json!([])), (with_tools, json!([weather_tool()]))] {
        let asked = json!({"agent_id": "a", "messages": asks_for_weather(), "response_format": format, "tools": tools});
        let (status, body) = gateway.chat(asked).await;
        assert_eq!(
            (status.as_u16(), body["error"]["param"].as_str()),
            (400, Some("response_format")),
            "{body}"
        );
    }
    assert_eq!(fake.requests().len(), sent, "nothing more was sent");
}
