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
        // Armed for the first chunk's deadline, and re-armed only when it
        // fires before `deadline`: a chunk moves `deadline`, not the timer,
        // so a fast stream touches the timer wheel once per timeout, not per chunk.
        #[pin]
        idle: Sleep,
        deadline: Instant,
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
            deadline: first,
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
            *this.deadline = Instant::now() + *this.timeout;
            return Poll::Ready(item);
        }
        loop {
            match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) if Instant::now() < *this.deadline => {
                    let deadline = *this.deadline;
                    this.idle.as_mut().reset(deadline);
                }
                Poll::Ready(()) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(ProviderError::new(this.provider, ErrorKind::Timeout))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
