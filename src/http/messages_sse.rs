//! The events of a streamed `/v1/messages`, in Anthropic's grammar:
//! `message_start`; per content block a `content_block_start`, its
//! `content_block_delta`s (`text_delta`, or `input_json_delta` for a tool
//! call's arguments) and a `content_block_stop`; then `message_delta` with
//! the stop reason and usage, and `message_stop`. `ping` keeps an idle
//! stream open. A stream cut after it started ends with an `error` event and
//! no `message_stop`, so the SDKs raise.

use std::collections::VecDeque;

use axum::response::sse::Event;
use chrysalis_services::{Chunk, StreamEnd, ToolCallDelta};
use serde::Serialize;
use serde_json::json;

use super::frame::{FrameBuffer, TextFrames};
use super::frame_stream::{FrameWriter, Served};
use super::messages::{stop_reason, stop_sequence, MessageId, WireUsage};
use crate::error::ApiError;

/// The keep-alive event: what Anthropic sends while a stream is idle.
pub(super) fn ping() -> Event {
    Event::default().event("ping").data(r#"{"type":"ping"}"#)
}

/// The content block being written.
enum Open {
    Text { texts: TextFrames },
    ToolUse { call: u32 },
}

/// The frames of Anthropic's Messages stream.
pub(super) struct MessageEvents {
    id: MessageId,
    buffer: FrameBuffer,
    open: Option<Open>,
    /// The index the next content block takes.
    next_block: u32,
}

impl MessageEvents {
    pub(super) fn new(id: MessageId) -> Self {
        Self {
            id,
            buffer: FrameBuffer::default(),
            open: None,
            next_block: 0,
        }
    }

    fn push<T: Serialize>(&mut self, out: &mut VecDeque<Event>, name: &'static str, value: &T) {
        out.push_back(self.buffer.named(Some(name), value));
    }

    fn text(&mut self, text: &str, out: &mut VecDeque<Event>) {
        if !matches!(self.open, Some(Open::Text { .. })) {
            let index = self.start_block(&json!({"type": "text", "text": ""}), out);
            let texts = TextFrames::named(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": TextFrames::SLOT}}),
            );
            self.open = Some(Open::Text { texts });
        }
        if let Some(Open::Text { texts }) = &mut self.open {
            out.push_back(texts.text(text));
        }
    }

    /// A piece of a tool call: its first piece opens a `tool_use` block.
    /// Pieces come a call at a time, as every upstream sends them.
    fn tool_call(&mut self, call: &ToolCallDelta, out: &mut VecDeque<Event>) {
        if !matches!(self.open, Some(Open::ToolUse { call: open }) if open == call.index) {
            let id = call.id.clone().unwrap_or_else(|| format!("toolu_{}", call.index));
            let name = call.name.as_deref().unwrap_or_default();
            self.start_block(&json!({"type": "tool_use", "id": id, "name": name, "input": {}}), out);
            self.open = Some(Open::ToolUse { call: call.index });
        }
        if !call.arguments.is_empty() {
            let index = self.next_block - 1;
            let delta = json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": call.arguments}});
            self.push(out, "content_block_delta", &delta);
        }
    }

    /// Closes the open block and starts `block`; its index.
    fn start_block(&mut self, block: &serde_json::Value, out: &mut VecDeque<Event>) -> u32 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        let start = json!({"type": "content_block_start", "index": index, "content_block": block});
        self.push(out, "content_block_start", &start);
        index
    }

    fn close_block(&mut self, out: &mut VecDeque<Event>) {
        if self.open.take().is_some() {
            let stop = json!({"type": "content_block_stop", "index": self.next_block - 1});
            self.push(out, "content_block_stop", &stop);
        }
    }
}

impl FrameWriter for MessageEvents {
    fn start(&mut self, served: &Served<'_>, out: &mut VecDeque<Event>) {
        let start = json!({"type": "message_start", "message": {
            "id": self.id.0, "type": "message", "role": "assistant", "model": served.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }});
        self.push(out, "message_start", &start);
    }

    fn piece(&mut self, chunk: Chunk, _: &Served<'_>, out: &mut VecDeque<Event>) {
        match chunk {
            Chunk::Delta(text) => self.text(&text, out),
            Chunk::ToolCall(call) => self.tool_call(&call, out),
            Chunk::End(_) => {}
        }
    }

    fn end(&mut self, end: &StreamEnd, _: &Served<'_>, out: &mut VecDeque<Event>) {
        self.close_block(out);
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(end.finish_reason.as_ref()),
                      "stop_sequence": stop_sequence(end.finish_reason.as_ref())},
            "usage": WireUsage::from(end.usage)});
        self.push(out, "message_delta", &delta);
        self.push(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn error(&mut self, error: &ApiError, _: &Served<'_>, out: &mut VecDeque<Event>) {
        let body = json!({"type": "error", "error": {
            "type": error.anthropic_type(), "message": error.message, "code": error.kind,
        }});
        self.push(out, "error", &body);
    }
}
