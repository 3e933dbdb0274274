//! A provider with no network: deterministic text and usage, for trying the
//! gateway without keys and for demonstrating failover.
//!
//! The model name steers it: `mock-fail` answers 503, `mock-cut` cuts its
//! stream before the end, `mock-slow-<ms>` waits that long first. The
//! configuration can make every call slow or failing.
//!
//! A request that carries tools (and a `tool_choice` other than `none`) gets
//! a call of its first tool (or the one `tool_choice` names), with
//! arguments made from the tool's schema; once the conversation ends with a
//! tool's result, the mock answers with text quoting it. Streams deliver
//! each call in pieces, as real providers do. A conversation that ends with
//! an assistant's text (a prefill) is continued from it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::chat::{
    ChatRequest, ChatResponse, ChatStream, Chunk, Completion, FinishReason, Replay, Role, StreamEnd, Tool, ToolCall,
    ToolCallDelta, ToolChoice, Usage,
};
use crate::error::{ErrorKind, ProviderError};
use crate::pricing::PriceTable;
use crate::provider::{ChatApi, Provider};

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
pub type Mock = Provider<MockConfig>;

impl Mock {
    /// A mock provider.
    pub fn new(config: MockConfig) -> Self {
        Self::from_api(config)
    }
}

impl ChatApi for MockConfig {
    async fn chat(self: Arc<Self>, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let model = request.model.clone().unwrap_or_else(|| self.default_model.clone());
        let latency = slow_ms(&model).map_or(self.latency, Duration::from_millis);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.fail || model == "mock-fail" {
            let message = "the mock provider was told to fail".to_owned();
            return Err(ProviderError::new(NAME, ErrorKind::Status { status: 503, message }));
        }
        let call = tool_call(&request);
        let answer = if call.is_some() {
            String::new()
        } else {
            answer(&request)
        };
        let generated = answer.len() + call.as_ref().map_or(0, |c| c.arguments.len());
        let usage = Usage::estimate(request.prompt_chars(), generated);
        let finish = if call.is_some() {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        };
        let end = StreamEnd {
            usage,
            cost_usd: self.prices.lookup(&model).map_or(0.0, |p| p.cost(usage)),
            finish_reason: Some(finish),
            resumed_by: None,
        };
        let cut = model == "mock-cut";
        if request.stream {
            let stream = word_stream(&answer, call, (!cut).then_some(end));
            return Ok(ChatResponse::Stream(ChatStream::new(NAME, model, stream)));
        }
        if cut {
            return Err(ProviderError::cut(NAME, "the mock provider was told to cut"));
        }
        Ok(ChatResponse::Complete(Completion {
            content: answer,
            tool_calls: call.into_iter().collect(),
            provider: NAME,
            model,
            usage: end.usage,
            cost_usd: end.cost_usd,
            finish_reason: end.finish_reason,
            meta: Default::default(),
        }))
    }
}

fn slow_ms(model: &str) -> Option<u64> {
    model.strip_prefix("mock-slow-")?.parse().ok()
}

fn answer(request: &ChatRequest) -> String {
    if let Some(result) = request.messages.last().filter(|m| m.role == Role::Tool) {
        let result: String = result.text().chars().take(200).collect();
        return format!("The tool answered: {result}");
    }
    let said = last_user_text(request);
    let whole = format!("Hello from the mock provider! You said: {said}");
    // An assistant prefill last: continue it, as a model asked to does.
    match request
        .messages
        .last()
        .filter(|m| m.role == Role::Assistant && m.tool_calls.is_empty())
    {
        Some(prefill) => {
            let prefill = prefill.text();
            match whole.strip_prefix(prefill.as_ref()) {
                Some(rest) => rest.to_owned(),
                None => " (continued)".to_owned(),
            }
        }
        None => whole,
    }
}

fn last_user_text(request: &ChatRequest) -> String {
    let said = request.messages.iter().rev().find(|m| m.role == Role::User);
    said.map(|m| m.text().chars().take(200).collect()).unwrap_or_default()
}

/// The call the mock makes, if the request offers tools and its
/// conversation does not already end with a tool's result.
fn tool_call(request: &ChatRequest) -> Option<ToolCall> {
    let tool: &Tool = match &request.tool_choice {
        Some(ToolChoice::None) => return None,
        Some(ToolChoice::Function(name)) => request.tools.iter().find(|t| &t.name == name)?,
        _ => request.tools.first()?,
    };
    if request.messages.last().is_some_and(|m| m.role == Role::Tool) {
        return None;
    }
    let turn = request.messages.iter().filter(|m| m.role == Role::Assistant).count();
    Some(ToolCall {
        id: format!("call_mock_{turn}"),
        name: tool.name.clone(),
        arguments: arguments(tool, &last_user_text(request)).to_string(),
    })
}

/// An object with each property of the tool's schema: strings say what the
/// user said, numbers are 1, booleans true.
fn arguments(tool: &Tool, said: &str) -> Value {
    let properties = tool
        .parameters
        .as_ref()
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object);
    let mut object = Map::new();
    for (name, schema) in properties.into_iter().flatten() {
        let value = match schema.get("type").and_then(Value::as_str) {
            Some("integer" | "number") => Value::from(1),
            Some("boolean") => Value::Bool(true),
            Some("array") => Value::Array(Vec::new()),
            Some("object") => Value::Object(Map::new()),
            _ => Value::from(said),
        };
        object.insert(name.clone(), value);
    }
    Value::Object(object)
}

/// The answer a word at a time (a tool call in three pieces), then its end
/// (or, when cut, an error).
fn word_stream(answer: &str, call: Option<ToolCall>, end: Option<StreamEnd>) -> Replay {
    let words = answer.split_inclusive(' ').map(|w| Ok(Chunk::Delta(w.to_owned())));
    let pieces = call.map(|call| {
        let mut split = call.arguments.len() / 2;
        while !call.arguments.is_char_boundary(split) {
            split -= 1;
        }
        let (head, tail) = call.arguments.split_at(split);
        let piece = |id, name, arguments: &str| {
            let delta = ToolCallDelta {
                index: 0,
                id,
                name,
                arguments: arguments.to_owned(),
            };
            Ok(Chunk::ToolCall(delta))
        };
        [
            piece(Some(call.id.clone()), Some(call.name.clone()), ""),
            piece(None, None, head),
            piece(None, None, tail),
        ]
    });
    let last = match end {
        Some(end) => Ok(Chunk::End(end)),
        None => Err(ProviderError::cut(NAME, "the mock provider was told to cut")),
    };
    Replay::new(words.chain(pieces.into_iter().flatten()).chain([last]))
}
