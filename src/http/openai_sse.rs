//! The chunks of a streamed `/v1/chat/completions`: a role chunk, content
//! chunks, a chunk with the finish reason, a usage chunk when asked for
//! (`stream_options.include_usage`), then `data: [DONE]`. A stream cut after
//! it started ends with `data: {"error": ...}` and no `[DONE]`, so SDKs raise.

use std::collections::VecDeque;

use axum::response::sse::Event;
use chrysalis_services::{ChatStream, Chunk, FinishReason, StreamEnd, ToolCallDelta, Usage};
use serde::Serialize;

use super::frame::TextFrames;
use super::frame_stream::{FrameWriter, Served};
use crate::error::ApiError;

/// The id and creation time every chunk of one response repeats.
pub(super) struct CompletionId {
    pub(super) id: String,
    pub(super) created: u64,
}

/// The frames of OpenAI's `chat.completion.chunk` stream.
pub(super) struct OpenAiFrames {
    id: CompletionId,
    include_usage: bool,
    texts: TextFrames,
}

impl OpenAiFrames {
    pub(super) fn new(id: CompletionId, include_usage: bool, chunks: &ChatStream) -> Self {
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
        Self {
            id,
            include_usage,
            texts,
        }
    }

    fn chunk(&mut self, model: &str, delta: Delta<'_>, finish_reason: Option<&FinishReason>) -> Event {
        let body = ChunkBody {
            id: &self.id.id,
            object: "chat.completion.chunk",
            created: self.id.created,
            model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: None,
        };
        self.texts.buffer().json(&body)
    }
}

impl FrameWriter for OpenAiFrames {
    fn start(&mut self, served: &Served<'_>, out: &mut VecDeque<Event>) {
        let role = Delta {
            role: Some("assistant"),
            content: Some(""),
            tool_calls: None,
        };
        out.push_back(self.chunk(served.model, role, None));
    }

    fn piece(&mut self, chunk: Chunk, served: &Served<'_>, out: &mut VecDeque<Event>) {
        let event = match chunk {
            Chunk::Delta(text) => self.texts.text(&text),
            Chunk::ToolCall(call) => {
                let delta = Delta {
                    role: None,
                    content: None,
                    tool_calls: Some([WireToolCallDelta::from(&call)]),
                };
                self.chunk(served.model, delta, None)
            }
            Chunk::End(_) => return,
        };
        out.push_back(event);
    }

    fn end(&mut self, end: &StreamEnd, served: &Served<'_>, out: &mut VecDeque<Event>) {
        let reason = end.finish_reason.as_ref().unwrap_or(&FinishReason::Stop);
        let none = Delta {
            role: None,
            content: None,
            tool_calls: None,
        };
        out.push_back(self.chunk(served.model, none, Some(reason)));
        if self.include_usage {
            let usage = self.texts.buffer().json(&ChunkBody {
                id: &self.id.id,
                object: "chat.completion.chunk",
                created: self.id.created,
                model: served.model,
                choices: Vec::new(),
                usage: Some(end.usage),
            });
            out.push_back(usage);
        }
        out.push_back(Event::default().data("[DONE]"));
    }

    fn error(&mut self, error: &ApiError, _: &Served<'_>, out: &mut VecDeque<Event>) {
        let body = serde_json::json!({"error": {"message": error.message, "type": "api_error", "code": error.kind}});
        out.push_back(self.texts.buffer().json(&body));
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
