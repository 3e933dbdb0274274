//! Ollama's chat API (`POST {base}/api/chat`). Streams are NDJSON: one JSON
//! object a line, the last with `done: true` and the counts
//! `prompt_eval_count` (input tokens) and `eval_count` (output tokens).
//! Local models cost nothing.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};

use crate::chat::{ChatRequest, ChatResponse, ChatStream, Chunk, Message, Usage};
use crate::client::{Endpoint, ProviderConfig};
use crate::error::{ErrorKind, ProviderError};
use crate::tally::Tally;
use crate::upstream::UpstreamBody;
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
#[derive(Clone, Debug)]
pub struct Ollama {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    config: ProviderConfig,
}

impl Ollama {
    /// An Ollama service.
    pub fn new(config: ProviderConfig) -> Self {
        let endpoint = config.endpoint("/api/chat");
        Self {
            inner: Arc::new(Inner { endpoint, config }),
        }
    }
}

impl tower::Service<ChatRequest> for Ollama {
    type Response = ChatResponse;
    type Error = ProviderError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ProviderError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        Box::pin(self.inner.clone().chat(request))
    }
}

impl Inner {
    async fn chat(self: Arc<Self>, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let model = self.config.model(&request.model).to_owned();
        let body = WireRequest {
            model: &model,
            messages: &request.messages,
            // Ollama streams unless told not to.
            stream: request.stream,
            options: WireOptions {
                temperature: request.temperature,
                num_predict: request.max_tokens,
            },
        };
        let http = self.config.post(NAME, &self.endpoint)?;
        let body = serde_json::to_vec(&body).expect("a request always serialises");
        let response = self.config.send(NAME, http, body).await?;
        let mut tally = Tally::new(NAME, self.config.prices.clone(), model.clone(), request.prompt_chars());
        tally.local = true;
        if request.stream {
            let chunks = DecodeStream::new(NAME, UpstreamBody::new(response.into_body()), LineProtocol { tally });
            return Ok(ChatResponse::Stream(ChatStream::new(NAME, model, chunks)));
        }
        let line: WireLine = self.config.json(NAME, response).await?;
        if let Some(error) = line.error {
            return Err(ProviderError::new(NAME, ErrorKind::Upstream(error)));
        }
        line.count(&mut tally);
        let content = line.message.map(|m| m.content).unwrap_or_default();
        Ok(ChatResponse::Complete(tally.complete(NAME, model, content)))
    }
}

/// Reads one JSON object a line, up to `done: true`.
struct LineProtocol {
    tally: Tally,
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
        if let Some(message) = &wire.message {
            self.tally.delta(&message.content, out);
        }
        if wire.done {
            wire.count(&mut self.tally);
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
            tally.usage = Some(Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
            });
        }
        tally.finish_reason = self.done_reason.clone();
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    stream: bool,
    options: WireOptions,
}

#[derive(Serialize)]
struct WireOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
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

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: String,
}
