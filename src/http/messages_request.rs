//! An Anthropic Messages request as a chat request: `system` to a system
//! message, content blocks to text and image parts, `tool_use` blocks to an
//! assistant's tool calls, `tool_result` blocks to tool messages (before the
//! rest of their user turn, as the chat model orders them). The body as the
//! client wrote it rides along for the Anthropic provider ([`AnthropicNative`]);
//! what only Anthropic can do is named there, so the others refuse it
//! (and failover moves on) instead of dropping it. Hints with no meaning
//! elsewhere (`cache_control`, `thinking` blocks of earlier turns,
//! `service_tier`) are left out of the translation.

use std::sync::Arc;

use axum::http::HeaderMap;
use chrysalis_services::{
    AnthropicNative, ChatRequest, Content, ImageUrl, Message, Part, Role, Tool, ToolCall, ToolChoice,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::names;
use super::params::{check_tools, in_range, invalid};
use crate::error::ApiError;

/// Stop sequences taken (Anthropic sets no small limit; this bounds the work).
const MAX_STOP: usize = 64;

#[derive(Deserialize)]
struct MessagesBody {
    model: String,
    max_tokens: u32,
    messages: Vec<InMessage>,
    #[serde(default)]
    system: Option<InContent>,
    #[serde(default)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct InMessage {
    role: InRole,
    content: InContent,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum InRole {
    User,
    Assistant,
}

/// A string, or content blocks (kept as JSON: their types are many and
/// growing, and the ones not translated are named, not refused at parse).
#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Blocks(Vec<Map<String, Value>>),
}

#[derive(Deserialize)]
struct InToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

/// Top-level fields the translation reads, or may leave out since they
/// mean nothing to another provider; any other is Anthropic's alone.
const KNOWN: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "stream",
    "service_tier",
    "cache_control",
];

/// A Messages body as JSON, or why it is not an object.
pub(super) fn parse(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
}

/// The chat request of a Messages body, or why it is malformed.
pub(super) fn chat_request(raw: Map<String, Value>, headers: &HeaderMap) -> Result<ChatRequest, ApiError> {
    // Read in place: the body is kept as it came for the Anthropic provider.
    let raw = Value::Object(raw);
    let body =
        MessagesBody::deserialize(&raw).map_err(|e| ApiError::invalid_request(format!("invalid request body: {e}")))?;
    let Value::Object(raw) = raw else {
        unreachable!("made an object above")
    };
    let mut only = Only::default();
    for (name, value) in raw.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())) {
        only.note(value, || format!("`{name}`"));
    }
    let request = body.into_request(headers, &mut only)?;
    let native = AnthropicNative {
        body: raw,
        version: header(headers, "anthropic-version"),
        beta: header(headers, "anthropic-beta"),
        anthropic_only: only.first,
        untranslated_bytes: only.bytes,
    };
    Ok(ChatRequest {
        anthropic: Some(Arc::new(native)),
        ..request
    })
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// What the translation leaves to Anthropic: the first such thing met, and
/// the bytes of all of them.
#[derive(Default)]
struct Only {
    first: Option<String>,
    bytes: usize,
}

impl Only {
    /// `value`, named `what`, is Anthropic's alone.
    fn note(&mut self, value: &Value, what: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(what());
        }
        self.bytes = self.bytes.saturating_add(json_bytes(value));
    }
}

/// A value's size as JSON; a stored file it names counts as unbounded.
fn json_bytes(value: &Value) -> usize {
    match value {
        Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("file") => usize::MAX,
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() + json_bytes(v))
            .fold(0, usize::saturating_add),
        Value::Array(items) => items.iter().map(json_bytes).fold(0, usize::saturating_add),
        Value::String(s) => s.len(),
        _ => 8,
    }
}

