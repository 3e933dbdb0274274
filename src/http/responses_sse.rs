//! The events of a streamed `/v1/responses`, as OpenAI documents them, each
//! with its `sequence_number`: `response.created`, `response.in_progress`;
//! per output item `response.output_item.added`, for a message
//! `response.content_part.added`, `response.output_text.delta`s,
//! `response.output_text.done`, `response.content_part.done`, for a function
//! call `response.function_call_arguments.delta`s and `.done`; then
//! `response.output_item.done`; and `response.completed` (or
//! `response.incomplete`) with usage. A stream cut after it started ends with
//! an `error` event and `response.failed`, never `response.completed`.

use std::collections::VecDeque;

use axum::response::sse::Event;
use chrysalis_services::{Chunk, FinishReason, StreamEnd, ToolCall, ToolCallDelta};
use serde::Serialize;
use serde_json::{json, Value};

use super::frame::FrameBuffer;
use super::frame_stream::{FrameWriter, Served};
use super::responses::{status_of, Keep, Shell};
use crate::error::ApiError;

/// An output item as it is being written.
enum Item {
    Message(String),
    Call { index: u32, call: ToolCall },
}

/// The frames of the Responses API's stream.
pub(super) struct ResponseEvents {
    shell: Shell,
    keep: Option<Keep>,
    model: String,
    pending: VecDeque<Event>,
    buffer: FrameBuffer,
    items: Vec<Item>,
    /// Whether the last item is still open.
    open: bool,
    /// The open item's id, made once for all its deltas.
    open_id: String,
    sequence: u64,
}

/// A text delta, the one event of every chunk: serialised as it is, with
/// no JSON tree built for it.
#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
}

impl ResponseEvents {
    pub(super) fn new(shell: Shell, keep: Option<Keep>) -> Self {
        Self {
            shell,
            keep,
            model: String::new(),
            pending: VecDeque::with_capacity(8),
            buffer: FrameBuffer::default(),
            items: Vec::new(),
            open: false,
            open_id: String::new(),
            sequence: 0,
        }
    }

    fn response(&self, status: &str, end: Option<&StreamEnd>) -> Value {
        let output = (0..self.items.len()).map(|i| self.item(i, "completed")).collect();
        self.shell.object(&self.model, status, output, end.map(|e| e.usage))
    }

    fn item(&self, index: usize, status: &str) -> Value {
        match &self.items[index] {
            Item::Message(text) => self.shell.message_item(index, text, status),
            Item::Call { call, .. } => self.shell.call_item(index, call, status),
        }
    }

