//! The chunks of a streamed `/v1/chat/completions`: a role chunk, content
//! chunks, a chunk with the finish reason, a usage chunk when asked for
//! (`stream_options.include_usage`), then `data: [DONE]`. A stream cut after
//! it started ends with `data: {"error": ...}` and no `[DONE]`, so SDKs raise.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::response::sse::Event;
use chrysalis_services::{ChatStream, Chunk, FinishReason, ProviderError, StreamEnd, ToolCallDelta, Usage};
use futures_core::Stream;
use serde::Serialize;

use super::frame::TextFrames;
use super::log::RequestLog;
use crate::error::ApiError;
use crate::shutdown::CutoffWatch;

/// The id and creation time every chunk of one response repeats.
pub(super) struct CompletionId {
    pub(super) id: String,
    pub(super) created: u64,
}

/// Turns chunks into OpenAI `chat.completion.chunk` events.
pub(super) struct OpenAiFrames {
    id: CompletionId,
    include_usage: bool,
    first: Option<Option<Result<Chunk, ProviderError>>>,
    chunks: ChatStream,
    pending: VecDeque<Event>,
    texts: TextFrames,
    done: bool,
    log: RequestLog,
    cutoff: CutoffWatch,
}

impl OpenAiFrames {
    pub(super) fn new(
        id: CompletionId,
        include_usage: bool,
        first: Option<Result<Chunk, ProviderError>>,
        chunks: ChatStream,
        log: RequestLog,
        cutoff: CutoffWatch,
    ) -> Self {
        let texts = TextFrames::new(&ChunkBody {
            id: &id.id,
            object: "chat.completion.chunk",
            created: id.created,
            model: &chunks.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content: Some(TextFrames::SLOT),
                    tool_calls: None,
                },
                finish_reason: None,
            }],
            usage: None,
        });
        let mut frames = Self {
            id,
            include_usage,
            first: Some(first),
            chunks,
            pending: VecDeque::with_capacity(4),
            texts,
            done: false,
            log,
            cutoff,
        };
        let role = frames.chunk(
            Delta {
                role: Some("assistant"),
                content: Some(""),
                tool_calls: None,
            },
            None,
        );
        frames.pending.push_back(role);
        frames
    }

    fn chunk(&mut self, delta: Delta<'_>, finish_reason: Option<&FinishReason>) -> Event {
        let body = ChunkBody {
            id: &self.id.id,
            object: "chat.completion.chunk",
            created: self.id.created,
            model: &self.chunks.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: None,
        };
        self.texts.buffer().json(&body)
    }

    fn on(&mut self, item: Option<Result<Chunk, ProviderError>>) {
        match item {
            Some(Ok(Chunk::Delta(text))) => {
                let event = self.texts.text(&text);
                self.pending.push_back(event);
            }
            Some(Ok(Chunk::ToolCall(call))) => {
                let delta = Delta {
                    role: None,
                    content: None,
                    tool_calls: Some([WireToolCallDelta::from(&call)]),
                };
                let event = self.chunk(delta, None);
                self.pending.push_back(event);
            }
            Some(Ok(Chunk::End(end))) => self.end(end),
            Some(Err(error)) => self.fail(&error),
            None => self.fail(&ProviderError::cut(
                self.chunks.provider,
                "stream ended without its end",
            )),
        }
    }

    fn end(&mut self, end: StreamEnd) {
        self.log
            .served(self.chunks.provider, &self.chunks.model, end.usage, end.cost_usd);
        let reason = end.finish_reason.as_ref().unwrap_or(&FinishReason::Stop);
        let finish = self.chunk(
            Delta {
                role: None,
                content: None,
                tool_calls: None,
            },
            Some(reason),
        );
        self.pending.push_back(finish);
        if self.include_usage {
            let usage = self.texts.buffer().json(&ChunkBody {
                id: &self.id.id,
                object: "chat.completion.chunk",
                created: self.id.created,
                model: &self.chunks.model,
                choices: Vec::new(),
                usage: Some(end.usage),
            });
            self.pending.push_back(usage);
        }
        self.pending.push_back(Event::default().data("[DONE]"));
        self.done = true;
    }

    fn fail(&mut self, error: &ProviderError) {
        self.fail_with(ApiError::from_provider(error));
    }

    fn fail_with(&mut self, error: ApiError) {
        // What was sent before the failure is charged once the layers inside settle.
        self.chunks.cut();
        let charged = self.chunks.cut_charge.get();
        self.log.failed(Some(self.chunks.provider), &error, charged);
        let body = serde_json::json!({"error": {"message": error.message, "type": "api_error", "code": error.kind}});
        let event = self.texts.buffer().json(&body);
        self.pending.push_back(event);
        self.done = true;
    }
}

impl Drop for OpenAiFrames {
    fn drop(&mut self) {
        if !self.done {
            self.chunks.cut();
            let charged = self.chunks.cut_charge.get();
            self.log.cancelled(self.chunks.provider, &self.chunks.model, charged);
        }
    }
}

impl Stream for OpenAiFrames {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            if self.cutoff.poll_reached(cx) {
                self.fail_with(ApiError::shutting_down());
                continue;
            }
            let item = match self.first.take() {
                Some(first) => first,
                None => ready!(Pin::new(&mut self.chunks).poll_next(cx)),
            };
            self.on(item);
        }
    }
}

#[derive(Serialize)]
struct ChunkBody<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a FinishReason>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[WireToolCallDelta<'a>; 1]>,
}

/// A `delta.tool_calls` item: id, type and name on a call's first piece.
#[derive(Serialize)]
struct WireToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: WireFunctionDelta<'a>,
}

#[derive(Serialize)]
struct WireFunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl<'a> From<&'a ToolCallDelta> for WireToolCallDelta<'a> {
    fn from(call: &'a ToolCallDelta) -> Self {
        Self {
            index: call.index,
            id: call.id.as_deref(),
            kind: call.id.is_some().then_some("function"),
            function: WireFunctionDelta {
                name: call.name.as_deref(),
                arguments: &call.arguments,
            },
        }
    }
}
