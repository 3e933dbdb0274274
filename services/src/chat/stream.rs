//! Streamed answers, and the one response type of every chat service.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_core::Stream;

use super::response::{Chunk, Completion, ResponseMeta, StreamEnd, Usage};
use super::ToolCallAssembly;
use crate::error::ProviderError;

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
    /// What the stream was charged if it did not reach its end.
    pub cut_charge: CutCharge,
    /// Prompt bytes sent again to finish the stream elsewhere.
    pub resent_prompt: ResentPrompt,
    chunks: ChunkStream,
}

/// Prompt bytes a layer sent again to have a stream cut short finished by
/// another call (a resumed stream's continuation, which repeats the prompt):
/// if the stream is cut after all, its charge counts them too.
#[derive(Debug, Clone, Default)]
pub struct ResentPrompt(Arc<AtomicUsize>);

impl ResentPrompt {
    /// Counts `bytes` more.
    pub fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The bytes sent again so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a stream that did not reach its end was charged: the budget writes
/// it when it settles the stream, the layers outside it (metrics, the request
/// log) read it when they report how the stream ended. Those layers drop the
/// stream's chunks before they report, so the budget has settled by then.
#[derive(Debug, Clone, Default)]
pub struct CutCharge(Arc<OnceLock<(Usage, f64)>>);

impl CutCharge {
    /// Records the charge; the first one recorded stays.
    pub fn set(&self, usage: Usage, cost_usd: f64) {
        let _ = self.0.set((usage, cost_usd));
    }

    /// The tokens and USD charged, if any were.
    pub fn get(&self) -> Option<(Usage, f64)> {
        self.0.get().copied()
    }
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
            cut_charge: CutCharge::default(),
            resent_prompt: ResentPrompt::default(),
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
            cut_charge,
            resent_prompt,
            chunks,
        } = self;
        let mut wrapped = Self::new(provider, model, wrap(chunks));
        wrapped.meta = meta;
        wrapped.cut_charge = cut_charge;
        wrapped.resent_prompt = resent_prompt;
        wrapped
    }

    /// Drops the chunks now, so every layer inside settles how the stream
    /// ended (a cut stream's charge among it) before the caller reports it.
    pub fn cut(&mut self) {
        self.chunks = Box::pin(futures_util::stream::empty());
    }

    /// Reads the stream to its end and joins it into one [`Completion`].
    pub async fn into_completion(mut self) -> Result<Completion, ProviderError> {
        let mut content = String::new();
        let mut tool_calls = ToolCallAssembly::default();
        while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut self).poll_next(cx)).await {
            match chunk? {
                Chunk::Delta(text) => content.push_str(&text),
                Chunk::ToolCall(delta) => tool_calls.add(delta),
                Chunk::End(end) => {
                    return Ok(Completion {
                        content,
                        tool_calls: tool_calls.finish(),
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
                    resumed_by: None,
                };
                let text = (!c.content.is_empty()).then_some(Chunk::Delta(c.content));
                let calls = c.tool_calls.into_iter().zip(0..).map(|(call, index)| {
                    Chunk::ToolCall(super::ToolCallDelta {
                        index,
                        id: Some(call.id),
                        name: Some(call.name),
                        arguments: call.arguments,
                    })
                });
                let chunks = text.into_iter().chain(calls).chain([Chunk::End(end)]).map(Ok);
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
