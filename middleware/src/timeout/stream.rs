//! Ends a stream whose next chunk does not come in time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_services::{Chunk, ChunkStream, ErrorKind, ProviderError};
use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

pin_project! {
    /// Chunks whose first must come by a deadline and each next within
    /// `timeout` of the last; a stall yields a [`ErrorKind::Timeout`] error
    /// and ends the stream.
    pub struct IdleTimeout {
        chunks: ChunkStream,
        #[pin]
        idle: Sleep,
        timeout: Duration,
        provider: &'static str,
        done: bool,
    }
}

impl IdleTimeout {
    /// Watches `chunks` of `provider`: the first by `first`, each next
    /// within `timeout`.
    pub fn new(chunks: ChunkStream, provider: &'static str, first: Instant, timeout: Duration) -> Self {
        Self {
            chunks,
            idle: sleep_until(first),
            timeout,
            provider,
            done: false,
        }
    }
}

impl Stream for IdleTimeout {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = this.chunks.as_mut().poll_next(cx) {
            this.idle.as_mut().reset(Instant::now() + *this.timeout);
            return Poll::Ready(item);
        }
        match this.idle.poll(cx) {
            Poll::Ready(()) => {
                *this.done = true;
                Poll::Ready(Some(Err(ProviderError::new(this.provider, ErrorKind::Timeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
