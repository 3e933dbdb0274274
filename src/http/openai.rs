//! OpenAI's API, so stock OpenAI SDKs work with `base_url = http://HOST:PORT/v1`:
//! `POST /v1/chat/completions` (whole and streamed) and `GET /v1/models`.
//! Calls go through the same chat stack as `/v1/chat`. A parameter the gateway
//! does not support gets a 400 naming it, never a silent drop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrysalis_services::{ChatRequest, Completion, Message, Role, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::chat::{call_complete, call_stream, completion_headers, read_body, sse_response};
use super::log::RequestLog;
use super::names;
use super::openai_sse::{CompletionId, OpenAiFrames};
use super::AppState;
use crate::error::ApiError;

/// `POST /v1/chat/completions`.
pub(super) async fn completions(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let mut log = RequestLog::start(&headers, "/v1/chat/completions");
    let parsed = async {
        let bytes = read_body(body, state.max_body_bytes).await?;
        let body: CompletionsBody =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
        body.into_request(&headers)
    };
    let (request, include_usage) = match parsed.await {
        Ok(parsed) => parsed,
        Err(error) => {
            log.failed(None, &error);
            return error.into_openai_response();
        }
    };
    let id = CompletionId::new();
    if request.stream {
        return match call_stream(&state, request, &mut log).await {
            Ok((first, chunks)) => {
                let meta = chunks.meta;
                sse_response(OpenAiFrames::new(id, include_usage, first, chunks, log), meta)
            }
            Err(error) => {
                log.failed(None, &error);
                error.into_openai_response()
            }
        };
    }
    match call_complete(&state, request, &mut log).await {
        Ok(completion) => {
            let mut response = Json(WholeCompletion::new(&id, &completion)).into_response();
            completion_headers(&completion, response.headers_mut());
            if let Ok(provider) = HeaderValue::from_str(completion.provider) {
                response.headers_mut().insert("x-gateway-provider", provider);
            }
            response
        }
        Err(error) => {
            log.failed(None, &error);
            error.into_openai_response()
        }
    }
}

/// `GET /v1/models`: the configured providers' models.
pub(super) async fn models(State(state): State<AppState>) -> Json<Value> {
    let mut seen = std::collections::HashSet::new();
    let data: Vec<Value> = state
        .status
        .providers
        .iter()
        .filter(|p| seen.insert(p.model.clone()))
        .map(|p| json!({"id": p.model, "object": "model", "created": 0, "owned_by": p.name}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[derive(Deserialize)]
struct CompletionsBody {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Other options (`include_obfuscation`) only shape the wire, not the answer.
#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Parameters accepted at the value that changes nothing, refused at any other.
fn harmless(name: &str, value: &Value) -> bool {
    match name {
        "logprobs" | "store" | "parallel_tool_calls" => value == &Value::Bool(false),
        "response_format" => value == &json!({"type": "text"}),
        _ => false,
    }
}

fn unsupported_why(name: &str) -> &'static str {
    match name {
        "tools" | "tool_choice" | "functions" | "function_call" | "parallel_tool_calls" => {
            "tool calls are not supported"
        }
        "response_format" => "only {\"type\": \"text\"} is supported",
        "logprobs" | "top_logprobs" => "log probabilities are not supported",
        "audio" | "modalities" => "only text is supported",
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
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request("`messages` must hold at least one message"));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(ApiError::invalid_request("`temperature` must be between 0 and 2"));
            }
        }
        let messages = self
            .messages
            .into_iter()
            .map(WireMessage::into_message)
            .collect::<Result<_, _>>()?;
        let agent_id = headers
            .get("x-agent-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(self.user)
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "anonymous".to_owned());
        let agent_id = names::checked("agent_id", agent_id)?;
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return Err(ApiError::invalid_request("`max_tokens` must be at least 1"));
        }
        let mut request = ChatRequest::new(agent_id, messages);
        request.model = self
            .model
            .filter(|m| !m.trim().is_empty())
            .map(|m| names::checked("model", m))
            .transpose()?;
        request.temperature = self.temperature;
        request.max_tokens = max_tokens;
        request.stream = self.stream.unwrap_or(false);
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        Ok((request, include_usage))
    }
}

impl WireMessage {
    fn into_message(self) -> Result<Message, ApiError> {
        if let Some((name, _)) = self.other.iter().find(|(_, v)| !v.is_null()) {
            return Err(ApiError::unsupported(
                format!("messages[].{name}"),
                "messages carry a role and text content",
            ));
        }
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                let why = format!("role `{other}` (roles are system, developer, user, assistant)");
                return Err(ApiError::unsupported("messages[].role", &why));
            }
        };
        Ok(Message::new(role, text(self.content)?))
    }
}

/// A message's text: a string, or text parts joined.
fn text(content: Option<Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text),
        Some(Value::Array(parts)) => parts
            .into_iter()
            .map(|part| {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(text)) => Ok(text.to_owned()),
                    (kind, _) => Err(ApiError::unsupported(
                        "messages[].content",
                        &format!("content part `{}` (only text parts are)", kind.unwrap_or("?")),
                    )),
                }
            })
            .collect(),
        Some(_) => Err(ApiError::invalid_request(
            "`content` must be a string or an array of text parts",
        )),
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
    finish_reason: &'a str,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
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
                    content: &completion.content,
                    refusal: None,
                },
                finish_reason: completion.finish_reason.as_deref().unwrap_or("stop"),
                logprobs: None,
            }],
            usage: completion.usage,
            system_fingerprint: None,
        }
    }
}