    /// Queues event `kind` with `fields`, numbered in order.
    fn push(&mut self, kind: &'static str, mut fields: Value) {
        fields["type"] = kind.into();
        fields["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        let event = self.buffer.named(Some(kind), &fields);
        self.pending.push_back(event);
    }

    fn text(&mut self, text: &str) {
        if !(self.open && matches!(self.items.last(), Some(Item::Message(_)))) {
            self.close();
            self.items.push(Item::Message(String::new()));
            self.open = true;
            let index = self.items.len() - 1;
            let item = self.item(index, "in_progress");
            let mut item_without_content = item.clone();
            item_without_content["content"] = json!([]);
            self.push(
                "response.output_item.added",
                json!({"output_index": index, "item": item_without_content}),
            );
            self.open_id = self.shell.item_id("msg", index);
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            let added = json!({"item_id": self.open_id, "output_index": index, "content_index": 0, "part": part});
            self.push("response.content_part.added", added);
        }
        let index = self.items.len() - 1;
        if let Some(Item::Message(so_far)) = self.items.last_mut() {
            so_far.push_str(text);
        }
        let kind = "response.output_text.delta";
        let delta = TextDelta {
            kind,
            sequence_number: self.sequence,
            item_id: &self.open_id,
            output_index: index,
            content_index: 0,
            delta: text,
        };
        let event = self.buffer.named(Some(kind), &delta);
        self.sequence += 1;
        self.pending.push_back(event);
    }

    fn tool_call(&mut self, delta: ToolCallDelta) {
        let same = self.open && matches!(self.items.last(), Some(Item::Call { index, .. }) if *index == delta.index);
        if !same {
            self.close();
            let call = ToolCall {
                id: delta.id.clone().unwrap_or_else(|| format!("call_{}", delta.index)),
                name: delta.name.clone().unwrap_or_default(),
                arguments: String::new(),
            };
            self.items.push(Item::Call {
                index: delta.index,
                call,
            });
            self.open = true;
            let index = self.items.len() - 1;
            self.open_id = self.shell.item_id("fc", index);
            let item = self.item(index, "in_progress");
            self.push(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
        }
        if delta.arguments.is_empty() {
            return;
        }
        let index = self.items.len() - 1;
        if let Some(Item::Call { call, .. }) = self.items.last_mut() {
            call.arguments.push_str(&delta.arguments);
        }
        let piece = json!({"item_id": self.open_id, "output_index": index, "delta": delta.arguments});
        self.push("response.function_call_arguments.delta", piece);
    }

    /// Ends the open item with its `.done` events.
    fn close(&mut self) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let index = self.items.len() - 1;
        match &self.items[index] {
            Item::Message(text) => {
                let (id, text) = (self.open_id.clone(), text.clone());
                let done = json!({"item_id": id, "output_index": index, "content_index": 0, "text": text});
                self.push("response.output_text.done", done);
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let done = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
                self.push("response.content_part.done", done);
            }
            Item::Call { call, .. } => {
                let (id, arguments) = (self.open_id.clone(), call.arguments.clone());
                let done = json!({"item_id": id, "output_index": index, "arguments": arguments});
                self.push("response.function_call_arguments.done", done);
            }
        }
        let item = self.item(index, "completed");
        self.push(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    fn finish(&mut self, end: &StreamEnd) {
        self.close();
        if let Some(keep) = self.keep.take() {
            let text: String = self
                .items
                .iter()
                .filter_map(|item| match item {
                    Item::Message(text) => Some(text.as_str()),
                    Item::Call { .. } => None,
                })
                .collect();
            let calls: Vec<ToolCall> = self
                .items
                .iter()
                .filter_map(|item| match item {
                    Item::Call { call, .. } => Some(call.clone()),
                    Item::Message(_) => None,
                })
                .collect();
            // Stored before the last event, so the client may continue from it at once.
            keep.put(&self.shell.id, &text, &calls);
        }
        let status = status_of(end.finish_reason.as_ref());
        let mut response = self.response(status, Some(end));
        if end.finish_reason == Some(FinishReason::Length) {
            response["incomplete_details"] = json!({"reason": "max_output_tokens"});
            self.push("response.incomplete", json!({"response": response}));
        } else {
            self.push("response.completed", json!({"response": response}));
        }
    }

    fn fail(&mut self, error: &ApiError) {
        self.push(
            "error",
            json!({"code": error.kind, "message": error.message, "param": null}),
        );
        let mut response = self.response("failed", None);
        response["error"] = json!({"code": "server_error", "message": error.message});
        self.push("response.failed", json!({"response": response}));
    }
}

impl FrameWriter for ResponseEvents {
    fn start(&mut self, served: &Served<'_>, out: &mut VecDeque<Event>) {
        self.model = served.model.to_owned();
        let response = self.response("in_progress", None);
        self.push("response.created", json!({"response": response}));
        let response = self.response("in_progress", None);
        self.push("response.in_progress", json!({"response": response}));
        out.append(&mut self.pending);
    }

    fn piece(&mut self, chunk: Chunk, _: &Served<'_>, out: &mut VecDeque<Event>) {
        match chunk {
            Chunk::Delta(text) => self.text(&text),
            Chunk::ToolCall(call) => self.tool_call(call),
            Chunk::End(_) => {}
        }
        out.append(&mut self.pending);
    }

    fn end(&mut self, end: &StreamEnd, _: &Served<'_>, out: &mut VecDeque<Event>) {
        self.finish(end);
        out.append(&mut self.pending);
    }

    fn error(&mut self, error: &ApiError, _: &Served<'_>, out: &mut VecDeque<Event>) {
        self.fail(error);
        out.append(&mut self.pending);
    }
}
