//! Ollama's chat API (`POST {base}/api/chat`). Streams are NDJSON: one JSON
//! object a line, the last with `done: true` and the counts
//! `prompt_eval_count` (input tokens) and `eval_count` (output tokens).
//! Local models cost nothing. Tools, images and `format` are translated in
//! [`request`]; Ollama sends each tool call whole, with no id, so calls get
//! ids `call_<n>` here.

mod request;

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::chat::{ChatRequest, ChatResponse, ChatStream, Chunk, FinishReason, ToolCall, ToolCallDelta, Usage};
use crate::client::{Endpoint, ProviderConfig};
use crate::error::{ErrorKind, ProviderError};
use crate::provider::{ChatApi, Provider};
use crate::tally::Tally;
use crate::wire::{DecodeStream, Protocol};

/// The provider's name in responses, metrics and errors.
pub const NAME: &str = "ollama";
/// Where a local Ollama listens.
pub const DEFAULT_BASE_URL: &str = "http://localhost:11434";
/// The model used when neither the request nor the configuration names one.
pub const DEFAULT_MODEL: &str = "llama3.2";

/// A service speaking Ollama's chat API.
///
/// ```no_run
/// use chrysalis_services::{ollama::{Ollama, DEFAULT_BASE_URL}, ProviderConfig};
/// let ollama = Ollama::new(ProviderConfig::new(DEFAULT_BASE_URL, "llama3.2"));
/// ```
pub type Ollama = Provider<OllamaApi>;

/// What a call to the API does.
#[derive(Debug)]
pub struct OllamaApi {
    endpoint: Endpoint,
    config: ProviderConfig,
}

impl Provider<OllamaApi> {
    /// An Ollama service.
    pub fn new(config: ProviderConfig) -> Self {
        let endpoint = config.endpoint("/api/chat");
        Self::from_api(OllamaApi { endpoint, config })
    }
}

impl ChatApi for OllamaApi {
    async fn chat(self: Arc<Self>, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let model = self.config.model(&request.model).to_owned();
        let body = request::WireRequest::new(&model, &request)?;
        let http = self.config.post();
        let body = serde_json::to_vec(&body).expect("a request always serialises");
        let response = self.config.send(NAME, &self.endpoint, http, body).await?;
        let mut tally = Tally::new(NAME, self.config.prices.clone(), model.clone(), request.prompt_chars());
        tally.local = true;
        if request.stream {
            let protocol = LineProtocol { tally, tool_calls: 0 };
            let chunks = DecodeStream::new(NAME, crate::upstream::body(response), protocol);
            return Ok(ChatResponse::Stream(ChatStream::new(NAME, model, chunks)));
        }
        let line: WireLine = self.config.json(NAME, response).await?;
        if let Some(error) = line.error {
            return Err(ProviderError::new(NAME, ErrorKind::Upstream(error)));
        }
        line.count(&mut tally);
        let message = line.message.unwrap_or_default();
        let tool_calls: Vec<_> = message
            .tool_calls
            .into_iter()
            .zip(0..)
            .map(|(c, i)| c.into_call(i))
            .collect();
        if !tool_calls.is_empty() && tally.finish_reason == Some(FinishReason::Stop) {
            tally.finish_reason = Some(FinishReason::ToolCalls);
        }
        Ok(ChatResponse::Complete(tally.complete(
            NAME,
            model,
            message.content,
            tool_calls,
        )))
    }
}

/// Reads one JSON object a line, up to `done: true`.
struct LineProtocol {
    tally: Tally,
    /// Tool calls passed on so far.
    tool_calls: u32,
}

impl Protocol for LineProtocol {
    fn line(&mut self, line: &str, out: &mut VecDeque<Chunk>) -> Result<(), ErrorKind> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let wire: WireLine = serde_json::from_str(line).map_err(|e| ErrorKind::Protocol(format!("bad line ({e})")))?;
        if let Some(error) = wire.error {
            return Err(ErrorKind::Upstream(error));
        }
        if let Some(message) = wire.message.as_ref() {
            self.tally.delta(&message.content, out);
        }
        for call in wire.message.iter().flat_map(|m| &m.tool_calls) {
            let call = call.clone().into_call(self.tool_calls);
            let delta = ToolCallDelta {
                index: self.tool_calls,
                id: Some(call.id),
                name: Some(call.name),
                arguments: call.arguments,
            };
            self.tool_calls += 1;
            self.tally.tool_call(delta, out);
        }
        if wire.done {
            wire.count(&mut self.tally);
            if self.tool_calls > 0 && self.tally.finish_reason == Some(FinishReason::Stop) {
                self.tally.finish_reason = Some(FinishReason::ToolCalls);
            }
            out.push_back(Chunk::End(self.tally.end()));
        }
        Ok(())
    }
}

