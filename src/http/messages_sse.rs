//! The events of a streamed `/v1/messages`, in Anthropic's grammar:
//! `message_start`; per content block a `content_block_start`, its
//! `content_block_delta`s (`text_delta`, or `input_json_delta` for a tool
//! call's arguments) and a `content_block_stop`; then `message_delta` with
//! the stop reason and usage, and `message_stop`. `ping` keeps an idle
//! stream open. A stream cut after it started ends with an `error` event and
//! no `message_stop`, so the SDKs raise.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::response::sse::Event;
use chrysalis_services::{ChatStream, Chunk, ProviderError, StreamEnd, ToolCallDelta};
use futures_core::Stream;
use serde::Serialize;
use serde_json::json;

use super::frame::{FrameBuffer, TextFrames};
use super::log::RequestLog;
use super::messages::{stop_reason, stop_sequence, MessageId, WireUsage};
use crate::error::ApiError;
use crate::shutdown::CutoffWatch;

/// The keep-alive event: what Anthropic sends while a stream is idle.
pub(super) fn ping() -> Event {
    Event::default().event("ping").data(r#"{"type":"ping"}"#)
}

/// The content block being written.
enum Open {
    Text { texts: TextFrames },
    ToolUse { call: u32 },
}

/// Turns chunks into Messages events.
pub(super) struct MessageEvents {
    first: Option<Option<Result<Chunk, ProviderError>>>,
    chunks: ChatStream,
    pending: VecDeque<Event>,
    buffer: FrameBuffer,
    open: Option<Open>,
    /// The index the next content block takes.
    next_block: u32,
    done: bool,
    log: RequestLog,
    cutoff: CutoffWatch,
}

impl MessageEvents {
    pub(super) fn new(
        id: MessageId,
        first: Option<Result<Chunk, ProviderError>>,
        chunks: ChatStream,
        log: RequestLog,
        cutoff: CutoffWatch,
    ) -> Self {
        let mut events = Self {
            first: Some(first),
            chunks,
            pending: VecDeque::with_capacity(4),
            buffer: FrameBuffer::default(),
            open: None,
            next_block: 0,
            done: false,
            log,
            cutoff,
        };
        let start = json!({"type": "message_start", "message": {
            "id": id.0, "type": "message", "role": "assistant", "model": events.chunks.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }});
        events.push("message_start", &start);
        events
    }

    fn push<T: Serialize>(&mut self, name: &'static str, value: &T) {
        let event = self.buffer.named(Some(name), value);
        self.pending.push_back(event);
    }

    fn on(&mut self, item: Option<Result<Chunk, ProviderError>>) {
        match item {
            Some(Ok(Chunk::Delta(text))) => self.text(&text),
            Some(Ok(Chunk::ToolCall(call))) => self.tool_call(&call),
            Some(Ok(Chunk::End(end))) => self.end(&end),
            Some(Err(error)) => self.fail(ApiError::from_provider(&error)),
            None => self.fail(ApiError::from_provider(&ProviderError::cut(
                self.chunks.provider,
                "stream ended without its end",
            ))),
        }
    }

    fn text(&mut self, text: &str) {
        if !matches!(self.open, Some(Open::Text { .. })) {
            let index = self.start_block(&json!({"type": "text", "text": ""}));
            let texts = TextFrames::named(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": TextFrames::SLOT}}),
            );
            self.open = Some(Open::Text { texts });
        }
        if let Some(Open::Text { texts }) = &mut self.open {
            let event = texts.text(text);
            self.pending.push_back(event);
        }
    }

    /// A piece of a tool call: its first piece opens a `tool_use` block.
    /// Pieces come a call at a time, as every upstream sends them.
    fn tool_call(&mut self, call: &ToolCallDelta) {
        if !matches!(self.open, Some(Open::ToolUse { call: open }) if open == call.index) {
            let id = call.id.clone().unwrap_or_else(|| format!("toolu_{}", call.index));
            let name = call.name.as_deref().unwrap_or_default();
            self.start_block(&json!({"type": "tool_use", "id": id, "name": name, "input": {}}));
            self.open = Some(Open::ToolUse { call: call.index });
        }
        if !call.arguments.is_empty() {
            let index = self.next_block - 1;
            let delta = json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": call.arguments}});
            self.push("content_block_delta", &delta);
        }
    }

    /// Closes the open block and starts `block`; its index.
    fn start_block(&mut self, block: &serde_json::Value) -> u32 {
        self.close_block();
        let index = self.next_block;
        self.next_block += 1;
        let start = json!({"type": "content_block_start", "index": index, "content_block": block});
        self.push("content_block_start", &start);
        index
    }

    fn close_block(&mut self) {
        if self.open.take().is_some() {
            let stop = json!({"type": "content_block_stop", "index": self.next_block - 1});
            self.push("content_block_stop", &stop);
        }
    }

    fn end(&mut self, end: &StreamEnd) {
        self.log
            .served(self.chunks.provider, &self.chunks.model, end.usage, end.cost_usd);
        self.close_block();
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(end.finish_reason.as_ref()),
                      "stop_sequence": stop_sequence(end.finish_reason.as_ref())},
            "usage": WireUsage::from(end.usage)});
        self.push("message_delta", &delta);
        self.push("message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }

    fn fail(&mut self, error: ApiError) {
        // What was sent before the failure is charged once the layers inside settle.
        self.chunks.cut();
        let charged = self.chunks.cut_charge.get();
        self.log.failed(Some(self.chunks.provider), &error, charged);
        let body = json!({"type": "error", "error": {
            "type": error.anthropic_type(), "message": error.message, "code": error.kind,
        }});
        self.push("error", &body);
        self.done = true;
    }
}

impl Drop for MessageEvents {
    fn drop(&mut self) {
        if !self.done {
            self.chunks.cut();
            let charged = self.chunks.cut_charge.get();
            self.log.cancelled(self.chunks.provider, &self.chunks.model, charged);
        }
    }
}

impl Stream for MessageEvents {
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
                self.fail(ApiError::shutting_down());
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
