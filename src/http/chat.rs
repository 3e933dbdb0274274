//! `POST /v1/chat` and `POST /v1/chat/stream`.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;
use tracing::Instrument;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use chrysalis_services::{
    ChatRequest, ChatStream, Chunk, Completion, FinishReason, ProviderError, ResponseMeta, ToolCall, Usage,
};
use futures_core::Stream;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tower::ServiceExt;

use super::frame_stream::FrameStream;
use super::log::RequestLog;
use super::names;
use super::params::{self, Params, WireMessage};
use super::sse::SeedFrames;
use super::AppState;
use crate::error::ApiError;
use crate::shutdown::Cutoff;

/// The cost of a complete answer, for clients that read headers only.
const COST_HEADER: HeaderName = HeaderName::from_static("x-gateway-cost-usd");
const LIMIT_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");

pub(super) async fn complete(
    State(state): State<AppState>,
    cutoff: Option<Extension<Cutoff>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::start(&headers, "/v1/chat");
    let cutoff = cutoff.unwrap_or_default().0;
    let answer = async {
        let request = read_request(&state, &headers, body, false).await?;
        call_complete(&state, request, &mut log, &cutoff).await
    };
    match answer.await {
        Ok(completion) => completion_response(&completion),
        Err(error) => {
            log.failed(None, &error, None);
            error.into_response()
        }
    }
}

pub(super) async fn stream(
    State(state): State<AppState>,
    cutoff: Option<Extension<Cutoff>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = RequestLog::start(&headers, "/v1/chat/stream");
    let cutoff = cutoff.unwrap_or_default().0;
    let opened = async {
        let request = read_request(&state, &headers, body, true).await?;
        call_stream(&state, request, &mut log, &cutoff).await
    };
    match opened.await {
        Ok((first, chunks)) => {
            let meta = chunks.meta;
            let writer = SeedFrames::new(&chunks);
            sse_response(FrameStream::new(writer, first, chunks, log, cutoff.watch()), meta)
        }
        Err(error) => {
            log.failed(None, &error, None);
            error.into_response()
        }
    }
}

/// Calls the stack for a whole answer, and logs it.
pub(super) async fn call_complete(
    state: &AppState,
    request: ChatRequest,
    log: &mut RequestLog,
    cutoff: &Cutoff,
) -> Result<Completion, ApiError> {
    log.agent(&request.agent_id);
    let call = async {
        let response = state.chat.clone().oneshot(request).await;
        let response = response.map_err(|e| ApiError::from_error(e.as_ref()))?;
        response
            .into_completion()
            .await
            .map_err(|e| ApiError::from_provider(&e))
    };
    let completion = tokio::select! {
        completion = call.instrument(log.span()) => completion?,
        () = cutoff.reached() => return Err(ApiError::shutting_down()),
    };
    log.served(
        completion.provider,
        &completion.model,
        completion.usage,
        completion.cost_usd,
    );
    Ok(completion)
}

/// The first chunk of a stream, already read, and the rest.
pub(super) type Opened = (Option<Result<Chunk, ProviderError>>, ChatStream);

/// Calls the stack for a stream and reads its first chunk: until then, a
/// failure is still a plain HTTP error.
pub(super) async fn call_stream(
    state: &AppState,
    request: ChatRequest,
    log: &mut RequestLog,
    cutoff: &Cutoff,
) -> Result<Opened, ApiError> {
    log.agent(&request.agent_id);
    let open = async {
        let response = state.chat.clone().oneshot(request).await;
        let mut chunks = response.map_err(|e| ApiError::from_error(e.as_ref()))?.into_stream();
        match next(&mut chunks).await {
            Some(Err(e)) => Err(ApiError::from_provider(&e)),
            first => Ok((first, chunks)),
        }
    };
    tokio::select! {
        opened = open.instrument(log.span()) => opened,
        () = cutoff.reached() => Err(ApiError::shutting_down()),
    }
}

/// An SSE response of `frames`, with keep-alive comments for idle proxies.
pub(super) fn sse_response<S>(frames: S, meta: ResponseMeta) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    sse_response_with(frames, meta, Event::default().comment(""))
}

