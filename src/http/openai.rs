//! OpenAI's API, so stock OpenAI SDKs work with `base_url = http://HOST:PORT/v1`:
//! `POST /v1/chat/completions` (whole and streamed) and `GET /v1/models`.
//! Calls go through the same chat stack as `/v1/chat`. A parameter the gateway
//! does not support gets a 400 naming it, never a silent drop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use chrysalis_services::{ChatRequest, Completion, FinishReason, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::chat::{answered, call_complete, call_stream, read_json_body, sse_response};
use super::frame_stream::FrameStream;
use super::log::RequestLog;
use super::names;
use super::openai_sse::{CompletionId, OpenAiFrames};
use super::params::{self, Params, WireMessage};
use super::AppState;
use crate::error::ApiError;
use crate::shutdown::Cutoff;

/// `POST /v1/chat/completions`.
pub(super) async fn completions(
    State(state): State<AppState>,
    cutoff: Option<Extension<Cutoff>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::start(&headers, "/v1/chat/completions");
    let cutoff = cutoff.unwrap_or_default().0;
    let parsed = async {
        let bytes = read_json_body(&state, &headers, body).await?;
        let body: CompletionsBody =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
        body.into_request(&headers)
    };
    let (request, include_usage) = match parsed.await {
        Ok(parsed) => parsed,
        Err(error) => {
            log.failed(None, &error, None);
            return error.into_openai_response();
        }
    };
    let id = CompletionId::new();
    if request.stream {
        return match call_stream(&state, request, &mut log, &cutoff).await {
            Ok((first, chunks)) => {
                let meta = chunks.meta;
                let writer = OpenAiFrames::new(id, include_usage, &chunks);
                sse_response(FrameStream::new(writer, first, chunks, log, cutoff.watch()), meta)
            }
            Err(error) => {
                log.failed(None, &error, None);
                error.into_openai_response()
            }
        };
    }
    match call_complete(&state, request, &mut log, &cutoff).await {
        Ok(completion) => answered(WholeCompletion::new(&id, &completion), &completion),
        Err(error) => {
            log.failed(None, &error, None);
            error.into_openai_response()
        }
    }
}

/// `GET /v1/models`: the configured providers' models, as OpenAI lists them,
/// or as Anthropic does for a client that sends `anthropic-version`.
pub(super) async fn models(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let mut seen = std::collections::HashSet::new();
    let models = state.status.providers.iter().filter(|p| seen.insert(p.model.clone()));
    if !headers.contains_key("anthropic-version") {
        let data: Vec<Value> = models
            .map(|p| json!({"id": p.model, "object": "model", "created": 0, "owned_by": p.name}))
            .collect();
        return Json(json!({"object": "list", "data": data}));
    }
    let data: Vec<Value> = models
        .map(|p| json!({"type": "model", "id": p.model, "display_name": p.model, "created_at": "1970-01-01T00:00:00Z"}))
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
}

#[derive(Deserialize)]
struct CompletionsBody {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(flatten)]
    params: Params,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Other options (`include_obfuscation`) only shape the wire, not the answer.
#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Parameters accepted at the value that changes nothing, refused at any other.
fn harmless(name: &str, value: &Value) -> bool {
    match name {
        "logprobs" | "store" => value == &Value::Bool(false),
        _ => false,
    }
}

fn unsupported_why(name: &str) -> &'static str {
    match name {
        "functions" | "function_call" => "the deprecated function calling; send `tools` and `tool_choice`",
        "logprobs" | "top_logprobs" => "log probabilities are not supported",
        "audio" | "modalities" => "only text output is supported",
        _ => "remove it, or ask for it to be added",
    }
}

impl CompletionsBody {
    /// The chat request, and whether the stream should end with a usage chunk.
    fn into_request(self, headers: &HeaderMap) -> Result<(ChatRequest, bool), ApiError> {
        if let Some((name, _)) = self.other.iter().find(|(name, v)| !v.is_null() && !harmless(name, v)) {
            return Err(ApiError::unsupported(name.clone(), unsupported_why(name)));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::unsupported("n", "only one choice (n = 1) is generated"));
        }
        let messages = params::messages(self.messages)?;
        let agent_id = headers
            .get("x-agent-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| self.params.user.clone())
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "anonymous".to_owned());
        let agent_id = names::checked("agent_id", agent_id)?;
        let mut request = ChatRequest::new(agent_id, messages);
        request.model = names::model(self.model)?;
        self.params.apply(&mut request)?;
        request.stream = self.stream.unwrap_or(false);
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        Ok((request, include_usage))
    }
}

/// `chatcmpl-...` ids and the `created` time of one response.
impl CompletionId {
    pub(super) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            id: format!("chatcmpl-{:x}{n:06x}", now.as_millis()),
            created: now.as_secs(),
        }
    }
}

#[derive(Serialize)]
struct WholeCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [WholeChoice<'a>; 1],
    usage: Usage,
    system_fingerprint: Option<&'static str>,
}

#[derive(Serialize)]
struct WholeChoice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    finish_reason: &'a FinishReason,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    /// `null` when the model only called tools, as OpenAI answers.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
    tool_calls: &'a [ToolCall],
    refusal: Option<()>,
}

impl<'a> WholeCompletion<'a> {
    fn new(id: &'a CompletionId, completion: &'a Completion) -> Self {
        Self {
            id: &id.id,
            object: "chat.completion",
            created: id.created,
            model: &completion.model,
            choices: [WholeChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: (!completion.content.is_empty() || completion.tool_calls.is_empty())
                        .then_some(completion.content.as_str()),
                    tool_calls: &completion.tool_calls,
                    refusal: None,
                },
                finish_reason: completion.finish_reason.as_ref().unwrap_or(&FinishReason::Stop),
                logprobs: None,
            }],
            usage: completion.usage,
            system_fingerprint: None,
        }
    }
}
