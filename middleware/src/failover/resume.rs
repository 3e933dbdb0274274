//! Finishing a stream cut after its text reached the client (opt-in): the
//! next provider that takes an assistant prefill is asked to continue the
//! partial answer, and its text is spliced into the same stream, so the
//! caller gets one whole answer. A tool call is never resumed half-way; a
//! provider that refuses the prefill (a 400) is not asked again for that
//! model; if no continuation comes, the stream ends with its own cut error,
//! never the continuation's. The end carries both parts' usage and cost
//! (the cut part as the budget charges a cut), and says who finished it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use chrysalis_services::{
    ChatRequest, ChatResponse, Chunk, ChunkStream, Message, ProviderError, ResentPrompt, Role, StreamEnd, Usage,
};
use futures_core::Stream;
use tower::{BoxError, Service};

use super::Target;

/// What the cut part of a stream costs: `(provider, model, usage)` to USD,
/// as the budget charges a cut stream.
pub type CutCost = Arc<dyn Fn(&str, &str, Usage) -> f64 + Send + Sync>;

/// Which providers may finish a cut stream, and what its cut part costs.
pub struct Resume {
    prefill: HashSet<&'static str>,
    refused: Mutex<HashSet<(&'static str, String)>>,
    cut_cost: CutCost,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("prefill", &self.prefill)
            .finish_non_exhaustive()
    }
}

impl Resume {
    /// Streams may be finished by the `providers` that continue an
    /// assistant prefill (Anthropic, OpenRouter, Ollama do; OpenAI's Chat
    /// Completions does not), the cut part charged by `cut_cost`.
    pub fn prefill(providers: impl IntoIterator<Item = &'static str>, cut_cost: CutCost) -> Self {
        Self {
            prefill: providers.into_iter().collect(),
            refused: Mutex::default(),
            cut_cost,
        }
    }

    fn takes_prefill(&self, provider: &'static str, model: Option<&str>) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        self.prefill.contains(provider) && !refused.contains(&(provider, model.unwrap_or_default().to_owned()))
    }

    fn refused_prefill(&self, provider: &'static str, model: Option<&str>) {
        tracing::info!(provider, model, "a continuation was refused: not asked again");
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused.insert((provider, model.unwrap_or_default().to_owned()));
    }
}

type Call = Pin<Box<dyn Future<Output = Result<ChatResponse, BoxError>> + Send>>;

enum Flow<S> {
    /// Chunks pass through; `resumed` once they are a continuation's.
    Flowing {
        chunks: ChunkStream,
        resumed: Option<usize>,
    },
    /// Waiting for candidate `index` to be ready.
    Readying {
        service: S,
        index: usize,
    },
    /// Waiting for candidate `index`'s answer to start.
    Calling {
        call: Call,
        index: usize,
    },
    Done,
}

/// A stream that may be finished elsewhere when it is cut.
pub(super) struct Resumable<S> {
    flow: Flow<S>,
    targets: Arc<[Target<S>]>,
    request: ChatRequest,
    resume: Arc<Resume>,
    /// The target serving the first part.
    first: usize,
    model: String,
    /// Candidates still to try, in order.
    candidates: Vec<usize>,
    text: String,
    part_text: usize,
    tool_call: bool,
    /// The cut part's error and charge, once it was cut.
    cut: Option<(ProviderError, Usage, f64)>,
    /// The prefill lost trailing whitespace, so the continuation's leading one is its own.
    trim_start: bool,
    resent: ResentPrompt,
}

impl<S> Resumable<S> {
    pub(super) fn new(
        chunks: ChunkStream,
        targets: Arc<[Target<S>]>,
        request: ChatRequest,
        resume: Arc<Resume>,
        first: usize,
        model: String,
        resent: ResentPrompt,
    ) -> Self {
        let n = targets.len();
        // The providers after this one, then this one again.
        let candidates = (first + 1..n).chain(0..=first).collect();
        Self {
            flow: Flow::Flowing { chunks, resumed: None },
            targets,
            request,
            resume,
            first,
            model,
            candidates,
            text: String::new(),
            part_text: 0,
            tool_call: false,
            cut: None,
            trim_start: false,
            resent,
        }
    }
}

