//! Anthropic's Messages API, so Anthropic SDKs and coding agents work with
//! `ANTHROPIC_BASE_URL=http://HOST:PORT`: `POST /v1/messages` (whole and
//! streamed) and `POST /v1/messages/count_tokens`, through the same chat
//! stack as every other route, to any provider. Errors come in Anthropic's
//! shape, so the SDKs raise the classes they would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrysalis_services::{Completion, FinishReason, Usage};
use serde::Serialize;
use serde_json::{json, Value};

use super::chat::{answered, call_complete, call_stream, read_json_body, sse_response_with};
use super::frame_stream::FrameStream;
use super::log::RequestLog;
use super::messages_request::{chat_request, parse};
use super::messages_sse::{ping, MessageEvents};
use super::AppState;
use crate::error::ApiError;
use crate::shutdown::Cutoff;

/// `POST /v1/messages`.
pub(super) async fn messages(
    State(state): State<AppState>,
    cutoff: Option<Extension<Cutoff>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::start(&headers, "/v1/messages");
    let cutoff = cutoff.unwrap_or_default().0;
    let parsed = async {
        let bytes = read_json_body(&state, &headers, body).await?;
        chat_request(parse(&bytes)?, &headers)
    };
    let request = match parsed.await {
        Ok(request) => request,
        Err(error) => return failed(&log, error),
    };
    let id = MessageId::new();
    if request.stream {
        return match call_stream(&state, request, &mut log, &cutoff).await {
            Ok((first, chunks)) => {
                let meta = chunks.meta;
                let events = FrameStream::new(MessageEvents::new(id), first, chunks, log, cutoff.watch());
                sse_response_with(events, meta, ping())
            }
            Err(error) => failed(&log, error),
        };
    }
    let completion = match call_complete(&state, request, &mut log, &cutoff).await {
        Ok(completion) => completion,
        Err(error) => return failed(&log, error),
    };
    match WholeMessage::new(&id, &completion) {
        Ok(message) => answered(message, &completion),
        Err(error) => failed(&log, error),
    }
}

fn failed(log: &RequestLog, error: ApiError) -> Response {
    log.failed(None, &error, None);
    error.into_anthropic_response()
}

/// `POST /v1/messages/count_tokens`: Anthropic's own count when it is the
/// primary provider; else, or when it cannot be reached, the gateway's
/// estimate (four bytes a token, as it estimates usage an upstream does not
/// report), said so by `x-gateway-token-count: estimate`.
pub(super) async fn count_tokens(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let request = async {
        let bytes = read_json_body(&state, &headers, body).await?;
        let mut body = parse(&bytes)?;
        // Counting needs no output cap; the request's shape is checked as a call's.
        body.entry("max_tokens").or_insert(json!(1));
        chat_request(body, &headers)
    };
    let request = match request.await {
        Ok(request) => request,
        Err(error) => return error.into_anthropic_response(),
    };
    if let (Some(counter), Some(native)) = (&state.token_counter, &request.anthropic) {
        match counter.count_tokens(native, &request.model).await {
            Ok(input_tokens) => return Json(json!({"input_tokens": input_tokens})).into_response(),
            Err(error) => {
                tracing::warn!(error = %error, "Anthropic did not count the tokens; answering the gateway's estimate")
            }
        }
    }
    let text = Usage::estimate(request.prompt_chars(), 0).prompt_tokens;
    let input_tokens = text + IMAGE_TOKENS * request.images() as u64;
    let mut response = Json(json!({"input_tokens": input_tokens})).into_response();
    response
        .headers_mut()
        .insert("x-gateway-token-count", HeaderValue::from_static("estimate"));
    response
}

/// What an image costs in Anthropic's own formula at its largest size
/// (1568 px on the long side: about 1,600 tokens).
const IMAGE_TOKENS: u64 = 1600;

/// `msg_...` ids.
pub(super) struct MessageId(pub(super) String);

impl MessageId {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(format!("msg_{:x}{n:06x}", now.as_millis()))
    }
}

/// Anthropic's usage: `input_tokens` leave out what the cache read and wrote.
#[derive(Serialize, Clone, Copy)]
pub(super) struct WireUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

impl From<Usage> for WireUsage {
    fn from(usage: Usage) -> Self {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        Self {
            input_tokens: usage.prompt_tokens - cached - written,
            output_tokens: usage.completion_tokens,
            cache_creation_input_tokens: written,
            cache_read_input_tokens: cached,
        }
    }
}

/// The stop sequence that ended the answer, when the provider said which.
pub(super) fn stop_sequence(reason: Option<&FinishReason>) -> Option<&str> {
    match reason {
        Some(FinishReason::StopSequence(sequence)) => Some(sequence),
        _ => None,
    }
}

/// A finish reason in Anthropic's words.
pub(super) fn stop_reason(reason: Option<&FinishReason>) -> &str {
    const ANTHROPIC_OWN: &[&str] = &[
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
    ];
    match reason {
        None | Some(FinishReason::Stop) => "end_turn",
        Some(FinishReason::StopSequence(_)) => "stop_sequence",
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Other(reason)) if ANTHROPIC_OWN.contains(&reason.as_str()) => reason,
        Some(FinishReason::Other(_)) => "end_turn",
    }
}

#[derive(Serialize)]
struct WholeMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Value>,
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
    usage: WireUsage,
}

impl<'a> WholeMessage<'a> {
    fn new(id: &'a MessageId, completion: &'a Completion) -> Result<Self, ApiError> {
        let mut content = Vec::with_capacity(1 + completion.tool_calls.len());
        if !completion.content.is_empty() {
            content.push(json!({"type": "text", "text": completion.content}));
        }
        for call in &completion.tool_calls {
            content.push(
                json!({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(&call.arguments)?}),
            );
        }
        Ok(Self {
            id: &id.0,
            kind: "message",
            role: "assistant",
            model: &completion.model,
            content,
            stop_reason: stop_reason(completion.finish_reason.as_ref()),
            stop_sequence: stop_sequence(completion.finish_reason.as_ref()),
            usage: completion.usage.into(),
        })
    }
}

/// A tool call's arguments as the JSON object Anthropic's `input` is.
fn tool_input(arguments: &str) -> Result<Value, ApiError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => Ok(input),
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "upstream_error",
            "the model's tool call arguments are not a JSON object",
        )),
    }
}
