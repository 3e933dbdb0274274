//! OpenAI's Responses API on the gateway (`/v1/responses`), translated to
//! the chat types and back, whole and streamed, read as raw HTTP.

use serde_json::{json, Value};

use crate::support::*;

/// `(event name, data)` pairs; each data's `type` is its event's name and
/// the sequence numbers count up from 0.
fn events(text: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let name = block.lines().find_map(|l| l.strip_prefix("event: "));
        let data = block.lines().find_map(|l| l.strip_prefix("data: "));
        let (Some(name), Some(data)) = (name, data) else {
            continue;
        };
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["type"], name, "{block}");
        assert_eq!(data["sequence_number"], out.len(), "{block}");
        out.push((name.to_owned(), data));
    }
    out
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn answer(message: Value, finish: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}}),
    )
}

async fn post(gateway: &Gateway, body: &Value) -> reqwest::Response {
    gateway.post("/v1/responses").json(body).send().await.unwrap()
}

#[tokio::test]
async fn a_whole_response_translates_items_tools_and_format_both_ways() {
    let fake = FakeUpstream::start(|request| {
        if request.body["messages"].as_array().unwrap().len() == 2 {
            let call = json!({"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}});
            answer(json!({"role": "assistant", "content": null, "tool_calls": [call]}), "tool_calls")
        } else {
            answer(json!({"role": "assistant", "content": "{\"summary\":\"sunny\"}"}), "stop")
        }
    })
    .await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let question = json!({"role": "user", "content": [
        {"type": "input_text", "text": "Weather where this is?"},
        {"type": "input_image", "image_url": "https://example.com/paris.jpg"}]});
    let first = json!({"model": "gpt-4o-mini", "instructions": "Be terse.", "input": [question], "tools": tools,
        "tool_choice": "required", "max_output_tokens": 200, "user": "planner", "store": false});
    let response = post(&gateway, &first).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "response");
    assert!(body["id"].as_str().unwrap().starts_with("resp_"), "{body}");
    assert_eq!(body["status"], "completed");
    let call = &body["output"][0];
    assert_eq!(
        (
            call["type"].as_str(),
            call["call_id"].as_str(),
            call["name"].as_str(),
            call["arguments"].as_str()
        ),
        (
            Some("function_call"),
            Some("call_7"),
            Some("get_weather"),
            Some("{\"city\":\"Paris\"}")
        ),
        "{body}"
    );
    assert_eq!(body["usage"]["input_tokens"], 30);
    assert_eq!(body["usage"]["output_tokens"], 8);
    assert_eq!(body["usage"]["total_tokens"], 38);
    let sent = fake.last().body;
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Be terse."}));
    assert_eq!(
        sent["messages"][1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["max_completion_tokens"], 200);
    assert_eq!(sent["user"], "planner");

    let second = json!({"model": "gpt-4o-mini", "instructions": "Be terse.", "store": false,
        "input": [question, call, {"type": "function_call_output", "call_id": "call_7", "output": "24 C, sunny"}],
        "text": {"format": {"type": "json_schema", "name": "weather", "schema": {"type": "object", "properties": {"summary": {"type": "string"}}}}}});
    let body: Value = post(&gateway, &second).await.json().await.unwrap();
    assert_eq!(body["output"][0]["type"], "message", "{body}");
    assert_eq!(
        body["output"][0]["content"][0],
        json!({"type": "output_text", "text": "{\"summary\":\"sunny\"}", "annotations": []})
    );
    assert_eq!(body["output_text"], "{\"summary\":\"sunny\"}");
    assert_eq!(body["text"]["format"]["type"], "json_schema");
    let sent = fake.last().body;
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_7");
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "24 C, sunny", "tool_call_id": "call_7"})
    );
    assert_eq!(sent["response_format"]["json_schema"]["name"], "weather");
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

