//! The frames of `POST /v1/chat/stream`.

use std::collections::VecDeque;

use axum::response::sse::Event;
use chrysalis_services::{ChatStream, Chunk, FinishReason, StreamEnd, ToolCallDelta, Usage};
use serde::Serialize;

use super::frame::{FrameBuffer, TextFrames};
use super::frame_stream::{FrameWriter, Served};
use crate::error::{ApiError, ErrorDetail};

/// The frames of the seed API: one `data:` frame per delta or tool-call
/// piece, then a `done` frame with usage and cost, or a `done` frame with
/// the error that cut the stream.
pub(super) struct SeedFrames {
    texts: TextFrames,
}

impl SeedFrames {
    pub(super) fn new(chunks: &ChatStream) -> Self {
        let texts = TextFrames::new(&DeltaFrame {
            content: TextFrames::SLOT,
            model: &chunks.model,
            provider: chunks.provider,
        });
        Self { texts }
    }
}

impl FrameWriter for SeedFrames {
    fn piece(&mut self, chunk: Chunk, served: &Served<'_>, out: &mut VecDeque<Event>) {
        let event = match chunk {
            Chunk::Delta(text) => self.texts.text(&text),
            Chunk::ToolCall(tool_call) => self.texts.buffer().json(&ToolCallFrame {
                tool_call: &tool_call,
                model: served.model,
                provider: served.provider,
            }),
            Chunk::End(_) => return,
        };
        out.push_back(event);
    }

    fn end(&mut self, end: &StreamEnd, served: &Served<'_>, out: &mut VecDeque<Event>) {
        out.push_back(self.texts.buffer().json(&DoneFrame {
            done: true,
            finish_reason: end.finish_reason.as_ref().unwrap_or(&FinishReason::Stop),
            model: served.model,
            provider: served.provider,
            usage: end.usage,
            cost_usd: end.cost_usd,
            resumed: end.resumed_by.is_some(),
            resumed_by: end.resumed_by,
        }));
    }

    fn error(&mut self, error: &ApiError, _: &Served<'_>, out: &mut VecDeque<Event>) {
        out.push_back(error_frame(self.texts.buffer(), error));
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
