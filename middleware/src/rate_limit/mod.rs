//! A token bucket (GCRA, by `governor`) in front of the chat stack: a request
//! over the limit is refused at once with the real wait, never queued.
//! Keyed globally, or per `agent_id` with memory bounded however many agents
//! appear. Admitted responses carry the bucket's size and what is left.
//!
//! ```
//! use std::num::NonZeroU32;
//! use chrysalis_middleware::rate_limit::RateLimitLayer;
//! use chrysalis_services::mock::{Mock, MockConfig};
//! use tower::Layer;
//!
//! let layer = RateLimitLayer::per_agent(10.0, NonZeroU32::new(20).unwrap()).unwrap();
//! let service = layer.layer(Mock::new(MockConfig::default()));
//! ```

mod clock;
pub mod error;
mod future;
mod limiter;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use chrysalis_services::{ChatRequest, ChatResponse};
use tower::{BoxError, Layer, Service};

pub use future::{MarkLeft, ResponseFuture};
use limiter::Limiter;

/// Applies a token bucket; every service made by one layer shares its buckets.
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
}

impl RateLimitLayer {
    /// One bucket for all callers: `per_second` refill, `burst` capacity.
    pub fn global(per_second: f64, burst: NonZeroU32) -> Result<Self, error::InvalidRate> {
        Ok(Self {
            limiter: Arc::new(Limiter::global(per_second, burst)?),
        })
    }

    /// One bucket per `agent_id`.
    pub fn per_agent(per_second: f64, burst: NonZeroU32) -> Result<Self, error::InvalidRate> {
        Ok(Self {
            limiter: Arc::new(Limiter::per_agent(per_second, burst)?),
        })
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// A service behind a token bucket.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

crate::wraps_inner!(RateLimit);

impl<S> Service<ChatRequest> for RateLimit<S>
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
        match self.limiter.check(&request.agent_id) {
            Ok(left) => ResponseFuture::called(self.inner.call(request), MarkLeft(left)),
            Err(limited) => ResponseFuture::refused(Err(limited.into())),
        }
    }
}

#[cfg(test)]
mod tests;
