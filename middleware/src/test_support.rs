//! A scripted provider for layer tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_services::{
    ChatRequest, ChatResponse, ChatStream, Chunk, Completion, ErrorKind, Message, ProviderError, Role, StreamEnd, Usage,
};
use futures_util::stream;

/// What the scripted provider does on a call.
#[derive(Clone, Debug)]
pub enum Act {
    Answer,
    Fail(u16),
    /// Fails with this error.
    Error(ProviderError),
    Hang,
    After(Duration, Box<Act>),
    Stream(Vec<Result<Chunk, ProviderError>>),
    /// A stream that sends `n` deltas, then stalls forever.
    StallAfter(usize),
    /// A stream whose each item comes that long after the one before.
    Paced(Vec<(Duration, Result<Chunk, ProviderError>)>),
}

type Script = dyn Fn(usize) -> Act + Send + Sync;

/// A provider that acts as its script says for the n-th call, and counts calls.
#[derive(Clone)]
pub struct Scripted {
    pub name: &'static str,
    calls: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<ChatRequest>>>,
    script: Arc<Script>,
}

impl Scripted {
    pub fn new(name: &'static str, script: impl Fn(usize) -> Act + Send + Sync + 'static) -> Self {
        Self {
            name,
            calls: Arc::default(),
            requests: Arc::default(),
            script: Arc::new(script),
        }
    }

    pub fn always(name: &'static str, act: Act) -> Self {
        Self::new(name, move |_| act.clone())
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The model each call asked for.
    pub fn models(&self) -> Vec<Option<String>> {
        self.requests().into_iter().map(|r| r.model).collect()
    }

    /// Each call's request, as it reached this provider.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl tower::Service<ChatRequest> for Scripted {
    type Response = ChatResponse;
    type Error = ProviderError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ProviderError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().unwrap().push(request.clone());
        let act = (self.script)(n);
        let name = self.name;
        Box::pin(act_out(name, act))
    }
}

fn act_out(name: &'static str, act: Act) -> Pin<Box<dyn Future<Output = Result<ChatResponse, ProviderError>> + Send>> {
    Box::pin(async move {
        match act {
            Act::Answer => Ok(ChatResponse::Complete(completion(name))),
            Act::Fail(status) => Err(status_error(name, status)),
            Act::Error(error) => Err(error),
            Act::Hang => std::future::pending().await,
            Act::After(wait, act) => {
                tokio::time::sleep(wait).await;
                act_out(name, *act).await
            }
            // Streams are served by a priced model, so cut streams can be charged.
            Act::Stream(items) => Ok(ChatResponse::Stream(ChatStream::new(
                name,
                "gpt-4o".into(),
                stream::iter(items),
            ))),
            Act::Paced(items) => {
                let paced = stream::unfold(items.into_iter(), |mut items| async move {
                    let (wait, item) = items.next()?;
                    tokio::time::sleep(wait).await;
                    Some((item, items))
                });
                Ok(ChatResponse::Stream(ChatStream::new(name, "gpt-4o".into(), paced)))
            }
            Act::StallAfter(n) => {
                let deltas = stream::iter((0..n).map(|i| Ok(Chunk::Delta(format!("d{i}")))));
                let chunks = futures_util::StreamExt::chain(deltas, stream::pending());
                Ok(ChatResponse::Stream(ChatStream::new(name, "m".into(), chunks)))
            }
        }
    })
}

/// What every scripted answer uses and costs.
pub const USAGE: Usage = Usage {
    prompt_tokens: 10,
    completion_tokens: 5,
    cached_prompt_tokens: 0,
    cache_write_tokens: 0,
    reasoning_tokens: 0,
};
pub const COST: f64 = 0.001;

pub fn request() -> ChatRequest {
    ChatRequest::new("agent", vec![Message::new(Role::User, "hi")])
}

pub fn completion(provider: &'static str) -> Completion {
    Completion {
        content: "ok".into(),
        tool_calls: Vec::new(),
        provider,
        model: "m".into(),
        usage: USAGE,
        cost_usd: COST,
        finish_reason: None,
        meta: Default::default(),
    }
}

pub fn status_error(provider: &'static str, status: u16) -> ProviderError {
    let message = format!("status {status}");
    ProviderError::new(provider, ErrorKind::Status { status, message })
}

pub fn delta(text: &str) -> Result<Chunk, ProviderError> {
    Ok(Chunk::Delta(text.into()))
}

pub fn end() -> Result<Chunk, ProviderError> {
    Ok(Chunk::End(StreamEnd {
        usage: USAGE,
        cost_usd: COST,
        finish_reason: None,
        resumed_by: None,
    }))
}
