//! A chat request in the Messages API's shape: instructions to top-level
//! `system`; images, tool calls and tool results as content blocks; tool
//! results merged into the user turn that follows the assistant's calls.
//! Structured output (`response_format` `json_object` or `json_schema`)
//! becomes one tool the model is made to call, whose input is the answer:
//! the tool use Anthropic documents for JSON output, on every Claude model.

use serde::Serialize;
use serde_json::Value;

use super::{DEFAULT_MAX_TOKENS, NAME};
use crate::chat::{
    AnthropicNative, ChatRequest, Content, ImageUrl, Message, Part, ResponseFormat, Role, Tool, ToolChoice,
};
use crate::error::ProviderError;

#[derive(Serialize)]
pub(super) struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    /// The tool whose input is the answer, for structured output.
    #[serde(skip)]
    pub(super) answer_tool: Option<&'a str>,
}

/// The answer tool's name for `json_object`; `json_schema` uses the schema's name.
const JSON_OBJECT_TOOL: &str = "json_answer";

struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A turn of one text block is sent as a plain string, as most clients do.
impl Serialize for Turn<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<C> {
            role: &'static str,
            content: C,
        }
        match self.content.as_slice() {
            [Block::Text { text }] => Wire {
                role: self.role,
                content: text,
            }
            .serialize(serializer),
            blocks => Wire {
                role: self.role,
                content: blocks,
            }
            .serialize(serializer),
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text { text: &'a str },
    Image { source: ImageSource<'a> },
    ToolUse { id: &'a str, name: &'a str, input: Value },
    ToolResult { tool_use_id: &'a str, content: String },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Value,
}

#[derive(Serialize)]
struct WireToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

impl<'a> WireRequest<'a> {
    /// The request for `model`, or what in it Anthropic cannot do.
    pub(super) fn new(model: &'a str, request: &'a ChatRequest) -> Result<Self, ProviderError> {
        refuse_what_anthropic_lacks(request)?;
        let system: Vec<_> = request
            .messages
            .iter()
            .filter(|m| m.role.is_instruction())
            .map(Message::text)
            .collect();
        let system = (!system.is_empty()).then(|| system.join("\n\n"));
        let mut wire = Self {
            model,
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            system,
            messages: turns(&request.messages)?,
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            stop_sequences: &request.stop,
            tools: request.tools.iter().map(WireTool::from).collect(),
            tool_choice: tool_choice(request),
            metadata: request.user.as_deref().map(|user_id| Metadata { user_id }),
            stream: request.stream,
            answer_tool: None,
        };
        if let Some(tool) = answer_tool(request.response_format.as_deref())? {
            wire.answer_tool = Some(tool.name);
            wire.tool_choice = Some(WireToolChoice {
                kind: "tool",
                name: Some(tool.name),
                disable_parallel_tool_use: true,
            });
            wire.tools = vec![tool];
        }
        Ok(wire)
    }
}

/// An Anthropic client's own body, as it wrote it, but for what the gateway
/// decides: the model served, the output cap (the one the budget reserved
/// for) and whether to stream.
pub(super) fn native_body(native: &AnthropicNative, model: &str, request: &ChatRequest) -> Vec<u8> {
    let mut body = native.body.clone();
    body.insert("model".into(), model.into());
    body.insert(
        "max_tokens".into(),
        request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    body.insert("stream".into(), request.stream.into());
    serde_json::to_vec(&body).expect("a JSON object always serialises")
}

/// The tool that carries a structured answer: the schema (any object for
/// `json_object`) as its input schema.
fn answer_tool(format: Option<&ResponseFormat>) -> Result<Option<WireTool<'_>>, ProviderError> {
    let tool = match format {
        None | Some(ResponseFormat::Text) => return Ok(None),
        Some(ResponseFormat::JsonObject) => WireTool {
            name: JSON_OBJECT_TOOL,
            description: Some("Give your answer as this tool's input: a JSON object."),
            input_schema: serde_json::json!({"type": "object"}),
        },
        Some(ResponseFormat::JsonSchema { json_schema }) => WireTool {
            name: &json_schema.name,
            description: Some(
                json_schema
                    .description
                    .as_deref()
                    .unwrap_or("Give your answer as this tool's input."),
            ),
            input_schema: json_schema
                .schema
                .clone()
                .unwrap_or_else(|| serde_json::json!({"type": "object"})),
        },
    };
    if tool.input_schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(ProviderError::unsupported(
            NAME,
            "response_format",
            "Anthropic answers in a shape through a tool's input, which must be an object: give the schema `\"type\": \"object\"` at its root",
        ));
    }
    Ok(Some(tool))
}

fn refuse_what_anthropic_lacks(request: &ChatRequest) -> Result<(), ProviderError> {
    let unsupported = |param: &str, why: &str| Err(ProviderError::unsupported(NAME, param, why));
    let structured = matches!(
        request.response_format.as_deref(),
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    );
    if structured && !request.tools.is_empty() {
        return unsupported(
            "response_format",
            "on Anthropic a structured answer is a tool the model must call, so it cannot come with tools of its own",
        );
    }
    if request.seed.is_some() {
        return unsupported("seed", "Anthropic has no seeded sampling");
    }
    if request.presence_penalty.is_some() || request.frequency_penalty.is_some() {
        let param = if request.presence_penalty.is_some() {
            "presence_penalty"
        } else {
            "frequency_penalty"
        };
        return unsupported(param, "Anthropic has no repetition penalties");
    }
    if request.reasoning_effort.is_some() {
        return unsupported(
            "reasoning_effort",
            "Anthropic's extended thinking takes a token budget instead",
        );
    }
    Ok(())
}

impl<'a> From<&'a Tool> for WireTool<'a> {
    fn from(tool: &'a Tool) -> Self {
        let schema = tool
            .parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        Self {
            name: &tool.name,
            description: tool.description.as_deref(),
            input_schema: schema,
        }
    }
}

/// OpenAI's `tool_choice` and `parallel_tool_calls` in Anthropic's words:
/// `required` is `any`, a named function is `tool`.
fn tool_choice(request: &ChatRequest) -> Option<WireToolChoice<'_>> {
    let serial = request.parallel_tool_calls == Some(false) && !request.tools.is_empty();
    let (kind, name) = match &request.tool_choice {
        None if serial => ("auto", None),
        None => return None,
        Some(ToolChoice::Auto) => ("auto", None),
        Some(ToolChoice::None) => ("none", None),
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::Function(name)) => ("tool", Some(name.as_str())),
    };
    Some(WireToolChoice {
        kind,
        name,
        disable_parallel_tool_use: serial && kind != "none",
    })
}

