//! Waits for the answer or the deadline, whichever comes first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_services::ChatResponse;
use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};
use tower::BoxError;

use super::error::Elapsed;
use super::stream::IdleTimeout;

pin_project! {
    /// The future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        first_token: Sleep,
        stall: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, first_token: Duration, stall: Duration) -> Self {
        Self {
            inner,
            first_token: sleep(first_token),
            stall,
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
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            let (first_token, stall) = (this.first_token.deadline(), *this.stall);
            return Poll::Ready(match result {
                Ok(ChatResponse::Stream(stream)) => {
                    let provider = stream.provider;
                    Ok(ChatResponse::Stream(stream.map_chunks(|chunks| {
                        IdleTimeout::new(chunks, provider, first_token, stall)
                    })))
                }
                Ok(complete) => Ok(complete),
                Err(error) => Err(error.into()),
            });
        }
        match this.first_token.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
