//! The failover state machine: call a target, read a stream's first chunk,
//! move on or finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{ChatRequest, ChatResponse, ChatStream, Chunk, ProviderError};
use futures_core::Stream;
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use super::error::{AllFailed, AllOpen, Attempt};
use super::resume::{Resumable, Resume};
use super::Target;
use crate::circuit_breaker::error::Open;
use crate::fault::is_client_error;

pin_project! {
    /// The future of [`Failover`](super::Failover).
    pub struct ResponseFuture<S: Service<ChatRequest>> {
        targets: Arc<[Target<S>]>,
        windows: Option<Arc<PriceTable>>,
        resume: Option<Arc<Resume>>,
        request: ChatRequest,
        next: usize,
        // After a prompt too long for a model: that model and its window;
        // only larger windows are tried, and its refusal is the answer if none is.
        too_long: Option<(Option<String>, u32, BoxError)>,
        attempts: Vec<Attempt>,
        // Targets passed over (failed, or skipped for an open circuit), one bit each.
        failed: u64,
        open_for: Option<Duration>,
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<ChatRequest>> {
        Next,
        Readying { service: Option<S>, index: usize },
        Calling { #[pin] future: S::Future, index: usize },
        FirstChunk { stream: Option<ChatStream>, index: usize },
    }
}

impl<S: Service<ChatRequest>> ResponseFuture<S> {
    pub(super) fn new(
        targets: Arc<[Target<S>]>,
        windows: Option<Arc<PriceTable>>,
        resume: Option<Arc<Resume>>,
        request: ChatRequest,
    ) -> Self {
        Self {
            targets,
            windows,
            resume,
            request,
            next: 0,
            too_long: None,
            attempts: Vec::new(),
            failed: 0,
            open_for: None,
            state: State::Next,
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + Unpin + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Output = Result<ChatResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let failed = match this.state.as_mut().project() {
                StateProj::Next => {
                    let Some(target) = this.targets.get(*this.next) else {
                        if let Some((_, _, refusal)) = this.too_long.take() {
                            return Poll::Ready(Err(refusal));
                        }
                        return Poll::Ready(Err(exhausted(this.attempts, *this.open_for)));
                    };
                    if !takes_longer(target, this.request, this.windows.as_deref(), this.too_long.as_ref()) {
                        *this.next += 1;
                        continue;
                    }
                    let service = Some(target.service.clone());
                    this.state.set(State::Readying {
                        service,
                        index: *this.next,
                    });
                    *this.next += 1;
                    continue;
                }
                StateProj::Readying { service, index } => {
                    let index = *index;
                    let ready = service.as_mut().expect("taken only when ready");
                    match ready!(ready.poll_ready(cx)) {
                        Ok(()) => {
                            let mut service = service.take().expect("taken only when ready");
                            let future = service.call(this.targets[index].request(this.request));
                            this.state.set(State::Calling { future, index });
                            continue;
                        }
                        Err(error) => (index, error.into()),
                    }
                }
                StateProj::Calling { future, index } => {
                    let index = *index;
                    match ready!(future.poll(cx)) {
                        Ok(ChatResponse::Stream(stream)) => {
                            this.state.set(State::FirstChunk {
                                stream: Some(stream),
                                index,
                            });
                            continue;
                        }
                        Ok(complete) => return Poll::Ready(Ok(served(this.targets, *this.failed, index, complete))),
                        Err(error) => (index, error.into()),
                    }
                }
                StateProj::FirstChunk { stream, index } => {
                    let index = *index;
                    let chunks = stream.as_mut().expect("taken only when done");
                    match ready!(Pin::new(chunks).poll_next(cx)) {
                        Some(Err(error)) => (index, error.into()),
                        first => {
                            let stream = prepend(stream.take().expect("taken only when done"), first);
                            let stream = match this.resume {
                                Some(resume) => resumable(stream, this.targets, this.request, resume, index),
                                None => stream,
                            };
                            let response = ChatResponse::Stream(stream);
                            return Poll::Ready(Ok(served(this.targets, *this.failed, index, response)));
                        }
                    }
                }
            };
            let (index, error) = failed;
            if let Some(windows) = this.windows.as_deref().filter(|_| is_context_length(&*error)) {
                let model = this.targets[index].model_for(this.request);
                let window = model.and_then(|m| windows.context_window(m));
                match window {
                    Some(window) => {
                        tracing::info!(
                            provider = this.targets[index].name,
                            "prompt too long for the model; trying a larger window"
                        );
                        *this.too_long = Some((model.map(str::to_owned), window, error));
                        this.state.set(State::Next);
                        continue;
                    }
                    None => return Poll::Ready(Err(error)),
                }
            }
            if is_client_error(&*error) {
                return Poll::Ready(Err(error));
            }
            let provider = this.targets[index].name;
            if let Some(open) = error.downcast_ref::<Open>() {
                *this.open_for = Some(this.open_for.map_or(open.retry_after, |d| d.min(open.retry_after)));
                tracing::debug!(provider, "circuit open; trying the next provider");
            } else if crate::fault::is_unsupported(&*error) {
                tracing::debug!(provider, error = %error, "provider cannot serve the request; trying the next");
            } else {
                tracing::warn!(provider, error = %error, "provider failed; trying the next");
            }
            *this.failed |= 1 << index.min(63);
            this.attempts.push(Attempt { provider, error });
            this.state.set(State::Next);
        }
    }
}

/// Whether `target` may be tried: always, unless a prompt was too long for
/// a model, when only a different model with a larger known window may.
fn takes_longer<S>(
    target: &Target<S>,
    request: &ChatRequest,
    windows: Option<&PriceTable>,
    too_long: Option<&(Option<String>, u32, BoxError)>,
) -> bool {
    let (Some((tried, window, _)), Some(windows)) = (too_long, windows) else {
        return true;
    };
    let Some(model) = target.model_for(request) else {
        return false;
    };
    tried.as_deref() != Some(model) && windows.context_window(model).is_some_and(|w| w > *window)
}

fn is_context_length(error: &(dyn std::error::Error + 'static)) -> bool {
    crate::retry::error::last_error(error)
        .downcast_ref::<ProviderError>()
        .is_some_and(ProviderError::is_context_length)
}

/// Counts the failover, if there was one, and hands over the response.
fn served<S>(targets: &[Target<S>], failed: u64, index: usize, response: ChatResponse) -> ChatResponse {
    if failed != 0 {
        let from = targets
            .iter()
            .enumerate()
            .filter(|(i, _)| failed & (1 << (*i).min(63)) != 0);
        for (_, target) in from {
            target.failovers_from.fetch_add(1, Ordering::Relaxed);
        }
        targets[index].failovers_to.fetch_add(1, Ordering::Relaxed);
    }
    response
}

fn exhausted(attempts: &mut Vec<Attempt>, open_for: Option<Duration>) -> BoxError {
    let all_open = attempts.iter().all(|a| a.error.is::<Open>());
    match open_for {
        Some(retry_after) if all_open => AllOpen { retry_after }.into(),
        _ => AllFailed {
            attempts: std::mem::take(attempts),
        }
        .into(),
    }
}

/// The stream, to be finished elsewhere if it is cut.
fn resumable<S>(
    stream: ChatStream,
    targets: &Arc<[Target<S>]>,
    request: &ChatRequest,
    resume: &Arc<Resume>,
    index: usize,
) -> ChatStream
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + Unpin + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let (model, resent) = (stream.model.clone(), stream.resent_prompt.clone());
    let (targets, request, resume) = (targets.clone(), request.clone(), resume.clone());
    stream.map_chunks(move |chunks| Resumable::new(chunks, targets, request, resume, index, model, resent))
}

/// Puts the first item, already read, back in front of the stream.
fn prepend(stream: ChatStream, first: Option<Result<Chunk, ProviderError>>) -> ChatStream {
    stream.map_chunks(|rest| Prepend { first, rest })
}

struct Prepend {
    first: Option<Result<Chunk, ProviderError>>,
    rest: chrysalis_services::ChunkStream,
}

impl Stream for Prepend {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(first)),
            None => self.rest.as_mut().poll_next(cx),
        }
    }
}
