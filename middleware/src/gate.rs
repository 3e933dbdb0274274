//! The one future of every layer that refuses a call or makes it: a layer
//! that refuses answers at once with what it decided; one that admits calls
//! the inner service and then applies its [`Then`] to the outcome (marking
//! the response, judging it, releasing a permit). A layer whose decision is
//! a shared store's first waits for its answer ([`AskFirst`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;

/// What a layer does with the outcome of a call it admitted.
pub trait Then<Input> {
    /// What the layer answers.
    type Output;

    /// Turns the inner service's outcome into the layer's.
    fn then(self, input: Input) -> Self::Output;
}

/// Passes the outcome on unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unchanged;

impl<I> Then<I> for Unchanged {
    type Output = I;

    fn then(self, input: I) -> I {
        input
    }
}

pin_project! {
    /// Refused at once with its answer, or the inner call and what follows it.
    pub struct RefuseOrCall<F, T, O> {
        #[pin]
        kind: Kind<F, T, O>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, T, O> {
        Refused { answer: Option<O> },
        Called { #[pin] future: F, then: Option<T> },
    }
}

impl<F, T, O> RefuseOrCall<F, T, O> {
    /// Answers `answer` without calling.
    pub(crate) fn refused(answer: O) -> Self {
        Self {
            kind: Kind::Refused { answer: Some(answer) },
        }
    }

    /// Awaits `future`, then applies `then` to what it gives.
    pub(crate) fn called(future: F, then: T) -> Self {
        Self {
            kind: Kind::Called {
                future,
                then: Some(then),
            },
        }
    }
}

impl<F, T, O> Future for RefuseOrCall<F, T, O>
where
    F: Future,
    T: Then<F::Output, Output = O>,
{
    type Output = O;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        match self.project().kind.project() {
            KindProj::Refused { answer } => Poll::Ready(answer.take().expect("polled after completion")),
            KindProj::Called { future, then } => {
                let outcome = ready!(future.poll(cx));
                Poll::Ready(then.take().expect("polled after completion").then(outcome))
            }
        }
    }
}

/// What a layer does once a shared store has answered whether to admit a
/// call: the future it then runs (the call, or the refusal). No answer (the
/// store unreachable, slow or its queue full) is a closed channel.
pub trait Decide<Answer> {
    /// The future that follows the answer.
    type Future: Future;

    /// Decides on `answer`.
    fn decide(self, answer: Result<Answer, oneshot::error::RecvError>) -> Self::Future;
}

pin_project! {
    /// A call that waits for a shared store's answer before it is decided;
    /// or one decided at once.
    pub struct AskFirst<A, D: Decide<A>> {
        #[pin]
        state: AskState<A, D>,
    }
}

pin_project! {
    #[project = AskStateProj]
    enum AskState<A, D: Decide<A>> {
        Asking { #[pin] answer: oneshot::Receiver<A>, decide: Option<D> },
        Decided { #[pin] future: D::Future },
    }
}

impl<A, D: Decide<A>> AskFirst<A, D> {
    /// Decides with `decide` once `answer` comes.
    pub(crate) fn asking(answer: oneshot::Receiver<A>, decide: D) -> Self {
        Self {
            state: AskState::Asking {
                answer,
                decide: Some(decide),
            },
        }
    }

    /// Already decided: runs `future`.
    pub(crate) fn decided(future: D::Future) -> Self {
        Self {
            state: AskState::Decided { future },
        }
    }
}

impl<A, D: Decide<A>> Future for AskFirst<A, D> {
    type Output = <D::Future as Future>::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                AskStateProj::Asking { answer, decide } => {
                    let answer = ready!(answer.poll(cx));
                    let future = decide.take().expect("polled after completion").decide(answer);
                    this.state.set(AskState::Decided { future });
                }
                AskStateProj::Decided { future } => return future.poll(cx),
            }
        }
    }
}
