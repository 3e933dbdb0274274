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
        deadline: Sleep,
        timeout: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: sleep(timeout),
            timeout,
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
            let timeout = *this.timeout;
            return Poll::Ready(match result {
                Ok(ChatResponse::Stream(stream)) => {
                    let provider = stream.provider;
                    Ok(ChatResponse::Stream(
                        stream.map_chunks(|chunks| IdleTimeout::new(chunks, provider, timeout)),
                    ))
                }
                Ok(complete) => Ok(complete),
                Err(error) => Err(error.into()),
            });
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
