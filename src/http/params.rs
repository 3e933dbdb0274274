//! What both chat APIs take besides the messages, in OpenAI's names:
//! sampling, the output cap, tools, structured output. Each value is checked
//! here, at the edge, so every provider gets a request that makes sense.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrysalis_services::chat::{stop_sequences, ReasoningEffort};
use chrysalis_services::{ChatRequest, Message, ResponseFormat, Tool, ToolChoice};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Stop sequences a request may carry (OpenAI's limit is 4; Anthropic takes more).
const MAX_STOP: usize = 16;
/// Tools a request may carry (OpenAI's limit).
const MAX_TOOLS: usize = 128;

#[derive(Deserialize, Default)]
pub(super) struct Params {
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default, deserialize_with = "stop_sequences")]
    stop: Vec<String>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
    #[serde(default)]
    reasoning_effort: Option<ReasoningEffort>,
    #[serde(default)]
    pub(super) user: Option<String>,
}

impl Params {
    /// Checks every value and sets it on `request`.
    pub(super) fn apply(self, request: &mut ChatRequest) -> Result<(), ApiError> {
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        in_range("top_p", self.top_p, 0.0, 1.0)?;
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return Err(invalid("max_tokens", "`max_tokens` must be at least 1".into()));
        }
        if self.stop.len() > MAX_STOP || self.stop.iter().any(String::is_empty) {
            let why = format!("`stop` holds 1 to {MAX_STOP} non-empty sequences");
            return Err(invalid("stop", why));
        }
        let tools = self.tools.unwrap_or_default();
        check_tools(&tools, self.tool_choice.as_ref())?;
        request.temperature = self.temperature;
        request.top_p = self.top_p;
        request.max_tokens = max_tokens;
        request.stop = self.stop.into();
        request.seed = self.seed;
        request.presence_penalty = self.presence_penalty;
        request.frequency_penalty = self.frequency_penalty;
        request.tools = tools.into();
        request.tool_choice = self.tool_choice;
        request.parallel_tool_calls = self.parallel_tool_calls;
        request.response_format = self.response_format.map(Arc::new);
        request.reasoning_effort = self.reasoning_effort;
        request.user = self.user;
        Ok(())
    }
}

pub(super) fn in_range(param: &'static str, value: Option<f32>, low: f32, high: f32) -> Result<(), ApiError> {
    match value {
        Some(v) if !(low..=high).contains(&v) => {
            Err(invalid(param, format!("`{param}` must be between {low} and {high}")))
        }
        _ => Ok(()),
    }
}

pub(super) fn check_tools(tools: &[Tool], choice: Option<&ToolChoice>) -> Result<(), ApiError> {
    if tools.len() > MAX_TOOLS {
        return Err(invalid("tools", format!("at most {MAX_TOOLS} tools")));
    }
    let valid_name = |name: &str| {
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if let Some(tool) = tools.iter().find(|t| !valid_name(&t.name)) {
        let why = format!("tool name `{}` must be 1 to 64 letters, digits, `_` or `-`", tool.name);
        return Err(invalid("tools", why));
    }
    match choice {
        Some(ToolChoice::Function(name)) if !tools.iter().any(|t| &t.name == name) => Err(invalid(
            "tool_choice",
            format!("`tool_choice` names `{name}`, which is not among `tools`"),
        )),
        Some(ToolChoice::Required | ToolChoice::Function(_)) if tools.is_empty() => Err(invalid(
            "tool_choice",
            "`tool_choice` asks for a tool call, but there are no `tools`".into(),
        )),
        _ => Ok(()),
    }
}

/// A message as the APIs take it: the chat model's fields, and any others,
/// which must be absent or `null` (SDKs echo `refusal: null` back).
#[derive(Deserialize)]
pub(super) struct WireMessage {
    #[serde(flatten)]
    message: Message,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

impl WireMessage {
    fn into_message(self, index: usize) -> Result<Message, ApiError> {
        let ignorable = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
        if let Some((name, _)) = self.other.iter().find(|(_, v)| !ignorable(v)) {
            return Err(ApiError::unsupported(
                format!("messages[].{name}"),
                "messages carry role, content, name, tool_calls and tool_call_id",
            ));
        }
        if let Some(problem) = self.message.problem() {
            return Err(invalid("messages", format!("`messages[{index}]`: {problem}")));
        }
        Ok(self.message)
    }
}

/// The messages, each checked.
pub(super) fn messages(messages: Vec<WireMessage>) -> Result<Vec<Message>, ApiError> {
    if messages.is_empty() {
        return Err(invalid("messages", "`messages` must hold at least one message".into()));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.into_message(i))
        .collect()
}

pub(super) fn invalid(param: &str, message: String) -> ApiError {
    ApiError {
        param: Some(param.into()),
        ..ApiError::invalid_request(message)
    }
}
