//! A real third-party client, the `async-openai` crate, against the gateway's
//! OpenAI-compatible API, with the gateway in front of fake upstreams.

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::*;

pub(crate) fn sdk(gateway: &Gateway) -> Client<OpenAIConfig> {
    let config = OpenAIConfig::new()
        .with_api_base(format!("{}/v1", gateway.url))
        .with_api_key("tok");
    Client::with_config(config)
}

fn request(model: &str, stream: bool) -> CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(model)
        .user("sdk-agent")
        .max_completion_tokens(100u32)
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content("You are helpful.")
                .build()
                .unwrap()
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content("Hello")
                .build()
                .unwrap()
                .into(),
        ]);
    if stream {
        args.stream(true).stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        });
    }
    args.build().unwrap()
}

async fn behind_anthropic(fake: &FakeUpstream) -> Gateway {
    Gateway::start(&[
        "--llm-provider",
        "anthropic",
        "--anthropic-api-key",
        "sk-ant-test-123456",
        "--anthropic-base-url",
        &fake.url,
        "--gateway-auth-token",
        "tok",
    ])
    .await
}

fn claude_answer() -> Reply {
    Reply::json(
        200,
        json!({"id": "msg", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "Hi from Claude"}], "stop_reason": "max_tokens",
            "usage": {"input_tokens": 12, "output_tokens": 4}}),
    )
}

#[tokio::test]
async fn the_sdk_gets_a_chat_completion_whichever_provider_serves_it() {
    let fake = FakeUpstream::always(claude_answer()).await;
    let gateway = behind_anthropic(&fake).await;
    let response = sdk(&gateway)
        .chat()
        .create(request("claude-3-5-haiku-latest", false))
        .await
        .unwrap();
    assert!(response.id.starts_with("chatcmpl-"));
    assert_eq!(response.object, "chat.completion");
    assert_eq!(response.model, "claude-3-5-haiku-latest");
    assert_eq!(response.choices[0].message.content.as_deref(), Some("Hi from Claude"));
    assert_eq!(format!("{:?}", response.choices[0].finish_reason), "Some(Length)");
    let usage = response.usage.unwrap();
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
        (12, 4, 16)
    );
    let sent = fake.last();
    assert_eq!(sent.body["system"], "You are helpful.");
    assert_eq!(sent.body["max_tokens"], 100);

    let usage: Value = gateway
        .get("/v1/usage")
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        usage["day"]["by_agent"]["sdk-agent"].as_f64().unwrap() > 0.0,
        "agent_id from `user`: {usage}"
    );
}

#[tokio::test]
async fn the_sdk_streams_with_a_final_usage_chunk() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo!\"},\"finish_reason\":\"stop\"}]}\n\n\
                data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
    let fake = FakeUpstream::always(Reply::sse(body, 13)).await;
    let gateway = Gateway::openai(&fake, &[]).await;
    let mut stream = sdk(&gateway)
        .chat()
        .create_stream(request("gpt-4o-mini", true))
        .await
        .unwrap();
    let (mut text, mut usage, mut finish) = (String::new(), None, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.object, "chat.completion.chunk");
        for choice in &chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            finish = finish.or(choice.finish_reason);
        }
        usage = usage.or(chunk.usage);
    }
    assert_eq!(text, "Hello!");
    assert_eq!(format!("{finish:?}"), "Some(Stop)");
    let usage = usage.expect("a usage chunk");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 2));
}

#[tokio::test]
async fn the_sdk_lists_the_configured_models() {
    let gateway = Gateway::start(&["--llm-provider", "mock", "--llm-fallbacks", "ollama:llama3.1,mock"]).await;
    let models = sdk(&gateway).models().list().await.unwrap();
    let ids: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["mock-1", "llama3.1"]);
    assert_eq!(models.data[1].owned_by, "ollama");
}

#[tokio::test]
async fn the_sdk_sees_errors_in_openai_shape() {
    let fake = FakeUpstream::always(claude_answer()).await;
    let gateway = Gateway::start(&[
        "--llm-provider",
        "anthropic",
        "--anthropic-api-key",
        "sk-ant-test-123456",
        "--anthropic-base-url",
        &fake.url,
        "--gateway-auth-token",
        "tok",
        "--llm-daily-budget-usd",
        "0.00001",
    ])
    .await;
    match sdk(&gateway)
        .chat()
        .create(request("claude-3-5-haiku-latest", false))
        .await
    {
        Err(OpenAIError::ApiError(error)) => {
            assert_eq!(error.status_code.as_u16(), 402);
            assert_eq!(error.api_error.code.as_deref(), Some("budget_exceeded"));
            assert_eq!(error.api_error.r#type.as_deref(), Some("insufficient_quota"));
            assert!(
                error.api_error.message.contains("daily budget"),
                "{}",
                error.api_error.message
            );
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert!(fake.requests().is_empty());
    let unauthorized = Client::with_config(OpenAIConfig::new().with_api_base(format!("{}/v1", gateway.url)));
    match unauthorized.chat().create(request("x", false)).await {
        Err(OpenAIError::ApiError(error)) => assert_eq!(error.status_code.as_u16(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn unsupported_parameters_are_named_in_a_400_never_dropped() {
    let gateway = Gateway::start(&[
        "--llm-provider",
        "mock",
        "--gateway-rate-key",
        "agent",
        "--gateway-rate-burst",
        "1",
        "--gateway-rate-rps",
        "0.01",
    ])
    .await;
    let user = json!([{"role": "user", "content": "Hi"}]);
    let cases = [
        (
            json!({"model": "m", "messages": user, "functions": [{"name": "f"}]}),
            "functions",
        ),
        (json!({"model": "m", "messages": user, "n": 2}), "n"),
        (json!({"model": "m", "messages": user, "logprobs": true}), "logprobs"),
        (json!({"model": "m", "messages": user, "top_p": 1.5}), "top_p"),
        (
            json!({"model": "m", "messages": user, "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "messages",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
            "messages",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x", "audio": {"id": "a"}}]}),
            "messages[].audio",
        ),
    ];
    for (body, param) in cases {
        let response = gateway.post("/v1/chat/completions").json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(error["error"]["message"].as_str().unwrap().contains(param), "{error}");
    }
    let harmless = json!({"model": "m", "messages": [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Hi"}], "n": 1, "logprobs": false, "response_format": {"type": "text"}, "user": "u"});
    let call = |agent: Option<&str>| {
        let mut call = gateway.post("/v1/chat/completions").json(&harmless);
        if let Some(agent) = agent {
            call = call.header("x-agent-id", agent);
        }
        call.send()
    };
    let response = call(Some("h")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-gateway-provider"], "mock");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the mock provider! You said: Hi"
    );
    // Agents are keyed by X-Agent-Id, else by `user`: each has its own one-request bucket.
    assert_eq!(call(Some("h")).await.unwrap().status(), 429);
    assert_eq!(call(None).await.unwrap().status(), 200, "agent `u` from the user field");
    let limited = call(None).await.unwrap();
    assert_eq!(limited.status(), 429);
    let error: Value = limited.json().await.unwrap();
    assert_eq!(
        (error["error"]["type"].as_str(), error["error"]["code"].as_str()),
        (Some("rate_limit_error"), Some("rate_limited"))
    );
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_without_done_so_sdks_raise() {
    let gateway = Gateway::start(&["--llm-provider", "mock"]).await;
    let body = json!({"model": "mock-cut", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let text = gateway
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert!(!data.contains(&"[DONE]"), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].as_str().unwrap().contains("cut short"),
        "{last}"
    );
    let first: Value = serde_json::from_str(data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
}
