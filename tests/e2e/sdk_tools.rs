//! The `async-openai` SDK runs a two-turn tool loop through
//! `/v1/chat/completions` in front of every provider, whole and streamed: the
//! model calls a tool, the app sends the result back in the SDK's own types,
//! the model answers. Each fake upstream answers with text only when the tool
//! result reached it translated into that provider's format.

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestMessage, ChatCompletionRequestToolMessage, CreateChatCompletionRequest, FinishReason,
    FunctionCall,
};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::openai_compat::sdk;
use crate::support::*;

const RESULT: &str = "18°C and sunny";

#[derive(Clone, Copy, Debug)]
enum Provider {
    OpenAi,
    OpenRouter,
    Anthropic,
    Ollama,
    Mock,
}

/// What the SDK saw over both turns of one loop.
#[derive(Debug)]
struct Loop {
    calls: Vec<(String, Value)>,
    first_finish: Option<FinishReason>,
    answer: String,
    last_finish: Option<FinishReason>,
}

fn first_turn(model: &str, stream: bool) -> CreateChatCompletionRequest {
    serde_json::from_value(json!({"model": model, "stream": stream, "max_completion_tokens": 200,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        "messages": [{"role": "system", "content": "Use the tools you have."},
            {"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "auto"}))
    .expect("an SDK request")
}

/// The second turn in the SDK's own types: its assistant message carrying the
/// calls it received, then one tool message per call.
fn second_turn(
    mut request: CreateChatCompletionRequest,
    calls: Vec<ChatCompletionMessageToolCall>,
) -> CreateChatCompletionRequest {
    let results: Vec<ChatCompletionRequestMessage> = calls
        .iter()
        .map(|call| {
            ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: RESULT.into(),
                tool_call_id: call.id.clone(),
            })
        })
        .collect();
    request.messages.push(ChatCompletionRequestMessage::Assistant(
        ChatCompletionRequestAssistantMessage {
            tool_calls: Some(
                calls
                    .into_iter()
                    .map(ChatCompletionMessageToolCalls::Function)
                    .collect(),
            ),
            ..Default::default()
        },
    ));
    request.messages.extend(results);
    request
}

async fn whole(
    gateway: &Gateway,
    request: CreateChatCompletionRequest,
) -> (String, Vec<ChatCompletionMessageToolCall>, Option<FinishReason>) {
    let response = sdk(gateway).chat().create(request).await.expect("a completion");
    let choice = response.choices.into_iter().next().expect("a choice");
    let calls = choice
        .message
        .tool_calls
        .into_iter()
        .flatten()
        .map(|call| match call {
            ChatCompletionMessageToolCalls::Function(call) => call,
            other => panic!("a function call, not {other:?}"),
        })
        .collect();
    (choice.message.content.unwrap_or_default(), calls, choice.finish_reason)
}

/// Assembles streamed `delta.tool_calls` pieces by index, as SDK users do.
async fn streamed(
    gateway: &Gateway,
    request: CreateChatCompletionRequest,
) -> (String, Vec<ChatCompletionMessageToolCall>, Option<FinishReason>) {
    let mut stream = sdk(gateway).chat().create_stream(request).await.expect("a stream");
    let (mut text, mut calls, mut finish) = (String::new(), Vec::<ChatCompletionMessageToolCall>::new(), None);
    while let Some(chunk) = stream.next().await {
        for choice in chunk.expect("a chunk").choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            for piece in choice.delta.tool_calls.into_iter().flatten() {
                let index = piece.index as usize;
                if index == calls.len() {
                    calls.push(ChatCompletionMessageToolCall::default());
                }
                let call = &mut calls[index];
                call.id.push_str(piece.id.as_deref().unwrap_or(""));
                if let Some(function) = piece.function {
                    call.function.name.push_str(function.name.as_deref().unwrap_or(""));
                    call.function
                        .arguments
                        .push_str(function.arguments.as_deref().unwrap_or(""));
                }
            }
            finish = finish.or(choice.finish_reason);
        }
    }
    (text, calls, finish)
}

async fn run_loop(gateway: &Gateway, model: &str, stream: bool) -> Loop {
    let turn = |request| async move {
        match stream {
            true => streamed(gateway, request).await,
            false => whole(gateway, request).await,
        }
    };
    let request = first_turn(model, stream);
    let (_, calls, first_finish) = turn(request.clone()).await;
    let named = calls
        .iter()
        .map(|call| {
            let FunctionCall { name, arguments } = &call.function;
            (name.clone(), serde_json::from_str(arguments).expect("JSON arguments"))
        })
        .collect();
    let (answer, _, last_finish) = turn(second_turn(request, calls)).await;
    Loop {
        calls: named,
        first_finish,
        answer,
        last_finish,
    }
}

fn openai_sse(chunks: &[Value], usage: Value, keep_alive: bool) -> String {
    let mut body = String::new();
    for delta in chunks {
        if keep_alive {
            body += ": OPENROUTER PROCESSING\n\n";
        }
        body += &format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [delta]})
        );
    }
    body + &format!("data: {}\n\ndata: [DONE]\n\n", json!({"choices": [], "usage": usage}))
}

