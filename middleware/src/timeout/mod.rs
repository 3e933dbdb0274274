//! An upstream timeout that also covers streams, in two deadlines: the
//! first token (the whole answer, or a stream's first chunk) must come
//! within `first_token` of the call, and then each chunk within `stall` of
//! the last, so a silent upstream fails over (nothing reached the client
//! yet) and a stalled stream ends with an error instead of hanging.
//!
//! ```
//! use std::time::Duration;
//! use chrysalis_middleware::timeout::TimeoutLayer;
//! use chrysalis_services::mock::{Mock, MockConfig};
//! use tower::Layer;
//!
//! let first_token = Duration::from_secs(30);
//! let stall = Duration::from_secs(10);
//! let provider = TimeoutLayer::new(first_token, stall).layer(Mock::new(MockConfig::default()));
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
    first_token: Duration,
    stall: Duration,
}

impl TimeoutLayer {
    /// The first token within `first_token` of the call, then each chunk
    /// within `stall` of the last.
    pub fn new(first_token: Duration, stall: Duration) -> Self {
        Self { first_token, stall }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, layer: *self }
    }
}

/// A provider whose calls and streams time out.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    layer: TimeoutLayer,
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
        ResponseFuture::new(self.inner.call(request), self.layer.first_token, self.layer.stall)
    }
}