#[tokio::test]
async fn a_stream_follows_the_documented_event_sequence_and_a_cut_one_fails() {
    let mut whole = chunk(json!({"role": "assistant", "content": ""}), None);
    for text in ["Let me ", "check."] {
        whole.push_str(&chunk(json!({"content": text}), None));
    }
    whole.push_str(&chunk(json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), None));
    for piece in ["{\"city\":", "\"Paris\"}"] {
        whole.push_str(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            None,
        ));
    }
    whole.push_str(&chunk(json!({}), Some("tool_calls")));
    whole.push_str(
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n",
    );
    let cut = chunk(json!({"content": "Hal"}), None);
    let fake = FakeUpstream::start(move |request| match request.body["user"].as_str() {
        Some("cut") => Reply::sse(&cut, 5).framing(Framing::ChunkedCut),
        _ => Reply::sse(&whole, 7),
    })
    .await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let request = json!({"model": "gpt-4o-mini", "input": "Weather in Paris?", "stream": true,
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]});
    let response = post(&gateway, &request).await;
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let streamed = events(&response.text().await.unwrap());
    assert_eq!(
        names(&streamed),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(streamed[0].1["response"]["status"], "in_progress");
    assert_eq!(streamed[6].1["text"], "Let me check.");
    assert_eq!(streamed[9].1["item"]["call_id"], "call_9");
    assert_eq!(streamed[12].1["arguments"], "{\"city\":\"Paris\"}");
    let completed = &streamed.last().unwrap().1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["content"][0]["text"], "Let me check.");
    assert_eq!(completed["output"][1]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(completed["usage"]["input_tokens"], 12);
    assert_eq!(completed["usage"]["output_tokens"], 7);
    assert_eq!(fake.last().body["stream"], true);

    let mut cut_request = request.clone();
    cut_request["user"] = "cut".into();
    let cut_events = events(&post(&gateway, &cut_request).await.text().await.unwrap());
    let cut_names = names(&cut_events);
    assert_eq!(
        &cut_names[cut_names.len() - 2..],
        ["error", "response.failed"],
        "{cut_names:?}"
    );
    assert!(!cut_names.contains(&"response.completed"));
    assert_eq!(cut_events.last().unwrap().1["response"]["status"], "failed");
}

