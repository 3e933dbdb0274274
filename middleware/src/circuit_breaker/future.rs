//! The response future: refused at once, or the call with its ticket.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use chrysalis_services::ChatResponse;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::error::Open;
use super::state::{verdict_of, Ticket};
use crate::observe::observe;

pin_project! {
    /// The future of [`CircuitBreaker`](super::CircuitBreaker).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Refused { open: Option<Open> },
        Called { #[pin] future: F, ticket: Option<Ticket> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn called(future: F, ticket: Ticket) -> Self {
        Self {
            kind: Kind::Called {
                future,
                ticket: Some(ticket),
            },
        }
    }

    pub(super) fn refused(open: Open) -> Self {
        Self {
            kind: Kind::Refused { open: Some(open) },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, E>>,
    E: Into<BoxError>,
{
    type Output = Result<ChatResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { open } => Poll::Ready(Err(open.take().expect("polled after completion").into())),
            KindProj::Called { future, ticket } => {
                let result = ready!(future.poll(cx));
                let ticket = ticket.take().expect("polled after completion");
                Poll::Ready(match result {
                    // Streams are judged when they end.
                    Ok(response) => Ok(observe(response, ticket)),
                    Err(error) => {
                        let error = error.into();
                        ticket.record(verdict_of(&*error));
                        Err(error)
                    }
                })
            }
        }
    }
}