impl MessagesBody {
    fn into_request(self, headers: &HeaderMap, only: &mut Only) -> Result<ChatRequest, ApiError> {
        if self.max_tokens == 0 {
            return Err(invalid("max_tokens", "`max_tokens` must be at least 1".into()));
        }
        in_range("temperature", self.temperature, 0.0, 1.0)?;
        in_range("top_p", self.top_p, 0.0, 1.0)?;
        let stop = self.stop_sequences.unwrap_or_default();
        if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
            let why = format!("`stop_sequences` holds at most {MAX_STOP} non-empty sequences");
            return Err(invalid("stop_sequences", why));
        }
        if self.messages.is_empty() {
            return Err(invalid("messages", "`messages` must hold at least one message".into()));
        }
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = self.system {
            messages.push(system_message(system, only)?);
        }
        for (index, message) in self.messages.into_iter().enumerate() {
            translate(message, index, only, &mut messages)?;
        }
        let tools = self
            .tools
            .unwrap_or_default()
            .into_iter()
            .map(|t| tool(t, only))
            .collect::<Result<Vec<_>, _>>()?;
        let (tool_choice, parallel) = match self.tool_choice {
            Some(choice) => tool_choice(choice)?,
            None => (None, None),
        };
        check_tools(&tools, tool_choice.as_ref())?;
        let user = self.metadata.and_then(|m| m.user_id).filter(|u| !u.trim().is_empty());
        let agent_id = headers
            .get("x-agent-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .filter(|a| !a.trim().is_empty())
            .or_else(|| user.clone())
            .unwrap_or_else(|| "anonymous".to_owned());
        let mut request = ChatRequest::new(names::checked("agent_id", agent_id)?, messages);
        request.model = names::model(Some(self.model))?;
        if request.model.is_none() {
            return Err(invalid("model", "`model` must name a model".into()));
        }
        request.max_tokens = Some(self.max_tokens);
        request.temperature = self.temperature;
        request.top_p = self.top_p;
        request.top_k = self.top_k;
        request.stop = stop.into();
        request.tools = tools.into();
        request.tool_choice = tool_choice;
        request.parallel_tool_calls = parallel;
        request.user = user;
        request.stream = self.stream.unwrap_or(false);
        Ok(request)
    }
}

fn system_message(system: InContent, only: &mut Only) -> Result<Message, ApiError> {
    let content = match system {
        InContent::Text(text) => Content::Text(text),
        InContent::Blocks(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for block in &blocks {
                match block_type(block) {
                    "text" => parts.push(Part::Text { text: text_of(block)? }),
                    other => only.note(&Value::Object(block.clone()), || {
                        format!("`{other}` blocks in `system`")
                    }),
                }
            }
            Content::Parts(parts)
        }
    };
    Ok(Message {
        content,
        ..Message::new(Role::System, "")
    })
}

/// One Messages turn as chat messages: a user turn's tool results become
/// tool messages, ahead of the rest of the turn; an assistant turn's
/// `tool_use` blocks become its tool calls.
fn translate(message: InMessage, index: usize, only: &mut Only, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let blocks = match message.content {
        InContent::Text(text) => {
            let role = role(message.role);
            out.push(Message::new(role, text));
            return Ok(());
        }
        InContent::Blocks(blocks) => blocks,
    };
    let at = |why: String| invalid("messages", format!("`messages[{index}]`: {why}"));
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for block in &blocks {
        match (block_type(block), message.role) {
            ("text", _) => parts.push(Part::Text { text: text_of(block)? }),
            ("image", InRole::User) => match image(block)? {
                Some(image_url) => parts.push(Part::Image { image_url }),
                None => only.note(&Value::Object(block.clone()), || {
                    "image blocks with a `file` source".into()
                }),
            },
            ("tool_use", InRole::Assistant) => calls.push(tool_use(block).map_err(at)?),
            ("tool_result", InRole::User) => out.push(tool_result(block, only).map_err(at)?),
            ("thinking" | "redacted_thinking", InRole::Assistant) => {}
            (kind @ ("image" | "tool_use" | "tool_result"), _) => {
                return Err(at(format!(
                    "a `{kind}` block cannot be in a {} turn",
                    role_name(message.role)
                )))
            }
            (other, _) => only.note(&Value::Object(block.clone()), || format!("`{other}` content blocks")),
        }
    }
    if parts.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let content = match parts.as_slice() {
        [] => Content::Text(String::new()),
        [Part::Text { text }] => Content::Text(text.clone()),
        _ => Content::Parts(parts),
    };
    let message = Message {
        content,
        tool_calls: calls,
        ..Message::new(role(message.role), "")
    };
    if let Some(problem) = message.problem() {
        return Err(at(problem));
    }
    out.push(message);
    Ok(())
}

fn role(role: InRole) -> Role {
    match role {
        InRole::User => Role::User,
        InRole::Assistant => Role::Assistant,
    }
}

