//! The chat types every provider and every layer speaks.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::ProviderError;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The application's user.
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message from `role` saying `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A chat call. Cheap to clone: failover sends the same request to several providers.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The calling application or agent; spend and limits are kept per agent.
    pub agent_id: Arc<str>,
    /// The conversation so far.
    pub messages: Arc<[Message]>,
    /// The model to use; `None` means the serving provider's default.
    pub model: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Cap on generated tokens.
    pub max_tokens: Option<u32>,
    /// Whether the caller wants the answer as a stream of chunks.
    pub stream: bool,
}

impl ChatRequest {
    /// A non-streaming request with no model, temperature or token cap.
    pub fn new(agent_id: impl Into<Arc<str>>, messages: Vec<Message>) -> Self {
        Self {
            agent_id: agent_id.into(),
            messages: messages.into(),
            model: None,
            temperature: None,
            max_tokens: None,
            stream: false,
        }
    }

    /// Characters in all messages, the base of token estimates.
    pub fn prompt_chars(&self) -> usize {
        self.messages.iter().map(|m| m.content.len()).sum()
    }
}

/// Tokens a call consumed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// A rough count (four characters a token) for upstreams that report none.
    pub fn estimate(prompt_chars: usize, completion_chars: usize) -> Self {
        let tokens = |chars: usize| chars.div_ceil(4) as u64;
        Self {
            prompt_tokens: tokens(prompt_chars),
            completion_tokens: tokens(completion_chars),
        }
    }
}

impl Serialize for Usage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire {
            prompt_tokens: u64,
            completion_tokens: u64,
            total_tokens: u64,
        }
        Wire {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens(),
        }
        .serialize(serializer)
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
    /// The provider that served it.
    pub provider: &'static str,
    /// The model that served it, as the upstream named it.
    pub model: String,
    /// Tokens consumed.
    pub usage: Usage,
    /// What the call cost.
    pub cost_usd: f64,
    /// Why generation stopped (`stop`, `length`, ...), when the upstream said.
    pub finish_reason: Option<String>,
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
    pub finish_reason: Option<String>,
}

/// One item of a streamed answer. A stream is whole only if it ends with [`Chunk::End`].
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// More generated text.
    Delta(String),
    /// The end: nothing follows.
    End(StreamEnd),
}

/// The chunks of a streamed answer, type-erased once by the provider.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, ProviderError>> + Send>>;

/// A streamed answer: who serves it, and its chunks.
pub struct ChatStream {
    /// The provider that serves it.
    pub provider: &'static str,
    /// The model that serves it.
    pub model: String,
    /// What layers learned about the call.
    pub meta: ResponseMeta,
    chunks: ChunkStream,
}

impl ChatStream {
    /// A stream of `chunks` served by `provider` with `model`.
    pub fn new<S>(provider: &'static str, model: String, chunks: S) -> Self
    where
        S: Stream<Item = Result<Chunk, ProviderError>> + Send + 'static,
    {
        Self {
            provider,
            model,
            meta: ResponseMeta::default(),
            chunks: Box::pin(chunks),
        }
    }

    /// Wraps the chunks (an observer, a timeout) keeping provider and model.
    pub fn map_chunks<S, F>(self, wrap: F) -> Self
    where
        F: FnOnce(ChunkStream) -> S,
        S: Stream<Item = Result<Chunk, ProviderError>> + Send + 'static,
    {
        let Self {
            provider,
            model,
            meta,
            chunks,
        } = self;
        let mut wrapped = Self::new(provider, model, wrap(chunks));
        wrapped.meta = meta;
        wrapped
    }

    /// Reads the stream to its end and joins it into one [`Completion`].
    pub async fn into_completion(mut self) -> Result<Completion, ProviderError> {
        let mut content = String::new();
        while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut self).poll_next(cx)).await {
            match chunk? {
                Chunk::Delta(text) => content.push_str(&text),
                Chunk::End(end) => {
                    return Ok(Completion {
                        content,
                        provider: self.provider,
                        model: self.model,
                        usage: end.usage,
                        cost_usd: end.cost_usd,
                        finish_reason: end.finish_reason,
                        meta: self.meta,
                    })
                }
            }
        }
        Err(ProviderError::cut(self.provider, "stream ended without its end"))
    }
}

impl Stream for ChatStream {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// What every chat service answers: a whole completion or a stream of chunks.
#[derive(Debug)]
pub enum ChatResponse {
    /// A whole answer.
    Complete(Completion),
    /// A streamed answer.
    Stream(ChatStream),
}

impl ChatResponse {
    /// The provider that serves this response.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::Complete(c) => c.provider,
            Self::Stream(s) => s.provider,
        }
    }

    /// The model that serves this response.
    pub fn model(&self) -> &str {
        match self {
            Self::Complete(c) => &c.model,
            Self::Stream(s) => &s.model,
        }
    }

    /// What layers learned about the call, for layers to add to.
    pub fn meta_mut(&mut self) -> &mut ResponseMeta {
        match self {
            Self::Complete(c) => &mut c.meta,
            Self::Stream(s) => &mut s.meta,
        }
    }

    /// The answer as a stream: a whole completion becomes one delta and its end.
    pub fn into_stream(self) -> ChatStream {
        match self {
            Self::Stream(s) => s,
            Self::Complete(c) => {
                let end = StreamEnd {
                    usage: c.usage,
                    cost_usd: c.cost_usd,
                    finish_reason: c.finish_reason,
                };
                let chunks = [Ok(Chunk::Delta(c.content)), Ok(Chunk::End(end))];
                let mut stream = ChatStream::new(c.provider, c.model, Replay::new(chunks));
                stream.meta = c.meta;
                stream
            }
        }
    }

    /// The whole answer, reading a stream to its end if need be.
    pub async fn into_completion(self) -> Result<Completion, ProviderError> {
        match self {
            Self::Complete(c) => Ok(c),
            Self::Stream(s) => s.into_completion().await,
        }
    }
}

/// A stream of items known in advance.
pub(crate) struct Replay {
    items: VecDeque<Result<Chunk, ProviderError>>,
}

impl Replay {
    pub(crate) fn new(items: impl IntoIterator<Item = Result<Chunk, ProviderError>>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }
}

impl Stream for Replay {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.items.pop_front())
    }
}
