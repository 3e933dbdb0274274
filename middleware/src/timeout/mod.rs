//! An upstream timeout that also covers streams: the call must answer within
//! the timeout, and then each chunk must follow the last within it, so a
//! stalled stream ends with an error instead of hanging.
//!
//! ```
//! use std::time::Duration;
//! use chrysalis_middleware::timeout::TimeoutLayer;
//! use chrysalis_services::mock::{Mock, MockConfig};
//! use tower::Layer;
//!
//! let provider = TimeoutLayer::new(Duration::from_secs(120)).layer(Mock::new(MockConfig::default()));
//! ```

pub mod error;
mod future;
mod stream;

use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_services::{ChatRequest, ChatResponse};
use tower::{BoxError, Layer, Service};

pub use future::ResponseFuture;
pub use stream::IdleTimeout;

#[cfg(test)]
mod tests;

/// Applies [`Timeout`] to a provider.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Calls must answer, and streams must send each chunk, within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// A provider whose calls and streams time out.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

crate::wraps_inner!(Timeout);

impl<S> Service<ChatRequest> for Timeout<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        ResponseFuture::new(self.inner.call(request), self.timeout)
    }
}
