//! What a call answers: text and tool calls, why it stopped, what it used.

use serde::{Serialize, Serializer};

use super::message::ToolCall;

/// Tokens a call consumed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens, all of them: those read from a prompt cache and those
    /// written to one included.
    pub prompt_tokens: u64,
    /// Generated tokens, reasoning included.
    pub completion_tokens: u64,
    /// Of the input, tokens read from the provider's prompt cache.
    pub cached_prompt_tokens: u64,
    /// Of the input, tokens written to the provider's prompt cache (Anthropic).
    pub cache_write_tokens: u64,
    /// Of the output, tokens spent reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// `prompt` input and `completion` output tokens, nothing cached.
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Self::default()
        }
    }

    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// A rough count (four characters a token) for upstreams that report none.
    pub fn estimate(prompt_chars: usize, completion_chars: usize) -> Self {
        let tokens = |chars: usize| chars.div_ceil(4) as u64;
        Self::new(tokens(prompt_chars), tokens(completion_chars))
    }
}

/// OpenAI's usage object: the details only when a provider reported them.
impl Serialize for Usage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire {
            prompt_tokens: u64,
            completion_tokens: u64,
            total_tokens: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            prompt_tokens_details: Option<PromptDetails>,
            #[serde(skip_serializing_if = "Option::is_none")]
            completion_tokens_details: Option<CompletionDetails>,
        }
        #[derive(Serialize)]
        struct PromptDetails {
            cached_tokens: u64,
            #[serde(skip_serializing_if = "is_zero")]
            cache_write_tokens: u64,
        }
        #[derive(Serialize)]
        struct CompletionDetails {
            reasoning_tokens: u64,
        }
        let cached = self.cached_prompt_tokens + self.cache_write_tokens > 0;
        Wire {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens(),
            prompt_tokens_details: cached.then_some(PromptDetails {
                cached_tokens: self.cached_prompt_tokens,
                cache_write_tokens: self.cache_write_tokens,
            }),
            completion_tokens_details: (self.reasoning_tokens > 0).then_some(CompletionDetails {
                reasoning_tokens: self.reasoning_tokens,
            }),
        }
        .serialize(serializer)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// It was done, or met a stop sequence.
    Stop,
    /// It met this stop sequence (when the provider says which: Anthropic).
    StopSequence(String),
    /// It reached the output cap.
    Length,
    /// It called tools, and waits for their results.
    ToolCalls,
    /// The provider's content filter stopped it.
    ContentFilter,
    /// A reason of the provider's own, passed on as it said it.
    Other(String),
}

impl FinishReason {
    /// Its name, as OpenAI spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop | Self::StopSequence(_) => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::Other(reason) => reason,
        }
    }

    /// The reason OpenAI calls `reason` (`function_call` is the old name of
    /// `tool_calls`).
    pub fn from_openai(reason: &str) -> Self {
        match reason {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What layers learned about a call that the HTTP edge may tell the client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMeta {
    /// The rate limit that admitted the call: (requests in a full bucket, left now).
    pub rate_limit: Option<(u32, u32)>,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text.
    pub content: String,
    /// The tools the model called, in order.
    pub tool_calls: Vec<ToolCall>,
    /// The provider that served it.
    pub provider: &'static str,
    /// The model that served it, as the upstream named it.
    pub model: String,
    /// Tokens consumed.
    pub usage: Usage,
    /// What the call cost.
    pub cost_usd: f64,
    /// Why generation stopped, when the upstream said.
    pub finish_reason: Option<FinishReason>,
    /// What layers learned about the call.
    pub meta: ResponseMeta,
}

/// The last chunk of a whole stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEnd {
    /// Tokens consumed.
    pub usage: Usage,
    /// What the call cost.
    pub cost_usd: f64,
    /// Why generation stopped, when the upstream said.
    pub finish_reason: Option<FinishReason>,
    /// The provider that finished a stream cut short elsewhere, when one did.
    pub resumed_by: Option<&'static str>,
}

/// A piece of a tool call, as streams deliver them: the first piece of a
/// call carries its id and name, later ones more of its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCallDelta {
    /// Which call of this answer (0, 1, ...) the piece belongs to.
    pub index: u32,
    /// The call's id, on its first piece.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function's name, on its first piece.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More of the arguments' JSON text.
    pub arguments: String,
}

/// One item of a streamed answer. A stream is whole only if it ends with [`Chunk::End`].
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// More generated text.
    Delta(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// The end: nothing follows.
    End(StreamEnd),
}

/// Tool calls put together from their pieces.
#[derive(Debug, Default)]
pub(crate) struct ToolCallAssembly {
    calls: Vec<(u32, ToolCall)>,
}

impl ToolCallAssembly {
    pub(crate) fn add(&mut self, delta: ToolCallDelta) {
        let position = self.calls.iter().position(|(index, _)| *index == delta.index);
        let call = match position {
            Some(at) => &mut self.calls[at].1,
            None => {
                let empty = ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                };
                self.calls.push((delta.index, empty));
                &mut self.calls.last_mut().expect("just pushed").1
            }
        };
        if let Some(id) = delta.id {
            call.id = id;
        }
        if let Some(name) = delta.name {
            call.name.push_str(&name);
        }
        call.arguments.push_str(&delta.arguments);
    }

    pub(crate) fn finish(mut self) -> Vec<ToolCall> {
        self.calls.sort_by_key(|(index, _)| *index);
        self.calls.into_iter().map(|(_, call)| call).collect()
    }
}