/// OpenAI's format; OpenRouter's adds keep-alive comments and a reported cost.
fn openai_like(request: &Recorded, keep_alive: bool) -> Reply {
    let last = request.body["messages"].as_array().unwrap().last().unwrap();
    let answered = last["role"] == "tool" && last["tool_call_id"] == "call_abc" && last["content"] == RESULT;
    let usage = json!({"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49, "cost": 0.00001});
    let call = json!({"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}});
    let message = match answered {
        true => json!({"role": "assistant", "content": "Paris: 18°C."}),
        false => json!({"role": "assistant", "content": null, "tool_calls": [call]}),
    };
    let finish = if answered { "stop" } else { "tool_calls" };
    if request.body["stream"] != true {
        let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m", "usage": usage,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]});
        return Reply::json(200, body);
    }
    let choice = |delta: Value, finish: Value| json!({"index": 0, "delta": delta, "finish_reason": finish});
    let mut chunks = vec![choice(json!({"role": "assistant", "content": null}), Value::Null)];
    if answered {
        chunks.extend(["Paris: ", "18°C."].map(|text| choice(json!({"content": text}), Value::Null)));
    } else {
        let head = json!({"index": 0, "id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": ""}});
        chunks.push(choice(json!({"tool_calls": [head]}), Value::Null));
        for piece in ["{\"ci", "ty\": \"Pa", "ris\"}"] {
            let piece = json!({"index": 0, "function": {"arguments": piece}});
            chunks.push(choice(json!({"tool_calls": [piece]}), Value::Null));
        }
    }
    chunks.push(choice(json!({}), json!(finish)));
    Reply::sse(&openai_sse(&chunks, usage, keep_alive), 11)
}

fn anthropic(request: &Recorded) -> Reply {
    let last = request.body["messages"].as_array().unwrap().last().unwrap();
    let result = json!({"type": "tool_result", "tool_use_id": "toolu_01A", "content": RESULT});
    let answered = last["role"] == "user"
        && last["content"]
            .as_array()
            .is_some_and(|blocks| blocks.contains(&result));
    let tool_use = json!({"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}});
    let (blocks, stop) = match answered {
        true => (json!([{"type": "text", "text": "Paris: 18°C."}]), "end_turn"),
        false => (json!([{"type": "text", "text": "Checking."}, tool_use]), "tool_use"),
    };
    if request.body["stream"] != true {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": blocks, "stop_reason": stop, "usage": {"input_tokens": 40, "output_tokens": 9}});
        return Reply::json(200, body);
    }
    let event = |data: Value| format!("event: {}\ndata: {data}\n\n", data["type"].as_str().unwrap());
    let mut body = event(
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "content": [], "model": "claude-haiku-4-5", "usage": {"input_tokens": 40, "output_tokens": 1}}}),
    );
    body += &event(json!({"type": "ping"}));
    let text_block = |index: u32, pieces: &[&str]| {
        let mut events = event(
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        );
        for piece in pieces {
            events += &event(
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            );
        }
        events + &event(json!({"type": "content_block_stop", "index": index}))
    };
    if answered {
        body += &text_block(0, &["Paris: ", "18°C."]);
    } else {
        body += &text_block(0, &["Checking."]);
        body += &event(json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}}));
        for piece in ["", "{\"city\"", ": \"Paris\"}"] {
            body += &event(json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": piece}}));
        }
        body += &event(json!({"type": "content_block_stop", "index": 1}));
    }
    body += &event(json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 9}}));
    body += &event(json!({"type": "message_stop"}));
    Reply::sse(&body, 13)
}

