//! The response future: refused, asking the shared ledger, calling, or
//! waiting for the spend to be durable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use chrysalis_services::{ChatRequest, ChatResponse};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tower::{BoxError, Service};

use super::ledger::Commit;
use super::postgres::Admission;
use super::settle::SettleStream;
use super::state::{Asking, BudgetState, Reservation};
use crate::gate::{RefuseOrCall, Unchanged};
use crate::observe::observe;

type Decided<F> = RefuseOrCall<Settled<F>, Unchanged, Result<ChatResponse, BoxError>>;

pin_project! {
    /// The future of [`Budget`](super::Budget).
    pub struct ResponseFuture<S: Service<ChatRequest>> {
        #[pin]
        state: Decision<S>,
    }
}

pin_project! {
    #[project = DecisionProj]
    enum Decision<S: Service<ChatRequest>> {
        Asking {
            #[pin] answer: oneshot::Receiver<Admission>,
            asking: Asking,
            call: Option<(S, ChatRequest, Arc<BudgetState>)>,
        },
        Decided { #[pin] future: Decided<S::Future> },
    }
}

impl<S: Service<ChatRequest>> ResponseFuture<S> {
    /// Refused before any call.
    pub(super) fn refused(error: BoxError) -> Self {
        Self::decided(RefuseOrCall::refused(Err(error)))
    }

    /// Admitted with `reservation`: calls `inner` now.
    pub(super) fn called(inner: &mut S, request: ChatRequest, reservation: Reservation) -> Self {
        Self::decided(call(inner, request, reservation))
    }

    /// Waiting for the shared ledger; `inner` is called once it admits.
    pub(super) fn asking(
        inner: S,
        request: ChatRequest,
        (answer, asking): (oneshot::Receiver<Admission>, Asking),
        state: Arc<BudgetState>,
    ) -> Self {
        Self {
            state: Decision::Asking {
                answer,
                asking,
                call: Some((inner, request, state)),
            },
        }
    }

    fn decided(future: Decided<S::Future>) -> Self {
        Self {
            state: Decision::Decided { future },
        }
    }
}

fn call<S: Service<ChatRequest>>(inner: &mut S, request: ChatRequest, reservation: Reservation) -> Decided<S::Future> {
    RefuseOrCall::called(Settled::new(inner.call(request), reservation), Unchanged)
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
                DecisionProj::Asking {
                    answer,
                    asking,
                    call: waiting,
                } => {
                    let answer = ready!(answer.poll(cx));
                    let (mut inner, request, state) = waiting.take().expect("polled after completion");
                    let future = match state.answered(&request, *asking, answer) {
                        Ok(reservation) => call(&mut inner, request, reservation),
                        Err(refused) => RefuseOrCall::refused(Err(refused)),
                    };
                    this.state.set(Decision::Decided { future });
                }
                DecisionProj::Decided { future } => return future.poll(cx),
            }
        }
    }
}

pin_project! {
    /// An admitted call, then the wait for its spend to be durable; a stream
    /// is settled when it ends.
    pub struct Settled<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F, reservation: Option<Reservation> },
        Committing { commit: Commit, response: Option<ChatResponse> },
    }
}

impl<F> Settled<F> {
    pub(super) fn new(future: F, reservation: Reservation) -> Self {
        Self {
            state: State::Calling {
                future,
                reservation: Some(reservation),
            },
        }
    }
}

impl<F, E> Future for Settled<F>
where
    F: Future<Output = Result<ChatResponse, E>>,
    E: Into<BoxError>,
{
    type Output = Result<ChatResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, reservation } => {
                    // An error drops the reservation, which releases it.
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let reservation = reservation.take().expect("polled after completion");
                    let commit = match response {
                        ChatResponse::Complete(ref c) => reservation.settle(c.provider, &c.model, c.usage, c.cost_usd),
                        ChatResponse::Stream(ref s) => {
                            let settle = SettleStream {
                                reservation,
                                provider: s.provider,
                                model: s.model.clone(),
                                cut_charge: s.cut_charge.clone(),
                                resent_prompt: s.resent_prompt.clone(),
                            };
                            return Poll::Ready(Ok(observe(response, settle)));
                        }
                    };
                    match commit {
                        Some(commit) => this.state.set(State::Committing {
                            commit,
                            response: Some(response),
                        }),
                        None => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Committing { commit, response } => {
                    // A ledger failure is logged by the writer; the answer still goes out.
                    let _ = ready!(Pin::new(commit).poll(cx));
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            }
        }
    }
}
