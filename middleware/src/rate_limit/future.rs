//! The response future: refused at once, or the call, marked with what is
//! left; with a shared store, first the store's answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use chrysalis_services::{ChatRequest, ChatResponse};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tower::{BoxError, Service};

use super::error::RateLimited;
use super::limiter::Limiter;
use super::shared::{SharedBuckets, Verdict};
use crate::gate::{RefuseOrCall, Then};

/// Marks an admitted call's response with the requests left and the limit.
#[derive(Debug, Clone, Copy)]
pub struct MarkLeft(pub(super) (u32, u32));

impl<E: Into<BoxError>> Then<Result<ChatResponse, E>> for MarkLeft {
    type Output = Result<ChatResponse, BoxError>;

    fn then(self, outcome: Result<ChatResponse, E>) -> Self::Output {
        let mut response = outcome.map_err(Into::into)?;
        response.meta_mut().rate_limit = Some(self.0);
        Ok(response)
    }
}

type Decided<F> = RefuseOrCall<F, MarkLeft, Result<ChatResponse, BoxError>>;

pin_project! {
    /// The future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<S: Service<ChatRequest>> {
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<ChatRequest>> {
        Asking { #[pin] answer: oneshot::Receiver<Verdict>, ask: Option<Ask<S>> },
        Decided { #[pin] future: Decided<S::Future> },
    }
}

/// What a call waiting for the shared store's answer needs afterwards.
pub(super) struct Ask<S> {
    pub(super) inner: S,
    pub(super) request: ChatRequest,
    pub(super) limiter: Arc<Limiter>,
    pub(super) shared: SharedBuckets,
}

impl<S: Service<ChatRequest>> ResponseFuture<S> {
    /// Decided here, by the local bucket.
    pub(super) fn local(inner: &mut S, limiter: &Limiter, request: ChatRequest) -> Self {
        Self {
            state: State::Decided {
                future: decide(inner, limiter.check(&request.agent_id), request),
            },
        }
    }

    /// Decided by the shared store's `answer`.
    pub(super) fn asking(answer: oneshot::Receiver<Verdict>, ask: Ask<S>) -> Self {
        Self {
            state: State::Asking { answer, ask: Some(ask) },
        }
    }
}

fn decide<S: Service<ChatRequest>>(
    inner: &mut S,
    verdict: Result<(u32, u32), RateLimited>,
    request: ChatRequest,
) -> Decided<S::Future> {
    match verdict {
        Ok(left) => RefuseOrCall::called(inner.call(request), MarkLeft(left)),
        Err(limited) => RefuseOrCall::refused(Err(limited.into())),
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    type Output = Result<ChatResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Asking { answer, ask } => {
                    let answer = ready!(answer.poll(cx));
                    let Ask {
                        mut inner,
                        request,
                        limiter,
                        shared,
                    } = ask.take().expect("polled after completion");
                    shared.answered(answer.is_ok());
                    let verdict = match answer {
                        Ok(Verdict::Admitted(left)) => Ok((limiter.burst(), left)),
                        Ok(Verdict::Limited(retry_after)) => Err(RateLimited { retry_after }),
                        // The store is unreachable: this replica's own bucket decides.
                        Err(_) => limiter.check(&request.agent_id),
                    };
                    let future = decide(&mut inner, verdict, request);
                    this.state.set(State::Decided { future });
                }
                StateProj::Decided { future } => return future.poll(cx),
            }
        }
    }
}
