//! Anthropic's Messages API (`POST {base}/v1/messages`).
//!
//! System messages become the top-level `system`; `max_tokens` is always sent
//! (the API requires it); tools, images, tool calls and results become
//! content blocks (see [`request`]). Streams are typed SSE events:
//! `message_start` (input usage), `content_block_start` (a text or
//! `tool_use` block), `content_block_delta` (`text_delta`,
//! `input_json_delta`), `message_delta` (output usage, stop reason),
//! `message_stop` (the end), `ping`, and `error`.

mod request;

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::chat::{
    AnthropicNative, ChatRequest, ChatResponse, ChatStream, Chunk, FinishReason, ToolCall, ToolCallDelta, Usage,
};
use crate::client::{Endpoint, ProviderConfig};
use crate::error::{ErrorKind, ProviderError};
use crate::provider::{ChatApi, Provider};
use crate::tally::Tally;
use crate::wire::{DecodeStream, Protocol, SseParser};

/// The provider's name in responses, metrics and errors.
pub const NAME: &str = "anthropic";
/// Anthropic's API base.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The model used when neither the request nor the configuration names one.
pub const DEFAULT_MODEL: &str = "claude-3-5-haiku-latest";
/// The API version sent as `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when the request sets none (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A service speaking Anthropic's Messages API.
///
/// ```no_run
/// use chrysalis_services::{anthropic::{Anthropic, DEFAULT_BASE_URL}, ProviderConfig};
/// let claude = Anthropic::new(
///     ProviderConfig::new(DEFAULT_BASE_URL, "claude-3-5-haiku-latest").api_key("sk-ant-..."),
/// );
/// ```
pub type Anthropic = Provider<AnthropicApi>;

/// What a call to the API does.
#[derive(Debug)]
pub struct AnthropicApi {
    endpoint: Endpoint,
    count_endpoint: Endpoint,
    config: ProviderConfig,
}

impl Provider<AnthropicApi> {
    /// An Anthropic service.
    pub fn new(config: ProviderConfig) -> Self {
        let endpoint = config.endpoint("/v1/messages");
        let count_endpoint = config.endpoint("/v1/messages/count_tokens");
        Self::from_api(AnthropicApi {
            endpoint,
            count_endpoint,
            config,
        })
    }

    /// Anthropic's own count of the input tokens of a Messages request
    /// (`POST /v1/messages/count_tokens`): its conversation, system prompt,
    /// tools and thinking settings, for `model` (the provider's default
    /// when `None`).
    pub async fn count_tokens(&self, native: &AnthropicNative, model: &Option<String>) -> Result<u64, ProviderError> {
        self.api().count_tokens(native, model).await
    }
}

/// The fields of a Messages request that `count_tokens` takes.
const COUNTED: &[&str] = &["messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"];

impl AnthropicApi {
    async fn count_tokens(&self, native: &AnthropicNative, model: &Option<String>) -> Result<u64, ProviderError> {
        #[derive(Deserialize)]
        struct Counted {
            input_tokens: u64,
        }
        let mut body: serde_json::Map<String, serde_json::Value> = native
            .body
            .iter()
            .filter(|(k, _)| COUNTED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        body.insert("model".into(), self.config.model(model).into());
        let body = serde_json::to_vec(&body).expect("a JSON object always serialises");
        let http = self.headers(Some(native))?;
        let response = self.config.send(NAME, &self.count_endpoint, http, body).await?;
        let counted: Counted = self.config.json(NAME, response).await?;
        Ok(counted.input_tokens)
    }

    /// The headers of every call: the version and betas (the client's own,
    /// for a Messages client's request) and the key.
    fn headers(&self, native: Option<&AnthropicNative>) -> Result<http::request::Builder, ProviderError> {
        let version = native.and_then(|n| n.version.as_deref()).unwrap_or(API_VERSION);
        let mut http = self.config.post().header("anthropic-version", version);
        if let Some(beta) = native.and_then(|n| n.beta.as_deref()) {
            http = http.header("anthropic-beta", beta);
        }
        if let Some(key) = &self.config.api_key {
            http = http.header("x-api-key", self.config.secret_header(NAME, key.clone())?);
        }
        Ok(http)
    }
}

impl ChatApi for AnthropicApi {
    async fn chat(self: Arc<Self>, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let model = self.config.model(&request.model).to_owned();
        let (body, answer_tool) = match &request.anthropic {
            Some(native) => (request::native_body(native, &model, &request), None),
            None => {
                let body = request::WireRequest::new(&model, &request)?;
                let answer_tool = body.answer_tool.map(str::to_owned);
                (
                    serde_json::to_vec(&body).expect("a request always serialises"),
                    answer_tool,
                )
            }
        };
        let http = self.headers(request.anthropic.as_deref())?;
        let response = self.config.send(NAME, &self.endpoint, http, body).await?;
        let mut tally = Tally::new(NAME, self.config.prices.clone(), model.clone(), request.prompt_chars());
        if request.stream {
            let protocol = EventProtocol {
                sse: SseParser::default(),
                tally,
                tool_blocks: Vec::new(),
                answer: answer_tool.map(Answer::new),
            };
            let chunks = DecodeStream::new(NAME, crate::upstream::body(response), protocol);
            return Ok(ChatResponse::Stream(ChatStream::new(NAME, model, chunks)));
        }
        let wire: WireResponse = self.config.json(NAME, response).await?;
        tally.served_by(Some(&wire.model));
        tally.usage = Some(wire.usage.into());
        let structured = answer_tool.is_some();
        tally.finish_reason = wire
            .stop_reason
            .map(|r| finish_reason(r, wire.stop_sequence, structured));
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        for block in wire.content {
            match block {
                // Text before a structured answer would make it invalid JSON.
                WireBlock::Text { text } if !structured => content.push_str(&text),
                WireBlock::Text { .. } => {}
                WireBlock::ToolUse { name, input, .. } if Some(&name) == answer_tool.as_ref() => {
                    content = input.to_string();
                }
                WireBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                }),
                WireBlock::Other => {}
            }
        }
        Ok(ChatResponse::Complete(tally.complete(NAME, model, content, tool_calls)))
    }
}