#[tokio::test]
async fn what_cannot_be_served_is_a_400_naming_it_in_openais_shape() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    for (body, param) in [
        (
            json!({"model": "mock-1", "input": "hi", "tools": [{"type": "web_search_preview"}]}),
            "tools[].web_search_preview",
        ),
        (
            json!({"model": "mock-1", "input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "mock-1", "input": "hi", "background": true}),
            "background",
        ),
    ] {
        let response = post(&gateway, &body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let simple: Value = post(&gateway, &json!({"model": "mock-1", "input": "Hello"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        simple["output_text"], "Hello from the mock provider! You said: Hello",
        "{simple}"
    );
}

#[tokio::test]
async fn previous_response_id_continues_a_stored_conversation_of_the_same_agent_only() {
    let fake = FakeUpstream::start(|request| {
        let turns = request.body["messages"].as_array().unwrap().len();
        let text = format!("answer after {turns} messages");
        if request.body["stream"] == true {
            let mut body = chunk(json!({"content": text}), None);
            body.push_str(&chunk(json!({}), Some("stop")));
            body.push_str(
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n",
            );
            return Reply::sse(&body, 64);
        }
        answer(json!({"role": "assistant", "content": text}), "stop")
    })
    .await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let first: Value = post(
        &gateway,
        &json!({"model": "gpt-4o-mini", "instructions": "Be terse.", "input": "Hi, I am Ada.", "user": "ada"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["output_text"], "answer after 2 messages");
    let second = post(
        &gateway,
        &json!({"model": "gpt-4o-mini", "instructions": "Be kind.", "input": "What is my name?", "user": "ada", "previous_response_id": id}),
    )
    .await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["previous_response_id"], id.as_str());
    let sent = fake.last().body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hi, I am Ada."},
            {"role": "assistant", "content": "answer after 2 messages"},
            {"role": "user", "content": "What is my name?"}
        ]),
        "the stored turns, without the old instructions, then the new input"
    );

    // A streamed response is stored too, and continued from at once.
    let streamed = post(&gateway, &json!({"model": "gpt-4o-mini", "input": "And now?", "user": "ada", "stream": true, "previous_response_id": second["id"]}))
        .await
        .text()
        .await
        .unwrap();
    let streamed_id = events(&streamed)[0].1["response"]["id"].as_str().unwrap().to_owned();
    let third = post(
        &gateway,
        &json!({"model": "gpt-4o-mini", "input": "Last one.", "user": "ada", "previous_response_id": streamed_id}),
    )
    .await;
    assert_eq!(third.status(), 200);
    assert_eq!(fake.last().body["messages"].as_array().unwrap().len(), 7);

    let refused = [
        json!({"model": "gpt-4o-mini", "input": "Whose is this?", "user": "mallory", "previous_response_id": id}),
        json!({"model": "gpt-4o-mini", "input": "?", "user": "ada", "previous_response_id": "resp_unknown"}),
    ];
    for body in refused {
        let response = post(&gateway, &body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], "previous_response_id");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no stored response"),
            "{error}"
        );
    }
    let unstored: Value = post(
        &gateway,
        &json!({"model": "gpt-4o-mini", "input": "x", "user": "ada", "store": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    let again = post(
        &gateway,
        &json!({"model": "gpt-4o-mini", "input": "y", "user": "ada", "previous_response_id": unstored["id"]}),
    )
    .await;
    assert_eq!(again.status(), 400, "store: false keeps nothing");
}

fn sdk(gateway: &Gateway) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    let config = async_openai::config::OpenAIConfig::new()
        .with_api_base(format!("{}/v1", gateway.url))
        .with_api_key("unused");
    async_openai::Client::with_config(config)
}

fn sdk_request(body: Value) -> async_openai::types::responses::CreateResponse {
    serde_json::from_value(body).expect("the SDK's request type reads it")
}

#[tokio::test]
async fn the_async_openai_responses_client_runs_a_function_call_loop_whole_and_streamed() {
    use async_openai::types::responses::{OutputItem, ResponseStreamEvent};
    use futures_util::StreamExt;

    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let client = sdk(&gateway);
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": false}]);
    let ask = json!({"role": "user", "content": "Weather in Paris?"});
    let first = client
        .responses()
        .create(sdk_request(
            json!({"model": "mock-1", "input": [ask], "tools": tools, "store": false}),
        ))
        .await
        .expect("the SDK reads the whole response");
    let call = first
        .output
        .iter()
        .find_map(|item| match item {
            OutputItem::FunctionCall(call) => Some(call.clone()),
            _ => None,
        })
        .expect("a function call");
    assert_eq!(call.name, "get_weather");
    let output = json!({"type": "function_call_output", "call_id": call.call_id, "output": "24 C, sunny"});
    let call_item =
        json!({"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments});
    let second = client
        .responses()
        .create(sdk_request(
            json!({"model": "mock-1", "input": [ask, call_item, output], "tools": tools, "store": false}),
        ))
        .await
        .unwrap();
    assert_eq!(second.output_text().as_deref(), Some("The tool answered: 24 C, sunny"));

    let mut stream = client
        .responses()
        .create_stream(sdk_request(
            json!({"model": "mock-1", "input": "Hello", "stream": true}),
        ))
        .await
        .unwrap();
    let (mut text, mut completed) = (String::new(), None);
    while let Some(event) = stream.next().await {
        match event.expect("the SDK reads every event") {
            ResponseStreamEvent::ResponseOutputTextDelta(delta) => text.push_str(&delta.delta),
            ResponseStreamEvent::ResponseCompleted(done) => completed = Some(done.response),
            _ => {}
        }
    }
    assert_eq!(text, "Hello from the mock provider! You said: Hello");
    let completed = completed.expect("a response.completed event");
    assert_eq!(completed.output_text().as_deref(), Some(text.as_str()));
    assert!(completed.usage.expect("usage").total_tokens > 0);
}

fn anthropic_events(parts: &[&str]) -> String {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut body = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
        "content": [], "model": "claude-3-5-haiku-latest", "usage": {"input_tokens": 9, "output_tokens": 1}}}),
    );
    body.push_str(&event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    for part in parts {
        body.push_str(&event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}),
        ));
    }
    body.push_str(&event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    body.push_str(&event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
    ));
    body + &event("message_stop", json!({"type": "message_stop"}))
}

