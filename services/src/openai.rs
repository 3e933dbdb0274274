//! OpenAI's Chat Completions API (`POST {base}/chat/completions`), which
//! OpenRouter and many local servers speak too.
//!
//! The chat types are OpenAI's own shapes, so messages (images, tool calls,
//! tool results), tools, `tool_choice`, `response_format`, `stop`, `seed`
//! and the penalties pass as they came. Streams ask for
//! `stream_options.include_usage`, so usage arrives in a last chunk with no
//! choices, before `data: [DONE]`; streamed `delta.tool_calls` fragments are
//! passed on as [`ToolCallDelta`]s.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::chat::{
    ChatRequest, ChatResponse, ChatStream, Chunk, FinishReason, Message, ReasoningEffort, ResponseFormat, Role, Tool,
    ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use crate::client::{Endpoint, ProviderConfig};
use crate::error::{ErrorKind, ProviderError};
use crate::provider::{ChatApi, Provider};
use crate::tally::Tally;
use crate::wire::{DecodeStream, Protocol, SseParser};

/// The provider's name in responses, metrics and errors.
pub const NAME: &str = "openai";
/// OpenAI's API base.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The model used when neither the request nor the configuration names one.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// A service speaking OpenAI's Chat Completions API.
///
/// ```no_run
/// use chrysalis_services::{openai::{OpenAiCompatible, DEFAULT_BASE_URL}, ProviderConfig};
/// let openai = OpenAiCompatible::openai(
///     ProviderConfig::new(DEFAULT_BASE_URL, "gpt-4o-mini").api_key("sk-..."),
/// );
/// ```
pub type OpenAiCompatible = Provider<OpenAiApi>;

/// What a call to an OpenAI-compatible API does.
#[derive(Debug)]
pub struct OpenAiApi {
    provider: &'static str,
    endpoint: Endpoint,
    config: ProviderConfig,
    dialect: Dialect,
}

/// What differs between the upstreams that speak this API.
#[derive(Debug)]
pub(crate) enum Dialect {
    OpenAi,
    /// OpenRouter: usage accounting with cost, attribution headers.
    OpenRouter {
        headers: Vec<(HeaderName, HeaderValue)>,
    },
}

impl Provider<OpenAiApi> {
    /// OpenAI itself (or any server that speaks its API).
    pub fn openai(config: ProviderConfig) -> Self {
        Self::new(NAME, config, Dialect::OpenAi)
    }

    pub(crate) fn new(provider: &'static str, config: ProviderConfig, dialect: Dialect) -> Self {
        let endpoint = config.endpoint("/chat/completions");
        Self::from_api(OpenAiApi {
            provider,
            endpoint,
            config,
            dialect,
        })
    }
}

impl ChatApi for OpenAiApi {
    async fn chat(self: Arc<Self>, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.refuse_what_it_lacks(&request)?;
        let model = self.config.model(&request.model).to_owned();
        let mut http = self.config.bearer(self.provider, self.config.post())?;
        if let Dialect::OpenRouter { headers } = &self.dialect {
            for (name, value) in headers {
                http = http.header(name, value);
            }
        }
        let response = self
            .config
            .send(self.provider, &self.endpoint, http, self.body(&model, &request))
            .await?;
        let mut tally = Tally::new(
            self.provider,
            self.config.prices.clone(),
            model.clone(),
            request.prompt_chars(),
        );
        if request.stream {
            let protocol = ChunkProtocol {
                sse: SseParser::default(),
                tally,
            };
            let chunks = DecodeStream::new(self.provider, crate::upstream::body(response), protocol);
            return Ok(ChatResponse::Stream(ChatStream::new(self.provider, model, chunks)));
        }
        let wire: WireResponse = self.config.json(self.provider, response).await?;
        if let Some(error) = wire.error {
            return Err(ProviderError::new(self.provider, ErrorKind::Upstream(error.message)));
        }
        let choice = wire.choices.into_iter().next().ok_or_else(|| {
            ProviderError::new(self.provider, ErrorKind::Protocol("the answer has no choices".into()))
        })?;
        tally.served_by(wire.model.as_deref());
        tally.finish_reason = choice.finish_reason.as_deref().map(FinishReason::from_openai);
        tally.record(wire.usage);
        let content = choice.message.content.unwrap_or_default();
        let tool_calls = choice
            .message
            .tool_calls
            .into_iter()
            .map(WireToolCall::into_call)
            .collect();
        Ok(ChatResponse::Complete(tally.complete(
            self.provider,
            model,
            content,
            tool_calls,
        )))
    }
}

