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
mod shared;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_services::{ChatRequest, ChatResponse};
use tower::{BoxError, Layer, Service};

use crate::gate::AskFirst;
use future::Ask;
pub use future::{MarkLeft, ResponseFuture};
use limiter::Limiter;
use shared::SharedBuckets;

/// Applies a token bucket; every service made by one layer shares its buckets.
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
    shared: Option<SharedBuckets>,
}

impl RateLimitLayer {
    /// One bucket for all callers: `per_second` refill, `burst` capacity.
    pub fn global(per_second: f64, burst: NonZeroU32) -> Result<Self, error::InvalidRate> {
        Ok(Self {
            limiter: Arc::new(Limiter::global(per_second, burst)?),
            shared: None,
        })
    }

    /// One bucket per `agent_id`.
    pub fn per_agent(per_second: f64, burst: NonZeroU32) -> Result<Self, error::InvalidRate> {
        Ok(Self {
            limiter: Arc::new(Limiter::per_agent(per_second, burst)?),
            shared: None,
        })
    }

    /// Keeps the buckets in Redis at `url`, under keys starting `prefix`,
    /// shared by every gateway that names the same store and prefix, each
    /// call waiting at most `timeout` for it.
    /// While the store is unreachable, each falls back to its own bucket
    /// (and says so once in the log, and in [`RateLimitLayer::shared_store_up`]),
    /// and returns to the shared one when the store answers again. Fails
    /// only on a URL that is not Redis's.
    pub fn shared(mut self, url: &str, prefix: &str, timeout: Duration) -> Result<Self, error::InvalidStore> {
        let buckets = SharedBuckets::connect(url, prefix, self.limiter.interval(), self.limiter.burst(), timeout)
            .map_err(error::InvalidStore)?;
        self.shared = Some(buckets);
        Ok(self)
    }

    /// With a shared store: whether its last call answered.
    pub fn shared_store_up(&self) -> Option<bool> {
        self.shared.as_ref().map(SharedBuckets::is_up)
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// A service behind a token bucket.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
    shared: Option<SharedBuckets>,
}

crate::wraps_inner!(RateLimit);

impl<S> Service<ChatRequest> for RateLimit<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let Some(shared) = &self.shared else {
            return future::local(&mut self.inner, &self.limiter, request);
        };
        let answer = shared.check(&self.limiter.shared_key(&request.agent_id));
        let ask = Ask {
            inner: crate::take_ready(&mut self.inner),
            request,
            limiter: self.limiter.clone(),
            shared: shared.clone(),
        };
        AskFirst::asking(answer, ask)
    }
}

#[cfg(test)]
mod tests;
