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
use crate::gate::{AskFirst, Decide, RefuseOrCall, Unchanged};
use crate::observe::observe;

type Decided<F> = RefuseOrCall<Settled<F>, Unchanged, Result<ChatResponse, BoxError>>;

/// The future of [`Budget`](super::Budget).
pub type ResponseFuture<S> = AskFirst<Admission, Call<S>>;

/// A call waiting for the shared ledger's answer, and what it needs then.
#[derive(Debug)]
pub struct Call<S> {
    inner: S,
    request: ChatRequest,
    asking: Asking,
    state: Arc<BudgetState>,
}

impl<S> Call<S> {
    pub(super) fn new(inner: S, request: ChatRequest, asking: Asking, state: Arc<BudgetState>) -> Self {
        Self {
            inner,
            request,
            asking,
            state,
        }
    }
}

/// Refused before any call.
pub(super) fn refused<S>(error: BoxError) -> ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    AskFirst::decided(RefuseOrCall::refused(Err(error)))
}

/// Admitted with `reservation`: calls `inner` now.
pub(super) fn called<S>(inner: &mut S, request: ChatRequest, reservation: Reservation) -> ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    AskFirst::decided(call(inner, request, reservation))
}

fn call<S: Service<ChatRequest>>(inner: &mut S, request: ChatRequest, reservation: Reservation) -> Decided<S::Future> {
    RefuseOrCall::called(Settled::new(inner.call(request), reservation), Unchanged)
}

impl<S> Decide<Admission> for Call<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    type Future = Decided<S::Future>;

    fn decide(mut self, answer: Result<Admission, oneshot::error::RecvError>) -> Self::Future {
        match self.state.answered(&self.request, self.asking, answer) {
            Ok(reservation) => call(&mut self.inner, self.request, reservation),
            Err(refused) => RefuseOrCall::refused(Err(refused)),
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