/// The conversation as alternating turns: tool results join the user turn
/// after the assistant's calls (results first, as the API requires).
fn turns(messages: &[Message]) -> Result<Vec<Turn<'_>>, ProviderError> {
    let mut turns: Vec<Turn<'_>> = Vec::new();
    for message in messages.iter().filter(|m| !m.role.is_instruction()) {
        let role = if message.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        };
        let blocks = blocks(message)?;
        match turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn { role, content: blocks }),
        }
    }
    Ok(turns)
}

fn blocks(message: &Message) -> Result<Vec<Block<'_>>, ProviderError> {
    if let Some(tool_use_id) = &message.tool_call_id {
        let content = message.text().into_owned();
        return Ok(vec![Block::ToolResult { tool_use_id, content }]);
    }
    let mut blocks = match &message.content {
        Content::Text(text) if text.is_empty() => Vec::new(),
        Content::Text(text) => vec![Block::Text { text }],
        Content::Parts(parts) => parts.iter().map(part).collect(),
    };
    for call in &message.tool_calls {
        let input = call.arguments_object(NAME)?;
        blocks.push(Block::ToolUse {
            id: &call.id,
            name: &call.name,
            input,
        });
    }
    Ok(blocks)
}

fn part(part: &Part) -> Block<'_> {
    match part {
        Part::Text { text } => Block::Text { text },
        Part::Image { image_url } => Block::Image {
            source: source(image_url),
        },
    }
}

fn source(image: &ImageUrl) -> ImageSource<'_> {
    match image.inline() {
        Some((media_type, data)) => ImageSource::Base64 { media_type, data },
        None => ImageSource::Url { url: &image.url },
    }
}