#[tokio::test]
async fn anthropic_and_ollama_answer_as_responses_whole_and_streamed() {
    let anthropic = FakeUpstream::start(|request| match request.body["stream"].as_bool() {
        Some(true) => Reply::sse(&anthropic_events(&["Bonjour", " Ada"]), 13),
        _ => Reply::json(
            200,
            json!({"id": "m", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
            "content": [{"type": "text", "text": "Bonjour Ada"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 9, "output_tokens": 4}}),
        ),
    })
    .await;
    let ollama = FakeUpstream::start(|request| {
        let line = |content: &str, done: bool| {
            json!({"model": "llama3.2", "message": {"role": "assistant", "content": content}, "done": done,
                "done_reason": if done { "stop" } else { "" }, "prompt_eval_count": 9, "eval_count": 4})
            .to_string()
        };
        match request.body["stream"].as_bool() {
            Some(true) => Reply::pieces(
                "application/x-ndjson",
                &format!(
                    "{}\n{}\n{}\n",
                    line("Bonjour", false),
                    line(" Ada", false),
                    line("", true)
                ),
                17,
            ),
            _ => Reply::json(200, serde_json::from_str(&line("Bonjour Ada", true)).unwrap()),
        }
    })
    .await;
    let gateways = [
        Gateway::start(&[
            "--llm-provider",
            "anthropic",
            "--anthropic-api-key",
            "sk-ant-test-0123456789",
            "--anthropic-base-url",
            &anthropic.url,
        ])
        .await,
        Gateway::start(&["--llm-provider", "ollama", "--ollama-base-url", &ollama.url]).await,
    ];
    for gateway in &gateways {
        let whole: Value = post(gateway, &json!({"input": "Say hello to Ada in French."}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(whole["output_text"], "Bonjour Ada", "{whole}");
        assert_eq!(whole["usage"]["input_tokens"], 9);
        let streamed = post(
            gateway,
            &json!({"input": "Say hello to Ada in French.", "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap();
        let streamed = events(&streamed);
        let completed = &streamed.last().unwrap().1;
        assert_eq!(completed["type"], "response.completed");
        assert_eq!(completed["response"]["output_text"], "Bonjour Ada");
        assert_eq!(completed["response"]["usage"]["output_tokens"], 4);
    }
    assert_eq!(
        anthropic.last().body["messages"][0]["content"],
        "Say hello to Ada in French."
    );
    assert_eq!(
        ollama.last().body["messages"][0]["content"],
        "Say hello to Ada in French."
    );
}

#[tokio::test]
async fn the_budget_and_the_rate_limit_refuse_on_this_route_as_on_the_others() {
    let gateway = Gateway::start(&[
        "--llm-provider",
        "mock",
        "--llm-daily-budget-usd",
        "0.0000001",
        "--gateway-rate-rps",
        "0.01",
        "--gateway-rate-burst",
        "2",
    ])
    .await;
    let response = post(&gateway, &json!({"model": "gpt-4o-mini", "input": "hi"})).await;
    assert_eq!(response.status(), 402);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    // The rate limit comes first, so that refusal took a token; the free mock
    // model passes the budget and takes the second.
    assert_eq!(
        post(&gateway, &json!({"model": "mock-1", "input": "hi"}))
            .await
            .status(),
        200
    );
    let limited = post(&gateway, &json!({"model": "mock-1", "input": "hi"})).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn a_stored_response_is_continued_after_a_restart() {
    let db = temp_db();
    let args = ["--llm-provider", "mock", "--gateway-db", db.to_str().unwrap()];
    let first: Value = {
        let gateway = Gateway::start(&args).await;
        post(
            &gateway,
            &json!({"model": "mock-1", "input": "Remember me.", "user": "ada"}),
        )
        .await
        .json()
        .await
        .unwrap()
    };
    let restarted = Gateway::start(&args).await;
    let response = post(
        &restarted,
        &json!({"model": "mock-1", "input": "Still there?", "user": "ada", "previous_response_id": first["id"]}),
    )
    .await;
    assert_eq!(response.status(), 200, "the store outlives the process");
}