impl OpenAiApi {
    fn refuse_what_it_lacks(&self, request: &ChatRequest) -> Result<(), ProviderError> {
        if let Some(what) = request.anthropic_only() {
            return Err(ProviderError::unsupported(
                self.provider,
                what,
                "only Anthropic takes it",
            ));
        }
        if request.top_k.is_some() && matches!(self.dialect, Dialect::OpenAi) {
            return Err(ProviderError::unsupported(
                self.provider,
                "top_k",
                "OpenAI has no top-k sampling",
            ));
        }
        Ok(())
    }

    fn body(&self, model: &str, request: &ChatRequest) -> Vec<u8> {
        let openrouter = matches!(self.dialect, Dialect::OpenRouter { .. });
        // OpenRouter's roles are the older four: a developer message is a system one.
        let messages = if openrouter && request.messages.iter().any(|m| m.role == Role::Developer) {
            let system = |m: &Message| Message {
                role: if m.role == Role::Developer {
                    Role::System
                } else {
                    m.role
                },
                ..m.clone()
            };
            std::borrow::Cow::Owned(request.messages.iter().map(system).collect())
        } else {
            std::borrow::Cow::Borrowed(&request.messages[..])
        };
        let body = WireRequest {
            model,
            messages: &messages,
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            // OpenAI's reasoning models refuse `max_tokens`; OpenRouter knows only it.
            max_completion_tokens: request.max_tokens.filter(|_| !openrouter),
            max_tokens: request.max_tokens.filter(|_| openrouter),
            stop: &request.stop,
            seed: request.seed,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            tools: &request.tools,
            tool_choice: request.tool_choice.as_ref(),
            parallel_tool_calls: request.parallel_tool_calls,
            response_format: request.response_format.as_deref(),
            reasoning_effort: request.reasoning_effort.filter(|_| !openrouter),
            reasoning: request
                .reasoning_effort
                .filter(|_| openrouter)
                .map(|effort| Reasoning { effort }),
            user: request.user.as_deref(),
            stream: request.stream,
            stream_options: (request.stream && !openrouter).then_some(StreamOptions { include_usage: true }),
            usage: openrouter.then_some(UsageAccounting { include: true }),
        };
        serde_json::to_vec(&body).expect("a request always serialises")
    }
}

impl Tally {
    fn record(&mut self, usage: Option<WireUsage>) {
        if let Some(usage) = usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cached_prompt_tokens: usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                cache_write_tokens: 0,
                reasoning_tokens: usage.completion_tokens_details.map_or(0, |d| d.reasoning_tokens),
            });
            self.reported_cost = usage.cost;
        }
    }
}

/// Reads `data: {chunk}` events up to `data: [DONE]`.
struct ChunkProtocol {
    sse: SseParser,
    tally: Tally,
}

impl Protocol for ChunkProtocol {
    fn line(&mut self, line: &str, out: &mut VecDeque<Chunk>) -> Result<(), ErrorKind> {
        let Some(event) = self.sse.line(line)? else {
            return Ok(());
        };
        if event.data == "[DONE]" {
            out.push_back(Chunk::End(self.tally.end()));
            return Ok(());
        }
        let chunk: WireChunk =
            serde_json::from_str(event.data).map_err(|e| ErrorKind::Protocol(format!("bad chunk ({e})")))?;
        if let Some(error) = chunk.error {
            return Err(ErrorKind::Upstream(error.message));
        }
        self.tally.served_by(chunk.model.as_deref());
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content {
                self.tally.delta(&text, out);
            }
            for call in choice.delta.tool_calls {
                self.tally.tool_call(call.into_delta(), out);
            }
            if let Some(reason) = choice.finish_reason {
                self.tally.finish_reason = Some(FinishReason::from_openai(&reason));
            }
        }
        self.tally.record(chunk.usage);
        Ok(())
    }

    /// Some OpenAI-compatible servers close the body without `[DONE]`: the
    /// answer is whole if a chunk gave its finish reason and the usage the
    /// gateway always asks for came.
    fn body_ended(&mut self, out: &mut VecDeque<Chunk>) {
        if self.tally.finish_reason.is_some() && self.tally.usage.is_some() {
            out.push_back(Chunk::End(self.tally.end()));
        }
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    /// OpenRouter's; refused for OpenAI before.
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "<[Tool]>::is_empty")]
    tools: &'a [Tool],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'a ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a ResponseFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<ReasoningEffort>,
    /// OpenRouter's form of `reasoning_effort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<Reasoning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageAccounting>,
}

#[derive(Serialize)]
struct Reasoning {
    effort: ReasoningEffort,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct UsageAccounting {
    include: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default, deserialize_with = "crate::chat::nullable")]
    tool_calls: Vec<WireToolCall>,
}

/// A tool call in an answer (whole, or a streamed fragment of one).
#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    #[serde(default)]
    function: WireFunction,
}

#[derive(Deserialize, Default)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

