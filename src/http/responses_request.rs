//! An OpenAI Responses request as a chat request: `instructions` to a
//! system message, `input` (a string, or items: messages with `input_text`
//! and `input_image` parts, `function_call` and `function_call_output`
//! items) to the conversation, function tools to tools, `text.format` to
//! the response format. Built-in tools (web search, file search, computer
//! use, ...) are refused with a 400 naming them: only OpenAI runs them.

use std::sync::Arc;

use axum::http::HeaderMap;
use chrysalis_services::chat::{JsonSchema, ReasoningEffort};
use chrysalis_services::{
    ChatRequest, Content, ImageUrl, Message, Part, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::names;
use super::params::{check_tools, in_range, invalid};
use crate::error::ApiError;

#[derive(Deserialize)]
pub(super) struct ResponsesBody {
    #[serde(default)]
    model: Option<String>,
    input: Input,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Vec<Map<String, Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    text: Option<TextOptions>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    reasoning: Option<Reasoning>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(default)]
    pub(super) store: Option<bool>,
    #[serde(default)]
    pub(super) previous_response_id: Option<String>,
    /// Accepted: what to include beyond the answer changes nothing served here.
    #[serde(default, rename = "include")]
    _include: Option<Value>,
    #[serde(default, rename = "truncation")]
    _truncation: Option<Value>,
    #[serde(default, rename = "service_tier")]
    _service_tier: Option<Value>,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Vec<Map<String, Value>>),
}

#[derive(Deserialize)]
struct TextOptions {
    #[serde(default)]
    format: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct Reasoning {
    #[serde(default)]
    effort: Option<ReasoningEffort>,
}

/// What the answer echoes of the request.
pub(super) struct Echo {
    pub(super) instructions: Option<String>,
    pub(super) metadata: Map<String, Value>,
    pub(super) tool_choice: Value,
    pub(super) tools: Vec<Map<String, Value>>,
    pub(super) text_format: Value,
    pub(super) parallel_tool_calls: bool,
    pub(super) store: bool,
    pub(super) previous_response_id: Option<String>,
}

impl ResponsesBody {
    /// The chat request, and what the answer repeats of this one.
    pub(super) fn into_request(self, headers: &HeaderMap) -> Result<(ChatRequest, Echo), ApiError> {
        if let Some((name, _)) = self.other.iter().find(|(_, v)| !v.is_null()) {
            return Err(ApiError::unsupported(
                name.clone(),
                "remove it, or ask for it to be added",
            ));
        }
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        in_range("top_p", self.top_p, 0.0, 1.0)?;
        if self.max_output_tokens == Some(0) {
            return Err(invalid(
                "max_output_tokens",
                "`max_output_tokens` must be at least 1".into(),
            ));
        }
        let mut messages = Vec::new();
        if let Some(instructions) = &self.instructions {
            messages.push(Message::new(Role::System, instructions.clone()));
        }
        match self.input {
            Input::Text(text) => messages.push(Message::new(Role::User, text)),
            Input::Items(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    item_into(item, index, &mut messages)?;
                }
            }
        }
        if messages.iter().all(|m| m.role.is_instruction()) {
            return Err(invalid("input", "`input` must hold at least one message".into()));
        }
        let tools = self.tools.iter().map(tool).collect::<Result<Vec<_>, _>>()?;
        let tool_choice = self.tool_choice.as_ref().map(tool_choice).transpose()?;
        check_tools(&tools, tool_choice.as_ref())?;
        let format = self.text.as_ref().and_then(|t| t.format.clone());
        let agent_id = headers
            .get("x-agent-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| self.user.clone())
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "anonymous".to_owned());
        let mut request = ChatRequest::new(names::checked("agent_id", agent_id)?, messages);
        request.model = names::model(self.model)?;
        request.temperature = self.temperature;
        request.top_p = self.top_p;
        request.max_tokens = self.max_output_tokens;
        request.tools = tools.into();
        request.tool_choice = tool_choice;
        request.parallel_tool_calls = self.parallel_tool_calls;
        request.response_format = format.as_ref().map(response_format).transpose()?.map(Arc::new);
        request.reasoning_effort = self.reasoning.and_then(|r| r.effort);
        request.user = self.user;
        request.stream = self.stream.unwrap_or(false);
        let echo = Echo {
            instructions: self.instructions,
            metadata: self.metadata.unwrap_or_default(),
            tool_choice: self.tool_choice.unwrap_or_else(|| "auto".into()),
            tools: self.tools,
            text_format: format.map_or_else(|| serde_json::json!({"type": "text"}), Value::Object),
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
            store: self.store.unwrap_or(true),
            previous_response_id: self.previous_response_id,
        };
        Ok((request, echo))
    }
}

fn str_field<'a>(item: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Value::as_str)
}