/// An SSE response of `frames`, sending `keep_alive` when idle.
pub(super) fn sse_response_with<S>(frames: S, meta: ResponseMeta, keep_alive: Event) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15)).event(keep_alive);
    let mut response = Sse::new(frames).keep_alive(keep_alive).into_response();
    meta_headers(meta, response.headers_mut());
    response
}

async fn next(stream: &mut ChatStream) -> Option<<ChatStream as Stream>::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

fn completion_response(completion: &Completion) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        content: &'a str,
        #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
        tool_calls: &'a [ToolCall],
        finish_reason: &'a FinishReason,
        model: &'a str,
        provider: &'a str,
        usage: Usage,
        cost_usd: f64,
    }
    let body = Body {
        content: &completion.content,
        tool_calls: &completion.tool_calls,
        finish_reason: completion.finish_reason.as_ref().unwrap_or(&FinishReason::Stop),
        model: &completion.model,
        provider: completion.provider,
        usage: completion.usage,
        cost_usd: completion.cost_usd,
    };
    let mut response = Json(body).into_response();
    completion_headers(completion, response.headers_mut());
    response
}

/// A whole answer in an API's own `body`, with the cost, the layers'
/// headers and the serving provider (`x-gateway-provider`) in headers.
pub(super) fn answered<T: Serialize>(body: T, completion: &Completion) -> Response {
    let mut response = Json(body).into_response();
    completion_headers(completion, response.headers_mut());
    if let Ok(provider) = HeaderValue::from_str(completion.provider) {
        response.headers_mut().insert("x-gateway-provider", provider);
    }
    response
}

/// The cost and what the layers learned, for clients that read headers.
pub(super) fn completion_headers(completion: &Completion, headers: &mut HeaderMap) {
    if let Ok(cost) = HeaderValue::try_from(completion.cost_usd.to_string()) {
        headers.insert(COST_HEADER, cost);
    }
    meta_headers(completion.meta, headers);
}

/// What the layers learned, as OpenAI-style headers.
fn meta_headers(meta: ResponseMeta, headers: &mut HeaderMap) {
    if let Some((limit, remaining)) = meta.rate_limit {
        headers.insert(LIMIT_HEADER, HeaderValue::from(limit));
        headers.insert(REMAINING_HEADER, HeaderValue::from(remaining));
    }
}

/// The body of both chat routes: the fields of OpenAI's API, plus `agent_id`.
#[derive(Deserialize)]
struct ChatBody {
    agent_id: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    model: Option<String>,
    /// Accepted for clients that send it; the route decides.
    #[serde(default, rename = "stream")]
    _stream: Option<bool>,
    #[serde(flatten)]
    params: Params,
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

async fn read_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    stream: bool,
) -> Result<ChatRequest, ApiError> {
    let bytes = read_json_body(state, headers, body).await?;
    let body: ChatBody =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
    body.into_request(stream)
}

/// The body of a chat route. JSON only (415 otherwise): a web page may post
/// `text/plain` or a form to any origin without a CORS preflight, and so spend
/// a visitor's way past CORS; a JSON post it cannot make unasked. Read within
/// the body timeout (408 past it, which frees the in-flight slot a silent
/// client would hold) and up to the size limit.
pub(super) async fn read_json_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::not_json());
    }
    tokio::time::timeout(state.body_timeout, read_body(body, state.max_body_bytes))
        .await
        .unwrap_or_else(|_| Err(ApiError::body_timeout(state.body_timeout)))
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The whole body, refused with 413 past `limit`: at once when its declared
/// length is over (before a `100 Continue`, so a careful client sends nothing),
/// else as soon as what arrives is.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(ApiError::payload_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::payload_too_large(limit)),
        Err(e) => Err(ApiError::invalid_request(format!("could not read the body: {e}"))),
    }
}

impl ChatBody {
    fn into_request(self, stream: bool) -> Result<ChatRequest, ApiError> {
        if let Some(name) = self.unknown.keys().next() {
            return Err(params::invalid(name, format!("unknown field `{name}`")));
        }
        if self.agent_id.trim().is_empty() {
            return Err(ApiError::invalid_request("`agent_id` must not be empty"));
        }
        let agent_id = names::checked("agent_id", self.agent_id)?;
        let mut request = ChatRequest::new(agent_id, params::messages(self.messages)?);
        request.model = names::model(self.model)?;
        self.params.apply(&mut request)?;
        request.stream = stream;
        Ok(request)
    }
}
