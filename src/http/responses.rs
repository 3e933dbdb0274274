//! OpenAI's Responses API, `POST /v1/responses` (whole and streamed), for the
//! SDKs that default to it (the Vercel AI SDK's `openai(...)`, OpenAI's
//! Agents SDKs), through the same chat stack as every route, to any provider.
//! A request carries its whole history (`store: false`, or the items sent
//! back), or continues a stored response by `previous_response_id`: the
//! gateway keeps each response (unless `store: false`) in its
//! [`ResponseStore`], for the agent that made it; an id it does not hold (or
//! no longer) is a 400 that says so, never a silent drop.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use chrysalis_services::{ChatRequest, Completion, FinishReason, Message, Role, ToolCall, Usage};
use serde_json::{json, Map, Value};

use super::chat::{answered, call_complete, call_stream, read_json_body, sse_response};
use super::frame_stream::FrameStream;
use super::log::RequestLog;
use super::responses_request::{Echo, ResponsesBody};
use super::responses_sse::ResponseEvents;
use super::AppState;
use crate::error::ApiError;
use crate::responses_store::ResponseStore;
use crate::shutdown::Cutoff;

/// `POST /v1/responses`.
pub(super) async fn responses(
    State(state): State<AppState>,
    cutoff: Option<Extension<Cutoff>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::start(&headers, "/v1/responses");
    let cutoff = cutoff.unwrap_or_default().0;
    let parsed = async {
        let bytes = read_json_body(&state, &headers, body).await?;
        let body: ResponsesBody =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
        let (mut request, echo) = body.into_request(&headers)?;
        if let Some(previous) = &echo.previous_response_id {
            continue_from(&state.responses, previous, &mut request, echo.instructions.is_some())?;
        }
        Ok((request, echo))
    };
    let (request, echo) = match parsed.await {
        Ok(parsed) => parsed,
        Err(error) => return failed(&log, error),
    };
    let keep = echo.store.then(|| Keep {
        store: state.responses.clone(),
        agent: request.agent_id.to_string(),
        conversation: request.messages.clone(),
    });
    let shell = Shell::new(echo);
    if request.stream {
        return match call_stream(&state, request, &mut log, &cutoff).await {
            Ok((first, chunks)) => {
                let meta = chunks.meta;
                let writer = ResponseEvents::new(shell, keep);
                sse_response(FrameStream::new(writer, first, chunks, log, cutoff.watch()), meta)
            }
            Err(error) => failed(&log, error),
        };
    }
    match call_complete(&state, request, &mut log, &cutoff).await {
        Ok(completion) => {
            if let Some(keep) = keep {
                keep.put(&shell.id, &completion.content, &completion.tool_calls);
            }
            answered(shell.whole(&completion), &completion)
        }
        Err(error) => failed(&log, error),
    }
}

fn failed(log: &RequestLog, error: ApiError) -> Response {
    log.failed(None, &error, None);
    error.into_openai_response()
}

/// Puts the stored conversation of `previous` before the request's input.
fn continue_from(
    store: &ResponseStore,
    previous: &str,
    request: &mut ChatRequest,
    instructions: bool,
) -> Result<(), ApiError> {
    let history = store
        .get(previous, &request.agent_id)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?;
    let Some(history) = history else {
        let why = format!(
            "no stored response `{previous}` for this agent: it was never stored (`store: false`), has expired, or is another agent's; send the conversation's items in `input`"
        );
        return Err(super::params::invalid("previous_response_id", why));
    };
    let at = usize::from(instructions);
    let mut messages = request.messages.to_vec();
    messages.splice(at..at, history);
    request.messages = messages.into();
    Ok(())
}

/// What to store of a response once it is answered: its conversation, and the answer.
pub(super) struct Keep {
    store: Arc<ResponseStore>,
    agent: String,
    /// The request's messages (shared, not copied): all but its instructions are kept.
    conversation: Arc<[Message]>,
}

impl Keep {
    /// Stores the conversation with the answer (`content`, `tool_calls`) as response `id`.
    pub(super) fn put(self, id: &str, content: &str, tool_calls: &[ToolCall]) {
        let answer = Message {
            tool_calls: tool_calls.to_vec(),
            ..Message::new(Role::Assistant, content)
        };
        let turns = self.conversation.iter().filter(|m| !m.role.is_instruction());
        let conversation: Vec<&Message> = turns.chain([&answer]).collect();
        match self.store.put(id, &self.agent, &conversation) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(id, "a response too large to store: it cannot be continued by id"),
            Err(error) => tracing::warn!(id, error = %error, "a response could not be stored"),
        }
    }
}

/// What every form of one response repeats: its ids, time, and the request's echo.
pub(super) struct Shell {
    pub(super) id: String,
    created_at: u64,
    echo: Echo,
}

impl Shell {
    fn new(echo: Echo) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            // Unguessable: an id is what continues a stored conversation.
            id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
            created_at: now.as_secs(),
            echo,
        }
    }

    /// The id of output item `index` (`msg_...` or `fc_...`).
    pub(super) fn item_id(&self, prefix: &str, index: usize) -> String {
        format!("{prefix}_{}_{index}", self.id.trim_start_matches("resp_"))
    }

    /// The response object with `status` and `output` so far.
    pub(super) fn object(&self, model: &str, status: &str, output: Vec<Value>, usage: Option<Usage>) -> Value {
        let text: String = output
            .iter()
            .filter(|item| item["type"] == "message")
            .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|part| part["text"].as_str().map(str::to_owned))
            .collect();
        json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": model, "output": output, "output_text": text,
            "usage": usage.map(wire_usage), "error": null, "incomplete_details": null,
            "instructions": self.echo.instructions, "metadata": Value::Object(self.echo.metadata.clone()),
            "tools": self.echo.tools.iter().cloned().map(Value::Object).collect::<Vec<_>>(),
            "tool_choice": self.echo.tool_choice, "parallel_tool_calls": self.echo.parallel_tool_calls,
            "text": {"format": self.echo.text_format}, "store": self.echo.store,
            "previous_response_id": self.echo.previous_response_id, "truncation": "disabled",
        })
    }

    /// A whole answer as a completed (or, cut at the cap, incomplete) response.
    fn whole(&self, completion: &Completion) -> Value {
        let mut output = Vec::new();
        if !completion.content.is_empty() || completion.tool_calls.is_empty() {
            output.push(self.message_item(0, &completion.content, "completed"));
        }
        for call in &completion.tool_calls {
            output.push(self.call_item(output.len(), call, "completed"));
        }
        let status = status_of(completion.finish_reason.as_ref());
        let mut object = self.object(&completion.model, status, output, Some(completion.usage));
        if status == "incomplete" {
            object["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        object
    }

    pub(super) fn message_item(&self, index: usize, text: &str, status: &str) -> Value {
        json!({"type": "message", "id": self.item_id("msg", index), "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    }

    pub(super) fn call_item(&self, index: usize, call: &ToolCall, status: &str) -> Value {
        json!({"type": "function_call", "id": self.item_id("fc", index), "call_id": call.id,
               "name": call.name, "arguments": call.arguments, "status": status})
    }
}

/// `completed`, or `incomplete` when the output cap cut the answer.
pub(super) fn status_of(reason: Option<&FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::Length) => "incomplete",
        _ => "completed",
    }
}

/// The Responses API's usage object.
pub(super) fn wire_usage(usage: Usage) -> Value {
    let mut details = Map::new();
    details.insert("cached_tokens".into(), usage.cached_prompt_tokens.into());
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": details,
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}