/// One input item as chat messages.
fn item_into(item: Map<String, Value>, index: usize, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let at = |why: &str| invalid("input", format!("`input[{index}]`: {why}"));
    match str_field(&item, "type").unwrap_or("message") {
        "message" => out.push(message(&item, index)?),
        "function_call" => {
            let call = ToolCall {
                id: str_field(&item, "call_id")
                    .ok_or_else(|| at("a `function_call` needs a `call_id`"))?
                    .to_owned(),
                name: str_field(&item, "name")
                    .ok_or_else(|| at("a `function_call` needs a `name`"))?
                    .to_owned(),
                arguments: str_field(&item, "arguments").unwrap_or("{}").to_owned(),
            };
            // Calls of one turn join the assistant turn before them.
            match out.last_mut() {
                Some(last) if last.role == Role::Assistant && last.tool_call_id.is_none() => last.tool_calls.push(call),
                _ => out.push(Message::tool_calls(vec![call])),
            }
        }
        "function_call_output" => {
            let id = str_field(&item, "call_id").ok_or_else(|| at("a `function_call_output` needs a `call_id`"))?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            out.push(Message::tool_result(id, output));
        }
        // A reasoning model's summary of an earlier turn: nothing a provider reads back.
        "reasoning" => {}
        "item_reference" => {
            return Err(at(
                "`item_reference` items need stored responses; send the items themselves",
            ))
        }
        other => return Err(at(&format!("`{other}` items are not supported"))),
    }
    Ok(())
}

fn message(item: &Map<String, Value>, index: usize) -> Result<Message, ApiError> {
    let at = |why: String| invalid("input", format!("`input[{index}]`: {why}"));
    let role = match str_field(item, "role") {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        other => {
            return Err(at(format!(
                "`role` is user, assistant, system or developer, not {other:?}"
            )))
        }
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => Content::Text(text.clone()),
        Some(Value::Array(parts)) => {
            let parts = parts
                .iter()
                .map(|part| content_part(part, index))
                .collect::<Result<Vec<_>, _>>()?;
            match parts.as_slice() {
                [Part::Text { text }] => Content::Text(text.clone()),
                _ => Content::Parts(parts),
            }
        }
        _ => return Err(at("a message needs `content`: a string or content parts".into())),
    };
    let message = Message {
        content,
        ..Message::new(role, "")
    };
    if let Some(problem) = message.problem() {
        return Err(at(problem));
    }
    Ok(message)
}

fn content_part(part: &Value, index: usize) -> Result<Part, ApiError> {
    let at = |why: String| invalid("input", format!("`input[{index}].content`: {why}"));
    let part = part.as_object().ok_or_else(|| at("each part is an object".into()))?;
    match str_field(part, "type") {
        Some("input_text" | "output_text" | "text") => Ok(Part::Text {
            text: str_field(part, "text")
                .ok_or_else(|| at("a text part needs `text`".into()))?
                .to_owned(),
        }),
        Some("input_image") => {
            let url = str_field(part, "image_url").ok_or_else(|| {
                at("an `input_image` needs an `image_url` (a file_id needs OpenAI's file store)".into())
            })?;
            let detail = str_field(part, "detail").map(str::to_owned);
            Ok(Part::Image {
                image_url: ImageUrl {
                    url: url.to_owned(),
                    detail,
                },
            })
        }
        other => Err(at(format!("`{}` parts are not supported", other.unwrap_or("untyped")))),
    }
}

/// A function tool; a built-in tool is OpenAI's alone.
fn tool(tool: &Map<String, Value>) -> Result<Tool, ApiError> {
    match str_field(tool, "type") {
        Some("function") => {}
        other => {
            let kind = other.unwrap_or("untyped");
            return Err(ApiError::unsupported(
                format!("tools[].{kind}"),
                "built-in tools run on OpenAI's side; this gateway passes function tools",
            ));
        }
    }
    Ok(Tool {
        name: str_field(tool, "name")
            .ok_or_else(|| invalid("tools", "a function tool needs a `name`".into()))?
            .to_owned(),
        description: str_field(tool, "description").map(str::to_owned),
        parameters: tool.get("parameters").cloned(),
        strict: tool.get("strict").and_then(Value::as_bool),
    })
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, ApiError> {
    match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                "tool_choice",
                format!("`tool_choice` is auto, none, required or a function, not `{other}`"),
            )),
        },
        Value::Object(choice) if str_field(choice, "type") == Some("function") => str_field(choice, "name")
            .map(|name| ToolChoice::Function(name.to_owned()))
            .ok_or_else(|| invalid("tool_choice", "a function `tool_choice` names the function".into())),
        _ => Err(invalid(
            "tool_choice",
            "`tool_choice` is auto, none, required or {\"type\": \"function\", \"name\"}".into(),
        )),
    }
}

/// `text.format` as the chat's response format.
fn response_format(format: &Map<String, Value>) -> Result<ResponseFormat, ApiError> {
    match str_field(format, "type") {
        Some("text") | None => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => Ok(ResponseFormat::JsonSchema {
            json_schema: JsonSchema {
                name: str_field(format, "name")
                    .ok_or_else(|| invalid("text.format", "a `json_schema` format needs a `name`".into()))?
                    .to_owned(),
                description: str_field(format, "description").map(str::to_owned),
                schema: format.get("schema").cloned(),
                strict: format.get("strict").and_then(Value::as_bool),
            },
        }),
        Some(other) => Err(invalid(
            "text.format",
            format!("`text.format.type` is text, json_object or json_schema, not `{other}`"),
        )),
    }
}