fn role_name(role: InRole) -> &'static str {
    match role {
        InRole::User => "user",
        InRole::Assistant => "assistant",
    }
}

fn block_type(block: &Map<String, Value>) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

fn text_of(block: &Map<String, Value>) -> Result<String, ApiError> {
    match block.get("text") {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(invalid("messages", "a `text` block needs a string `text`".into())),
    }
}

fn str_field<'a>(block: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    block.get(name).and_then(Value::as_str)
}

/// An image block's source as an image URL (`None` for a `file` source,
/// which only Anthropic can resolve).
fn image(block: &Map<String, Value>) -> Result<Option<ImageUrl>, ApiError> {
    let source = block.get("source").and_then(Value::as_object);
    let bad = || invalid("messages", "an `image` block needs a `base64` or `url` `source`".into());
    let source = source.ok_or_else(bad)?;
    let url = match str_field(source, "type") {
        Some("base64") => {
            let media_type = str_field(source, "media_type").ok_or_else(bad)?;
            let data = str_field(source, "data").ok_or_else(bad)?;
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => str_field(source, "url").ok_or_else(bad)?.to_owned(),
        Some("file") => return Ok(None),
        _ => return Err(bad()),
    };
    Ok(Some(ImageUrl { url, detail: None }))
}

fn tool_use(block: &Map<String, Value>) -> Result<ToolCall, String> {
    let id = str_field(block, "id").ok_or("a `tool_use` block needs an `id`")?;
    let name = str_field(block, "name").ok_or("a `tool_use` block needs a `name`")?;
    let input = block.get("input").cloned().unwrap_or_else(|| Value::Object(Map::new()));
    Ok(ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments: input.to_string(),
    })
}

/// A `tool_result` block as a tool message; its content a string or text
/// blocks (an error result says so, for models that read no flag).
fn tool_result(block: &Map<String, Value>, only: &mut Only) -> Result<Message, String> {
    let id = str_field(block, "tool_use_id").ok_or("a `tool_result` block needs a `tool_use_id`")?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for inner in blocks.iter().filter_map(Value::as_object) {
                match block_type(inner) {
                    "text" => texts.push(str_field(inner, "text").unwrap_or_default()),
                    other => only.note(&Value::Object(inner.clone()), || {
                        format!("`{other}` blocks in a `tool_result`")
                    }),
                }
            }
            texts.join("\n")
        }
        Some(_) => return Err("a `tool_result`'s `content` is a string or content blocks".into()),
    };
    if block.get("is_error") == Some(&Value::Bool(true)) {
        text.insert_str(0, "Error: ");
    }
    Ok(Message::tool_result(id, text))
}

/// A tool of the client's own; a server tool (one with a `type`, like
/// `web_search_20250305`) is Anthropic's alone.
fn tool(mut tool: Map<String, Value>, only: &mut Only) -> Result<Tool, ApiError> {
    match str_field(&tool, "type") {
        None | Some("custom") => {}
        Some(kind) => {
            let what = format!("the `{kind}` tool");
            only.note(&Value::Object(tool.clone()), || what);
        }
    }
    let name = match tool.remove("name") {
        Some(Value::String(name)) => name,
        _ => return Err(invalid("tools", "each tool needs a `name`".into())),
    };
    let description = match tool.remove("description") {
        Some(Value::String(description)) => Some(description),
        _ => None,
    };
    Ok(Tool {
        name,
        description,
        parameters: tool.remove("input_schema"),
        strict: None,
    })
}

/// Anthropic's `tool_choice` in the chat model's words (`any` is `required`),
/// and whether calls may run in parallel.
fn tool_choice(choice: InToolChoice) -> Result<(Option<ToolChoice>, Option<bool>), ApiError> {
    let parallel = choice.disable_parallel_tool_use.map(|disable| !disable);
    let choice = match (choice.kind.as_str(), choice.name) {
        ("auto", _) => ToolChoice::Auto,
        ("any", _) => ToolChoice::Required,
        ("none", _) => ToolChoice::None,
        ("tool", Some(name)) => ToolChoice::Function(name),
        ("tool", None) => return Err(invalid("tool_choice", "a `tool` choice names the tool".into())),
        (other, _) => {
            let why = format!("`tool_choice.type` is `auto`, `any`, `tool` or `none`, not `{other}`");
            return Err(invalid("tool_choice", why));
        }
    };
    Ok((Some(choice), parallel))
}