impl WireToolCall {
    fn into_call(self) -> ToolCall {
        ToolCall {
            id: self.id.unwrap_or_default(),
            name: self.function.name.unwrap_or_default(),
            arguments: self.function.arguments.unwrap_or_default(),
        }
    }

    fn into_delta(self) -> ToolCallDelta {
        ToolCallDelta {
            index: self.index,
            id: self.id.filter(|id| !id.is_empty()),
            name: self.function.name.filter(|name| !name.is_empty()),
            arguments: self.function.arguments.unwrap_or_default(),
        }
    }
}

/// A streamed chunk, its strings borrowed from the line where they need no
/// unescaping: the text is copied once, into its [`Chunk::Delta`].
#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<WireChunkChoice<'a>>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireChunkChoice<'a> {
    #[serde(default, borrow)]
    delta: WireDelta<'a>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct WireDelta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "crate::chat::nullable")]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// OpenRouter's usage accounting: what the call cost, in USD.
    cost: Option<f64>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

#[derive(Deserialize)]
struct WireError {
    message: String,
}

/// The stream decoder of a `gpt-4o-mini` call, for tests and fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn protocol() -> impl Protocol {
    let prices = Arc::new(crate::pricing::PriceTable::builtin());
    ChunkProtocol {
        sse: SseParser::default(),
        tally: Tally::new(NAME, prices, "gpt-4o-mini".into(), 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PriceTable;
    use crate::wire::splits::same_at_every_split;

    fn chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
        let chunk = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    }

    fn call_start(index: u32, id: &str, name: &str) -> String {
        let call = serde_json::json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
        chunk(serde_json::json!({"tool_calls": [call]}), None)
    }

    fn call_piece(index: u32, arguments: &str) -> String {
        let call = serde_json::json!({"index": index, "function": {"arguments": arguments}});
        chunk(serde_json::json!({"tool_calls": [call]}), None)
    }

    #[test]
    fn parallel_tool_call_fragments_assemble_the_same_at_every_split() {
        let mut body = chunk(serde_json::json!({"role": "assistant", "content": null}), None);
        body += &call_start(0, "call_abc", "get_weather");
        body += ": keep-alive\n\n";
        body += &call_piece(0, r#"{"city": "Zü"#);
        body += &call_start(1, "call_def", "get_time");
        body += &call_piece(0, r#"rich"}"#);
        body += &call_piece(1, r#"{"tz": "CET"}"#);
        body += &chunk(serde_json::json!({}), Some("tool_calls"));
        let usage = serde_json::json!({"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 40,
            "total_tokens": 120, "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 16}}});
        body += &format!("data: {usage}\n\ndata: [DONE]\n\n");
        let prices = Arc::new(PriceTable::builtin());
        let decoded = same_at_every_split(&body, || ChunkProtocol {
            sse: SseParser::default(),
            tally: Tally::new(NAME, prices.clone(), "gpt-4o-mini".into(), 10),
        });
        let call = |id: &str, name: &str, arguments: &str| ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        };
        assert_eq!(
            decoded.tool_calls,
            [
                call("call_abc", "get_weather", r#"{"city": "Zürich"}"#),
                call("call_def", "get_time", r#"{"tz": "CET"}"#)
            ]
        );
        assert_eq!(decoded.text, "");
        let end = decoded.end.unwrap().expect("the stream ended whole");
        assert_eq!(end.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!((end.usage.cached_prompt_tokens, end.usage.reasoning_tokens), (64, 16));
        // 16 fresh input tokens at 0.15, 64 cached at 0.075, 40 output at 0.60 per million.
        let expected = (16.0 * 0.15 + 64.0 * 0.075 + 40.0 * 0.60) / 1e6;
        assert!((end.cost_usd - expected).abs() < 1e-12, "{}", end.cost_usd);
    }

    /// An OpenAI stream of `texts` (with keep-alive comments between some),
    /// a tool call whose arguments come in `pieces`, usage and `[DONE]`.
    fn stream_body(texts: &[(String, bool)], pieces: &[String], crlf: bool) -> String {
        let mut body = String::new();
        for (text, keep_alive) in texts {
            body += &chunk(serde_json::json!({"content": text}), None);
            if *keep_alive {
                body += ": keep-alive\n\n";
            }
        }
        body += &call_start(0, "call_1", "lookup");
        for piece in pieces {
            body += &call_piece(0, piece);
        }
        body += &chunk(serde_json::json!({}), Some("tool_calls"));
        body +=
            "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 2}}\n\ndata: [DONE]\n\n";
        match crlf {
            true => body.replace('\n', "\r\n"),
            false => body,
        }
    }

    crate::wire::splits::stream_properties!(stream_body, protocol);
}