/// Anthropic's stop reasons in OpenAI's words, which the gateway speaks. A
/// structured answer stops at its tool use: for the client, that is its end.
fn finish_reason(stop_reason: String, stop_sequence: Option<String>, structured: bool) -> FinishReason {
    match stop_reason.as_str() {
        "stop_sequence" if !structured => stop_sequence.map_or(FinishReason::Stop, FinishReason::StopSequence),
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" if structured => FinishReason::Stop,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Other(stop_reason),
    }
}

/// Reads the typed events up to `message_stop`.
struct EventProtocol {
    sse: SseParser,
    tally: Tally,
    /// The content block index of each tool call so far, in order: a
    /// call's place here is its index among the answer's tool calls.
    tool_blocks: Vec<u32>,
    /// For structured output: the tool whose input is the answer.
    answer: Option<Answer>,
}

/// The tool that carries a structured answer, and its block once it starts.
struct Answer {
    tool: String,
    block: Option<u32>,
}

impl Answer {
    fn new(tool: String) -> Self {
        Self { tool, block: None }
    }
}

impl EventProtocol {
    /// Whether `block` is the structured answer's tool use.
    fn is_answer(&self, block: u32) -> bool {
        self.answer.as_ref().is_some_and(|a| a.block == Some(block))
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        let at = self.tool_blocks.iter().position(|&b| b == block)?;
        Some(u32::try_from(at).unwrap_or(u32::MAX))
    }
}

