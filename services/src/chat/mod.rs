//! The chat types every provider and every layer speaks: a complete model
//! of a chat call (messages with images and tool calls, tools, structured
//! output, sampling), its answer (text and tool calls, whole or streamed),
//! and its usage.

mod message;
mod response;
mod stream;
mod tools;

use std::sync::Arc;

pub use message::{nullable, Content, ImageUrl, Message, Part, Role, ToolCall};
pub(crate) use response::ToolCallAssembly;
pub use response::{Chunk, Completion, FinishReason, ResponseMeta, StreamEnd, ToolCallDelta, Usage};
pub(crate) use stream::Replay;
pub use stream::{ChatResponse, ChatStream, ChunkStream, CutCharge, ResentPrompt};
pub use tools::{stop_sequences, JsonSchema, ReasoningEffort, ResponseFormat, Tool, ToolChoice};

/// A chat call. Cheap to clone: failover sends the same request to several providers.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The calling application or agent; spend and limits are kept per agent.
    pub agent_id: Arc<str>,
    /// The conversation so far.
    pub messages: Arc<[Message]>,
    /// The model to use; `None` means the serving provider's default.
    pub model: Option<String>,
    /// Whether the caller wants the answer as a stream of chunks.
    pub stream: bool,
    /// Cap on generated tokens (reasoning included).
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling: the probability mass sampled from.
    pub top_p: Option<f32>,
    /// Sampling from the `top_k` likeliest tokens only (not on OpenAI).
    pub top_k: Option<u32>,
    /// Sequences that end generation.
    pub stop: Arc<[String]>,
    /// For deterministic sampling, where the provider offers it.
    pub seed: Option<i64>,
    /// Penalty for tokens already present (-2 to 2).
    pub presence_penalty: Option<f32>,
    /// Penalty by how often tokens appeared (-2 to 2).
    pub frequency_penalty: Option<f32>,
    /// Functions the model may call.
    pub tools: Arc<[Tool]>,
    /// Whether, and which, tools it must call.
    pub tool_choice: Option<ToolChoice>,
    /// Whether it may call several tools in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// The shape the answer must take.
    pub response_format: Option<Arc<ResponseFormat>>,
    /// How hard a reasoning model thinks.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// The end user, for the provider's abuse monitoring.
    pub user: Option<String>,
    /// The request as an Anthropic Messages client wrote it, when one did.
    pub anthropic: Option<Arc<AnthropicNative>>,
}

/// A request as an Anthropic Messages client sent it. The Anthropic provider
/// sends this body (with the gateway's `model`, `max_tokens` and `stream`),
/// so every block and option reaches it as written, `cache_control` among
/// them; other providers read the request's translated fields, and refuse
/// what only Anthropic does.
#[derive(Debug, Clone, Default)]
pub struct AnthropicNative {
    /// The JSON body.
    pub body: serde_json::Map<String, serde_json::Value>,
    /// The client's `anthropic-version` header.
    pub version: Option<String>,
    /// The client's `anthropic-beta` header.
    pub beta: Option<String>,
    /// What in the body only Anthropic can do (a block type, a parameter,
    /// a server tool), named as the client wrote it.
    pub anthropic_only: Option<String>,
    /// Bytes of the prompt the translated fields do not carry (those
    /// blocks and parameters), so the budget bounds them too; a block that
    /// names a stored file counts as `usize::MAX`, since only the model's
    /// context window bounds it.
    pub untranslated_bytes: usize,
}

impl ChatRequest {
    /// What in an Anthropic client's request only Anthropic can do, if anything.
    pub fn anthropic_only(&self) -> Option<&str> {
        self.anthropic.as_ref()?.anthropic_only.as_deref()
    }
}

impl ChatRequest {
    /// A non-streaming request of `messages` with nothing else set.
    pub fn new(agent_id: impl Into<Arc<str>>, messages: Vec<Message>) -> Self {
        Self {
            agent_id: agent_id.into(),
            messages: messages.into(),
            ..Self::default()
        }
    }

    /// Bytes of text the prompt carries (messages, tool schemas, the answer's
    /// schema, stop sequences; images are counted apart), the base of token
    /// estimates.
    pub fn prompt_chars(&self) -> usize {
        let messages: usize = self.messages.iter().map(Message::text_bytes).sum();
        let tools: usize = self.tools.iter().map(Tool::text_bytes).sum();
        let format = match self.response_format.as_deref() {
            Some(ResponseFormat::JsonSchema { json_schema }) => {
                json_schema.name.len() + json_schema.schema.as_ref().map_or(0, tools::json_bytes)
            }
            _ => 0,
        };
        let untranslated = self.anthropic.as_ref().map_or(0, |n| n.untranslated_bytes);
        (messages + tools + format + self.stop.iter().map(String::len).sum::<usize>()).saturating_add(untranslated)
    }

    /// Images in the prompt.
    pub fn images(&self) -> usize {
        self.messages.iter().map(|m| m.content.images().count()).sum()
    }
}
