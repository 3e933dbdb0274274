//! The frames of `POST /v1/chat/stream`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::response::sse::Event;
use chrysalis_services::{ChatStream, Chunk, FinishReason, ProviderError, ToolCallDelta, Usage};
use futures_core::Stream;
use serde::Serialize;

use super::frame::{FrameBuffer, TextFrames};
use super::log::RequestLog;
use crate::error::{ApiError, ErrorDetail};
use crate::shutdown::CutoffWatch;

/// Turns chunks into `data:` frames: one per delta, then a `done` frame with
/// usage and cost, or a `done` frame with the error that cut the stream.
pub(super) struct SseFrames {
    first: Option<Result<Chunk, ProviderError>>,
    chunks: ChatStream,
    texts: TextFrames,
    done: bool,
    log: RequestLog,
    cutoff: CutoffWatch,
}

impl SseFrames {
    /// Frames for `chunks`, of which `first` was already read.
    pub(super) fn new(
        first: Option<Result<Chunk, ProviderError>>,
        chunks: ChatStream,
        log: RequestLog,
        cutoff: CutoffWatch,
    ) -> Self {
        let texts = TextFrames::new(&DeltaFrame {
            content: TextFrames::SLOT,
            model: &chunks.model,
            provider: chunks.provider,
        });
        Self {
            first,
            chunks,
            texts,
            done: false,
            log,
            cutoff,
        }
    }

    fn frame(&mut self, item: Option<Result<Chunk, ProviderError>>) -> Event {
        let (model, provider) = (self.chunks.model.as_str(), self.chunks.provider);
        let frame = match item {
            Some(Ok(Chunk::Delta(text))) => return self.texts.text(&text),
            Some(Ok(Chunk::ToolCall(tool_call))) => {
                return self.texts.buffer().json(&ToolCallFrame {
                    tool_call: &tool_call,
                    model,
                    provider,
                })
            }
            Some(Ok(Chunk::End(end))) => {
                self.log.served(provider, model, end.usage, end.cost_usd);
                self.texts.buffer().json(&DoneFrame {
                    done: true,
                    finish_reason: end.finish_reason.as_ref().unwrap_or(&FinishReason::Stop),
                    model,
                    provider,
                    usage: end.usage,
                    cost_usd: end.cost_usd,
                    resumed: end.resumed_by.is_some(),
                    resumed_by: end.resumed_by,
                })
            }
            Some(Err(e)) => self.error_frame(&e),
            None => self.error_frame(&ProviderError::cut(provider, "stream ended without its end")),
        };
        self.done = true;
        frame
    }
}

impl SseFrames {
    fn error_frame(&mut self, error: &ProviderError) -> Event {
        self.api_error_frame(&ApiError::from_provider(error))
    }

    fn api_error_frame(&mut self, error: &ApiError) -> Event {
        // What was sent before the failure is charged once the layers inside settle.
        self.chunks.cut();
        let charged = self.chunks.cut_charge.get();
        self.log.failed(Some(self.chunks.provider), error, charged);
        error_frame(self.texts.buffer(), error)
    }
}

impl Drop for SseFrames {
    fn drop(&mut self) {
        if !self.done {
            self.chunks.cut();
            let charged = self.chunks.cut_charge.get();
            self.log.cancelled(self.chunks.provider, &self.chunks.model, charged);
        }
    }
}

impl Stream for SseFrames {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cutoff.poll_reached(cx) {
            self.done = true;
            let frame = self.api_error_frame(&ApiError::shutting_down());
            return Poll::Ready(Some(Ok(frame)));
        }
        let item = match self.first.take() {
            Some(first) => Some(first),
            None => ready!(Pin::new(&mut self.chunks).poll_next(cx)),
        };
        let frame = self.frame(item);
        Poll::Ready(Some(Ok(frame)))
    }
}

#[derive(Serialize)]
struct DeltaFrame<'a> {
    content: &'a str,
    model: &'a str,
    provider: &'a str,
}

/// A piece of a tool call: `{"tool_call": {"index", "id"?, "name"?, "arguments"}}`.
#[derive(Serialize)]
struct ToolCallFrame<'a> {
    tool_call: &'a ToolCallDelta,
    model: &'a str,
    provider: &'a str,
}

#[derive(Serialize)]
struct DoneFrame<'a> {
    done: bool,
    finish_reason: &'a FinishReason,
    model: &'a str,
    provider: &'a str,
    usage: Usage,
    cost_usd: f64,
    /// A stream cut short and finished by another provider says so, and which.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    resumed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    resumed_by: Option<&'a str>,
}

fn error_frame(buffer: &mut FrameBuffer, error: &ApiError) -> Event {
    #[derive(Serialize)]
    struct ErrorFrame<'a> {
        done: bool,
        error: ErrorDetail<'a>,
    }
    buffer.json(&ErrorFrame {
        done: true,
        error: error.detail(),
    })
}