impl WireLine {
    /// Records the counts of a `done` line.
    fn count(&self, tally: &mut Tally) {
        tally.served_by(self.model.as_deref());
        if let (Some(prompt), Some(completion)) = (self.prompt_eval_count, self.eval_count) {
            tally.usage = Some(Usage::new(prompt, completion));
        }
        tally.finish_reason = self.done_reason.as_deref().map(FinishReason::from_openai);
    }
}

#[derive(Deserialize)]
struct WireLine {
    model: Option<String>,
    message: Option<WireMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    content: String,
    #[serde(default, deserialize_with = "crate::chat::nullable")]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize, Clone)]
struct WireToolCall {
    function: WireFunction,
}

#[derive(Deserialize, Clone)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

impl WireToolCall {
    /// The `index`-th call of an answer; arguments (an object) as JSON text.
    fn into_call(self, index: u32) -> ToolCall {
        let arguments = match self.function.arguments {
            Value::Null => "{}".to_owned(),
            Value::String(text) => text,
            object => object.to_string(),
        };
        ToolCall {
            id: format!("call_{index}"),
            name: self.function.name,
            arguments,
        }
    }
}

/// The stream decoder of a `llama3.2` call, for tests and fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn protocol() -> impl Protocol {
    let mut tally = Tally::new(
        NAME,
        Arc::new(crate::pricing::PriceTable::builtin()),
        "llama3.2".into(),
        10,
    );
    tally.local = true;
    LineProtocol { tally, tool_calls: 0 }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::wire::splits::{any_bytes_end_loudly, damaged, same_at_every_split, valid_stream_holds};

    /// An Ollama stream: one JSON object a line, `texts`, a tool call, then `done`.
    fn stream_body(texts: &[String], crlf: bool) -> String {
        let line = |value: serde_json::Value| format!("{value}\n");
        let mut body: String = texts
            .iter()
            .map(|text| {
                line(json!({"model": "llama3.2", "message": {"role": "assistant", "content": text}, "done": false}))
            })
            .collect();
        body += &line(
            json!({"model": "llama3.2", "message": {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "lookup", "arguments": {"city": "Zürich"}}}]}, "done": false}),
        );
        body += &line(
            json!({"model": "llama3.2", "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": "stop", "prompt_eval_count": 4, "eval_count": 7}),
        );
        match crlf {
            true => body.replace('\n', "\r\n"),
            false => body,
        }
    }

    #[test]
    fn a_tool_call_line_comes_back_with_its_arguments_as_json_text_at_every_split() {
        let decoded = same_at_every_split(&stream_body(&["Let me look.".into()], false), protocol);
        assert_eq!(decoded.text, "Let me look.");
        let call = &decoded.tool_calls[0];
        assert_eq!((call.id.as_str(), call.name.as_str()), ("call_0", "lookup"));
        assert_eq!(call.arguments, r#"{"city":"Zürich"}"#);
        let end = decoded.end.unwrap().expect("the stream ended whole");
        assert_eq!((end.usage.prompt_tokens, end.usage.completion_tokens), (4, 7));
    }

    proptest::proptest! {
        #[test]
        fn any_valid_stream_decodes_the_same_however_it_is_cut(
            texts in proptest::collection::vec(proptest::prelude::any::<String>(), 0..6),
            crlf in proptest::prelude::any::<bool>(),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..12),
        ) {
            let body = stream_body(&texts, crlf);
            valid_stream_holds(&body, &texts.concat(), &cuts, protocol)?;
        }

        #[test]
        fn any_bytes_end_in_a_value_or_an_error(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            damage in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..8),
        ) {
            any_bytes_end_loudly(&bytes, &cuts, protocol)?;
            any_bytes_end_loudly(&damaged(&stream_body(&["hi".into()], false), &damage), &cuts, protocol)?;
        }
    }
}
