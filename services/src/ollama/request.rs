//! A chat request in Ollama's shape: text content with base64 `images`,
//! tool calls with arguments as JSON objects, `format` for structured
//! output, and sampling settings under `options`.

use serde::Serialize;
use serde_json::Value;

use super::NAME;
use crate::chat::{ChatRequest, Message, ResponseFormat, Role, Tool, ToolChoice};
use crate::error::ProviderError;

#[derive(Serialize)]
pub(super) struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "<[Tool]>::is_empty")]
    tools: &'a [Tool],
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Value>,
    stream: bool,
    options: WireOptions<'a>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: Role,
    content: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    /// The function a `tool` message answers (Ollama matches by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    arguments: Value,
}

#[derive(Serialize)]
struct WireOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
}

impl<'a> WireRequest<'a> {
    /// The request for `model`, or what in it Ollama cannot do.
    pub(super) fn new(model: &'a str, request: &'a ChatRequest) -> Result<Self, ProviderError> {
        refuse_what_ollama_lacks(request)?;
        let no_tools = request.tool_choice == Some(ToolChoice::None);
        let messages = request
            .messages
            .iter()
            .map(|m| message(m, &request.messages))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            model,
            messages,
            tools: if no_tools { &[] } else { &request.tools },
            format: match request.response_format.as_deref() {
                Some(ResponseFormat::JsonObject) => Some(Value::from("json")),
                Some(ResponseFormat::JsonSchema { json_schema }) => json_schema.schema.clone().or(Some("json".into())),
                Some(ResponseFormat::Text) | None => None,
            },
            // Ollama streams unless told not to.
            stream: request.stream,
            options: WireOptions {
                temperature: request.temperature,
                top_p: request.top_p,
                top_k: request.top_k,
                seed: request.seed,
                stop: &request.stop,
                num_predict: request.max_tokens,
                presence_penalty: request.presence_penalty,
                frequency_penalty: request.frequency_penalty,
            },
        })
    }
}

fn refuse_what_ollama_lacks(request: &ChatRequest) -> Result<(), ProviderError> {
    let unsupported = |param: &str, why: &str| Err(ProviderError::unsupported(NAME, param, why));
    if let Some(what) = request.anthropic_only() {
        return unsupported(what, "only Anthropic takes it");
    }
    match request.tool_choice {
        Some(ToolChoice::Required | ToolChoice::Function(_)) => {
            return unsupported(
                "tool_choice",
                "Ollama lets the model decide (`auto`) or takes no tools (`none`)",
            )
        }
        _ if request.parallel_tool_calls == Some(false) => {
            return unsupported("parallel_tool_calls", "Ollama cannot hold a model to one call a turn")
        }
        _ => {}
    }
    if request.reasoning_effort.is_some() {
        return unsupported(
            "reasoning_effort",
            "Ollama turns thinking on or off per model, not by effort",
        );
    }
    let by_url = request
        .messages
        .iter()
        .flat_map(|m| m.content.images())
        .any(|i| i.inline().is_none());
    if by_url {
        return unsupported(
            "messages[].content",
            "Ollama takes images as base64 `data:` URLs, not by URL",
        );
    }
    Ok(())
}

fn message<'a>(message: &'a Message, all: &'a [Message]) -> Result<WireMessage<'a>, ProviderError> {
    let role = if message.role == Role::Developer {
        Role::System
    } else {
        message.role
    };
    let tool_calls = message
        .tool_calls
        .iter()
        .map(|call| {
            let arguments = call.arguments_object(NAME)?;
            Ok(WireToolCall {
                function: WireFunction {
                    name: &call.name,
                    arguments,
                },
            })
        })
        .collect::<Result<_, ProviderError>>()?;
    let tool_name = message.tool_call_id.as_deref().and_then(|id| {
        let calls = all.iter().flat_map(|m| &m.tool_calls);
        calls.filter(|c| c.id == id).map(|c| c.name.as_str()).next()
    });
    Ok(WireMessage {
        role,
        content: message.text(),
        images: message
            .content
            .images()
            .filter_map(|i| i.inline())
            .map(|(_, data)| data)
            .collect(),
        tool_calls,
        tool_name,
    })
}