impl<S> Resumable<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + Unpin + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    /// The stream was cut: charge what it sent, and look for who continues.
    fn on_cut(&mut self, error: ProviderError) -> Option<Result<Chunk, ProviderError>> {
        if self.cut.is_some() || self.tool_call || self.text.is_empty() || error.is_client_error() {
            self.flow = Flow::Done;
            return Some(Err(self.cut.take().map_or(error, |(original, ..)| original)));
        }
        let target = &self.targets[self.first];
        let usage = Usage::estimate(self.request.prompt_chars(), self.text.len());
        let cost = (self.resume.cut_cost)(target.name, &self.model, usage);
        tracing::warn!(provider = target.name, error = %error, "stream cut after its text reached the client; resuming it");
        self.cut = Some((error, usage, cost));
        self.part_text = 0;
        self.next_candidate()
    }

    /// Moves to the next provider that may continue; the cut error when none is left.
    fn next_candidate(&mut self) -> Option<Result<Chunk, ProviderError>> {
        while !self.candidates.is_empty() {
            let index = self.candidates.remove(0);
            let target = &self.targets[index];
            let request = target.request(&self.request);
            if self.resume.takes_prefill(target.name, request.model.as_deref()) {
                self.flow = Flow::Readying {
                    service: target.service.clone(),
                    index,
                };
                return None;
            }
        }
        self.flow = Flow::Done;
        self.cut.take().map(|(original, ..)| Err(original))
    }

    /// The request that asks candidate `index` to continue the text so far.
    fn continuation(&mut self, index: usize) -> ChatRequest {
        let mut request = self.targets[index].request(&self.request);
        let prefill = self.text.trim_end();
        self.trim_start = prefill.len() < self.text.len();
        let mut messages = request.messages.to_vec();
        messages.push(Message::new(Role::Assistant, prefill));
        request.messages = messages.into();
        // What is left of the output cap (the budget reserved the whole cap for it).
        let generated = Usage::estimate(0, self.text.len()).completion_tokens;
        request.max_tokens = request
            .max_tokens
            .map(|cap| cap.saturating_sub(u32::try_from(generated).unwrap_or(u32::MAX)).max(1));
        request.stream = true;
        self.resent.add(request.prompt_chars());
        request
    }

    fn pass(
        &mut self,
        item: Option<Result<Chunk, ProviderError>>,
        resumed: Option<usize>,
    ) -> Option<Option<Result<Chunk, ProviderError>>> {
        match item {
            Some(Ok(Chunk::Delta(mut text))) => {
                if self.trim_start && self.part_text == 0 {
                    text = text.trim_start().to_owned();
                }
                self.part_text += text.len();
                self.text.push_str(&text);
                Some(Some(Ok(Chunk::Delta(text))))
            }
            Some(Ok(Chunk::ToolCall(call))) => {
                self.tool_call = true;
                Some(Some(Ok(Chunk::ToolCall(call))))
            }
            Some(Ok(Chunk::End(end))) => {
                self.flow = Flow::Done;
                Some(Some(Ok(Chunk::End(self.whole(end, resumed)))))
            }
            Some(Err(error)) => self.failed(error, resumed),
            None => {
                let provider = self.targets[resumed.unwrap_or(self.first)].name;
                self.failed(ProviderError::cut(provider, "stream ended without its end"), resumed)
            }
        }
    }

    /// A part failed: the first part may be resumed; a continuation that
    /// sent nothing yet gives way to the next candidate; else the cut error.
    fn failed(&mut self, error: ProviderError, resumed: Option<usize>) -> Option<Option<Result<Chunk, ProviderError>>> {
        match resumed {
            None => self.on_cut(error).map(Some),
            Some(_) if self.part_text == 0 => self.next_candidate().map(Some),
            Some(_) => {
                self.flow = Flow::Done;
                self.cut.take().map(|(original, ..)| Some(Err(original)))
            }
        }
    }

    /// The end of a resumed stream counts both parts.
    fn whole(&mut self, mut end: StreamEnd, resumed: Option<usize>) -> StreamEnd {
        if let (Some(index), Some((_, usage, cost))) = (resumed, self.cut.take()) {
            end.usage.prompt_tokens += usage.prompt_tokens;
            end.usage.completion_tokens += usage.completion_tokens;
            end.cost_usd += cost;
            end.resumed_by = Some(self.targets[index].name);
        }
        end
    }
}

impl<S> Stream for Resumable<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + Unpin + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.flow {
                Flow::Done => return Poll::Ready(None),
                Flow::Flowing { chunks, resumed } => {
                    let resumed = *resumed;
                    let item = ready!(chunks.as_mut().poll_next(cx));
                    if let Some(out) = this.pass(item, resumed) {
                        return Poll::Ready(out);
                    }
                }
                Flow::Readying { service, index } => {
                    let index = *index;
                    let readiness = ready!(service.poll_ready(cx));
                    let Flow::Readying { mut service, .. } = std::mem::replace(&mut this.flow, Flow::Done) else {
                        unreachable!("matched above")
                    };
                    match readiness {
                        Ok(()) => {
                            let request = this.continuation(index);
                            let call = service.call(request);
                            this.flow = Flow::Calling {
                                call: Box::pin(async move { call.await.map_err(Into::into) }),
                                index,
                            };
                        }
                        Err(_) => {
                            if let Some(out) = this.next_candidate() {
                                return Poll::Ready(Some(out));
                            }
                        }
                    }
                }
                Flow::Calling { call, index } => {
                    let index = *index;
                    match ready!(call.as_mut().poll(cx)) {
                        Ok(response) => {
                            let stream = response.into_stream();
                            this.flow = Flow::Flowing {
                                chunks: Box::pin(stream),
                                resumed: Some(index),
                            };
                        }
                        Err(error) => {
                            let target = &this.targets[index];
                            if crate::fault::is_client_error(&*error) {
                                let request = target.request(&this.request);
                                this.resume.refused_prefill(target.name, request.model.as_deref());
                            }
                            if let Some(out) = this.next_candidate() {
                                return Poll::Ready(Some(out));
                            }
                        }
                    }
                }
            }
        }
    }
}