fn ollama(request: &Recorded) -> Reply {
    let last = request.body["messages"].as_array().unwrap().last().unwrap();
    let answered = *last == json!({"role": "tool", "content": RESULT, "tool_name": "get_weather"});
    let message = match answered {
        true => json!({"role": "assistant", "content": "Paris: 18°C."}),
        false => json!({"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}),
    };
    let done = json!({"model": "llama3.2", "created_at": "2026-12-03T09:00:00Z", "done": true, "done_reason": "stop",
        "prompt_eval_count": 40, "eval_count": 9});
    if request.body["stream"] != true {
        let mut whole = done;
        whole["message"] = message;
        return Reply::json(200, whole);
    }
    let line = json!({"model": "llama3.2", "created_at": "2026-12-03T09:00:00Z", "message": message, "done": false});
    let mut last_line = done;
    last_line["message"] = json!({"role": "assistant", "content": ""});
    Reply::pieces("application/x-ndjson", &format!("{line}\n{last_line}\n"), 17)
}

async fn gateway(provider: Provider) -> (Gateway, Option<FakeUpstream>, &'static str) {
    let fake = |handler: fn(&Recorded) -> Reply| FakeUpstream::start(handler);
    let (fake, model) = match provider {
        Provider::OpenAi => (fake(|r| openai_like(r, false)).await, "gpt-4o-mini"),
        Provider::OpenRouter => (fake(|r| openai_like(r, true)).await, "openai/gpt-4o-mini"),
        Provider::Anthropic => (fake(anthropic).await, "claude-haiku-4-5"),
        Provider::Ollama => (fake(ollama).await, "llama3.2"),
        Provider::Mock => return (Gateway::start(&["--llm-provider", "mock"]).await, None, "mock-1"),
    };
    let base = match provider {
        Provider::OpenAi => format!("{}/v1", fake.url),
        Provider::OpenRouter => format!("{}/api/v1", fake.url),
        _ => fake.url.clone(),
    };
    let args: &[&str] = match provider {
        Provider::OpenAi => &["openai", "--openai-api-key", "sk-proj-abc", "--openai-base-url"],
        Provider::OpenRouter => &[
            "openrouter",
            "--openrouter-api-key",
            "sk-or-v1-abc",
            "--openrouter-base-url",
        ],
        Provider::Anthropic => &["anthropic", "--anthropic-api-key", "sk-ant-abc", "--anthropic-base-url"],
        _ => &["ollama", "--ollama-base-url"],
    };
    let mut flags = vec!["--llm-provider"];
    flags.extend_from_slice(args);
    flags.extend([
        base.as_str(),
        "--gateway-auth-token",
        "tok",
        "--llm-default-model",
        model,
    ]);
    (Gateway::start(&flags).await, Some(fake), model)
}

async fn check(provider: Provider, arguments: Value, answer: &str) {
    let (gateway, fake, model) = gateway(provider).await;
    for stream in [false, true] {
        let run = run_loop(&gateway, model, stream).await;
        let context = format!("{provider:?}, stream {stream}: {run:?}");
        assert_eq!(run.calls, [("get_weather".to_owned(), arguments.clone())], "{context}");
        assert_eq!(run.first_finish, Some(FinishReason::ToolCalls), "{context}");
        assert_eq!(
            (run.answer.as_str(), run.last_finish),
            (answer, Some(FinishReason::Stop)),
            "{context}"
        );
    }
    if let Some(fake) = fake {
        let sent: Vec<bool> = fake.requests().iter().map(|r| r.body["stream"] == true).collect();
        assert_eq!(sent, [false, false, true, true], "{provider:?}");
    }
}

#[tokio::test]
async fn the_sdk_runs_a_tool_loop_through_openai() {
    check(Provider::OpenAi, json!({"city": "Paris"}), "Paris: 18°C.").await;
}

#[tokio::test]
async fn the_sdk_runs_a_tool_loop_through_openrouter() {
    check(Provider::OpenRouter, json!({"city": "Paris"}), "Paris: 18°C.").await;
}

#[tokio::test]
async fn the_sdk_runs_a_tool_loop_through_anthropic() {
    check(Provider::Anthropic, json!({"city": "Paris"}), "Paris: 18°C.").await;
}

#[tokio::test]
async fn the_sdk_runs_a_tool_loop_through_ollama() {
    check(Provider::Ollama, json!({"city": "Paris"}), "Paris: 18°C.").await;
}

#[tokio::test]
async fn the_sdk_runs_a_tool_loop_through_the_mock() {
    check(
        Provider::Mock,
        json!({"city": "Weather in Paris?"}),
        &format!("The tool answered: {RESULT}"),
    )
    .await;
}