impl Protocol for EventProtocol {
    fn line(&mut self, line: &str, out: &mut VecDeque<Chunk>) -> Result<(), ErrorKind> {
        let Some(event) = self.sse.line(line)? else {
            return Ok(());
        };
        let event: WireEvent = serde_json::from_str(event.data)
            .map_err(|e| ErrorKind::Protocol(format!("bad `{}` event ({e})", event.event)))?;
        match event.kind.as_str() {
            "message_start" => {
                if let Some(message) = event.message {
                    self.tally.served_by(Some(&message.model));
                    self.tally.usage = Some(message.usage.into());
                }
            }
            "content_block_start" => {
                if let (Some(answer), Some(WireBlockStart::ToolUse { name, .. })) =
                    (self.answer.as_mut(), event.content_block.as_ref())
                {
                    if *name == answer.tool {
                        answer.block = Some(event.index);
                        return Ok(());
                    }
                }
                if let Some(WireBlockStart::ToolUse { id, name }) = event.content_block {
                    let index = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                    self.tool_blocks.push(event.index);
                    let delta = ToolCallDelta {
                        index,
                        id: Some(id),
                        name: Some(name),
                        arguments: String::new(),
                    };
                    self.tally.tool_call(delta, out);
                }
            }
            "content_block_delta" => match event.delta {
                // Text before a structured answer would make it invalid JSON.
                Some(WireDelta { text: Some(_), .. }) if self.answer.is_some() => {}
                Some(WireDelta { text: Some(text), .. }) => self.tally.delta(&text, out),
                Some(WireDelta {
                    partial_json: Some(json),
                    ..
                }) if self.is_answer(event.index) => self.tally.delta(&json, out),
                Some(WireDelta {
                    partial_json: Some(arguments),
                    ..
                }) => {
                    let index = self.tool_index(event.index).ok_or_else(|| {
                        ErrorKind::Protocol(format!("input_json_delta for block {} with no tool_use", event.index))
                    })?;
                    let delta = ToolCallDelta {
                        index,
                        id: None,
                        name: None,
                        arguments,
                    };
                    self.tally.tool_call(delta, out);
                }
                // thinking and signature deltas, and delta types added later.
                _ => {}
            },
            "message_delta" => {
                if let Some(WireDelta {
                    stop_reason: Some(reason),
                    stop_sequence,
                    ..
                }) = event.delta
                {
                    self.tally.finish_reason = Some(finish_reason(reason, stop_sequence, self.answer.is_some()));
                }
                if let Some(usage) = event.usage {
                    let total = self.tally.usage.get_or_insert_with(Usage::default);
                    // Output tokens here are the running total; input may be restated.
                    total.completion_tokens = usage.output_tokens;
                    if usage.input_tokens > 0 {
                        let restated = Usage::from(usage);
                        total.prompt_tokens = restated.prompt_tokens;
                        total.cached_prompt_tokens = restated.cached_prompt_tokens;
                        total.cache_write_tokens = restated.cache_write_tokens;
                    }
                }
            }
            "message_stop" => out.push_back(Chunk::End(self.tally.end())),
            "error" => {
                let error = event.error.unwrap_or_default();
                return Err(ErrorKind::Upstream(format!("{}: {}", error.kind, error.message)));
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct WireResponse {
    model: String,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking, and block types added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlockStart {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
        let cache_write = usage.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            // Anthropic's `input_tokens` leave out what the cache read and wrote.
            prompt_tokens: usage.input_tokens + cache_read + cache_write,
            completion_tokens: usage.output_tokens,
            cached_prompt_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: 0,
        }
    }
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    index: u32,
    content_block: Option<WireBlockStart>,
    message: Option<WireStartMessage>,
    delta: Option<WireDelta>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireStartMessage {
    model: String,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct WireDelta {
    text: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// The stream decoder of a `claude-sonnet-4-5` call, for tests and fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn protocol() -> impl Protocol {
    let prices = Arc::new(crate::pricing::PriceTable::builtin());
    EventProtocol {
        sse: SseParser::default(),
        tally: Tally::new(NAME, prices, "claude-sonnet-4-5".into(), 10),
        tool_blocks: Vec::new(),
        answer: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pricing::PriceTable;
    use crate::wire::splits::same_at_every_split;

    fn event(name: &str, data: serde_json::Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    #[test]
    fn text_and_tool_use_blocks_assemble_the_same_at_every_split() {
        let mut body = event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null,
                "usage": {"input_tokens": 20, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 100, "output_tokens": 1}}}),
        );
        body += &event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        body += &event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking… "}}),
        );
        body += &event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
        body += &event("ping", json!({"type": "ping"}));
        for (index, id, name, pieces) in [
            (1, "toolu_01", "get_weather", [r#"{"city": "#, r#""Zürich"}"#]),
            (2, "toolu_02", "get_time", ["", r#"{"tz": "CET"}"#]),
        ] {
            body += &event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
            );
            for piece in pieces {
                body += &event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                );
            }
            body += &event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            );
        }
        body += &event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 50}}),
        );
        body += &event("message_stop", json!({"type": "message_stop"}));
        let prices = Arc::new(PriceTable::builtin());
        let decoded = same_at_every_split(&body, || EventProtocol {
            sse: SseParser::default(),
            tally: Tally::new(NAME, prices.clone(), "claude-sonnet-4-5".into(), 10),
            tool_blocks: Vec::new(),
            answer: None,
        });
        assert_eq!(decoded.text, "Checking… ");
        let calls: Vec<_> = decoded
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("toolu_01", "get_weather", r#"{"city": "Zürich"}"#),
                ("toolu_02", "get_time", r#"{"tz": "CET"}"#)
            ]
        );
        let end = decoded.end.unwrap().expect("the stream ended whole");
        assert_eq!(end.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(end.usage.prompt_tokens, 1120);
        assert_eq!(
            (end.usage.cached_prompt_tokens, end.usage.cache_write_tokens),
            (1000, 100)
        );
        // 20 fresh at 3, 1000 read at 0.30, 100 written at 3.75, 50 out at 15 USD per million.
        let expected = (20.0 * 3.0 + 1000.0 * 0.30 + 100.0 * 3.75 + 50.0 * 15.0) / 1e6;
        assert!((end.cost_usd - expected).abs() < 1e-12, "{}", end.cost_usd);
    }

    /// An Anthropic stream of `texts` (with pings between some), a tool_use
    /// block whose input comes in `pieces`, and its end.
    fn stream_body(texts: &[(String, bool)], pieces: &[String], crlf: bool) -> String {
        let mut body = event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "content": [], "model": "claude-sonnet-4-5", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        );
        body += &event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        for (text, ping) in texts {
            body += &event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            );
            if *ping {
                body += &event("ping", json!({"type": "ping"}));
            }
        }
        body += &event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
        body += &event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
        );
        for piece in pieces {
            body += &event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            );
        }
        body += &event("content_block_stop", json!({"type": "content_block_stop", "index": 1}));
        body += &event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        );
        body += &event("message_stop", json!({"type": "message_stop"}));
        match crlf {
            true => body.replace('\n', "\r\n"),
            false => body,
        }
    }

    crate::wire::splits::stream_properties!(stream_body, protocol);
}
