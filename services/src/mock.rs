//! A provider with no network: deterministic text and usage, for trying the
//! gateway without keys and for demonstrating failover.
//!
//! The model name steers it: `mock-fail` answers 503, `mock-cut` cuts its
//! stream before the end, `mock-slow-<ms>` waits that long first. The
//! configuration can make every call slow or failing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::chat::{ChatRequest, ChatResponse, ChatStream, Chunk, Completion, Replay, StreamEnd, Usage};
use crate::error::{ErrorKind, ProviderError};
use crate::pricing::PriceTable;

/// The provider's name in responses, metrics and errors.
pub const NAME: &str = "mock";
/// The model used when neither the request nor the configuration names one.
pub const DEFAULT_MODEL: &str = "mock-1";

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The model used when a request names none.
    pub default_model: String,
    /// Wait before every answer.
    pub latency: Duration,
    /// Fail every call with a 503.
    pub fail: bool,
    /// Free unless these prices name the model (to try budgets without keys).
    pub prices: Arc<PriceTable>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            default_model: DEFAULT_MODEL.to_owned(),
            latency: Duration::ZERO,
            fail: false,
            prices: Arc::default(),
        }
    }
}

/// The mock provider.
///
/// ```
/// use chrysalis_services::{mock::{Mock, MockConfig}, ChatRequest, Message, Role};
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = ChatRequest::new("docs", vec![Message::new(Role::User, "ping")]);
/// let answer = Mock::new(MockConfig::default()).oneshot(request).await.unwrap();
/// let completion = answer.into_completion().await.unwrap();
/// assert_eq!(completion.content, "Hello from the mock provider! You said: ping");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Mock {
    config: Arc<MockConfig>,
}

impl Mock {
    /// A mock provider.
    pub fn new(config: MockConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl tower::Service<ChatRequest> for Mock {
    type Response = ChatResponse;
    type Error = ProviderError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ProviderError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let model = request.model.clone().unwrap_or_else(|| config.default_model.clone());
            let latency = slow_ms(&model).map_or(config.latency, Duration::from_millis);
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if config.fail || model == "mock-fail" {
                let message = "the mock provider was told to fail".to_owned();
                return Err(ProviderError::new(NAME, ErrorKind::Status { status: 503, message }));
            }
            let answer = answer(&request);
            let usage = Usage::estimate(request.prompt_chars(), answer.len());
            let end = StreamEnd {
                usage,
                cost_usd: config.prices.lookup(&model).map_or(0.0, |p| p.cost(usage)),
                finish_reason: Some("stop".to_owned()),
            };
            let cut = model == "mock-cut";
            if request.stream {
                let stream = word_stream(&answer, (!cut).then_some(end));
                return Ok(ChatResponse::Stream(ChatStream::new(NAME, model, stream)));
            }
            if cut {
                return Err(ProviderError::cut(NAME, "the mock provider was told to cut"));
            }
            Ok(ChatResponse::Complete(Completion {
                content: answer,
                provider: NAME,
                model,
                usage: end.usage,
                cost_usd: end.cost_usd,
                finish_reason: end.finish_reason,
                meta: Default::default(),
            }))
        })
    }
}

fn slow_ms(model: &str) -> Option<u64> {
    model.strip_prefix("mock-slow-")?.parse().ok()
}

fn answer(request: &ChatRequest) -> String {
    let said = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == crate::Role::User)
        .map_or("", |m| m.content.as_str());
    let said: String = said.chars().take(200).collect();
    format!("Hello from the mock provider! You said: {said}")
}

/// The answer a word at a time, then its end (or, when cut, an error).
fn word_stream(answer: &str, end: Option<StreamEnd>) -> Replay {
    let words = answer.split_inclusive(' ').map(|w| Ok(Chunk::Delta(w.to_owned())));
    let last = match end {
        Some(end) => Ok(Chunk::End(end)),
        None => Err(ProviderError::cut(NAME, "the mock provider was told to cut")),
    };
    Replay::new(words.chain([last]))
}
