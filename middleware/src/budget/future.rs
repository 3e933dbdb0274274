//! The response future: refused, calling, or waiting for the spend to be durable.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use chrysalis_services::ChatResponse;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::ledger::Commit;
use super::settle::SettleStream;
use super::state::Reservation;
use crate::gate::{RefuseOrCall, Unchanged};
use crate::observe::observe;

/// The future of [`Budget`](super::Budget).
pub type ResponseFuture<F> = RefuseOrCall<Settled<F>, Unchanged, Result<ChatResponse, BoxError>>;

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
