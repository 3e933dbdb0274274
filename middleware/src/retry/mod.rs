//! Retries on the same provider, before failover moves on: only what can
//! succeed on a second try (a connection refused or reset before any
//! answer, 429, 500, 502, 503), at most `max_retries` times, after an
//! exponential backoff with full jitter, or after the upstream's own
//! `Retry-After` when it fits in the call's deadline (a longer one fails
//! over at once). A retry budget (retries add at most a share of the
//! provider's recent calls) stops retry storms during an outage. A stream
//! is never retried once it started: this layer sees only the call, and the
//! stream's chunks come after it.
//!
//! Put it inside the provider's timeout, so one deadline bounds every try.
//!
//! ```
//! use std::time::Duration;
//! use chrysalis_middleware::retry::RetryLayer;
//! use chrysalis_middleware::timeout::TimeoutLayer;
//! use chrysalis_services::mock::{Mock, MockConfig};
//! use tower::ServiceBuilder;
//!
//! let first_token = Duration::from_secs(30);
//! let retry = RetryLayer::builder("mock")
//!     .max_retries(2)
//!     .backoff(Duration::from_millis(200))
//!     .deadline(first_token)
//!     .build()
//!     .unwrap();
//! let provider = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(first_token, Duration::from_secs(10)))
//!     .layer(retry)
//!     .service(Mock::new(MockConfig::default()));
//! ```

pub mod error;
mod policy;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_services::{ChatRequest, ChatResponse};
use tower::retry::budget::TpsBudget;
use tower::retry::future::ResponseFuture;
use tower::util::{MapErr, ServiceExt};
use tower::{BoxError, Layer, Service};

use error::InvalidRetry;
use policy::Shared;
pub use policy::{RetryHandle, RetryPolicy, REASONS};

#[cfg(test)]
mod tests;

/// Applies [`Retry`] to a provider.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

/// The inner service, its errors boxed so a retried call's error can list each try.
type Boxed<S> = MapErr<S, fn(<S as Service<ChatRequest>>::Error) -> BoxError>;

/// A provider whose failed calls are retried, each call by tower's retry
/// service with a policy of its own (its start, its tries).
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> Service<ChatRequest> for Retry<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<RetryPolicy, Boxed<S>, ChatRequest>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let ready = crate::take_ready(&mut self.inner);
        let boxed: fn(S::Error) -> BoxError = Into::into;
        tower::retry::Retry::new(self.policy.starting_now(), ready.map_err(boxed)).call(request)
    }
}

crate::wraps_inner!(Retry);

impl RetryLayer {
    /// A layer for `provider`, to be set up.
    pub fn builder(provider: &'static str) -> RetryBuilder {
        RetryBuilder {
            provider,
            max_retries: 1,
            backoff: Duration::from_millis(200),
            deadline: Duration::from_secs(120),
            budget_percent: 0.2,
            budget_window: Duration::from_secs(10),
            min_per_second: 1,
        }
    }

    /// The retries made so far, by reason.
    pub fn handle(&self) -> RetryHandle {
        self.policy.handle()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Settings of a [`RetryLayer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryBuilder {
    provider: &'static str,
    max_retries: u32,
    backoff: Duration,
    deadline: Duration,
    budget_percent: f32,
    budget_window: Duration,
    min_per_second: u32,
}

impl RetryBuilder {
    /// Tries after the first (default 1; 0 turns retries off).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The base of the backoff: the n-th retry waits a random time up to
    /// `base` x 2^(n-1) (default 200 ms).
    pub fn backoff(mut self, base: Duration) -> Self {
        self.backoff = base;
        self
    }

    /// How long, from the call, every try together may take (the
    /// provider's first-token timeout): a wait that would end past it is
    /// not made, so the call fails over at once (default 120 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Retries may add at most `percent` (0 to 10, default 0.2) to the
    /// calls of the last `window` (1 to 60 s, default 10 s), plus
    /// `min_per_second` (default 1) so a quiet provider may still retry.
    pub fn budget(mut self, percent: f32, window: Duration, min_per_second: u32) -> Self {
        self.budget_percent = percent;
        self.budget_window = window;
        self.min_per_second = min_per_second;
        self
    }

    /// The layer, or the setting that is out of range.
    pub fn build(self) -> Result<RetryLayer, InvalidRetry> {
        if self.deadline.is_zero() {
            return Err(InvalidRetry("the deadline must be above zero"));
        }
        if !(0.0..=10.0).contains(&self.budget_percent) {
            return Err(InvalidRetry("the budget's share must be between 0 and 10"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.budget_window) {
            return Err(InvalidRetry("the budget's window must be 1 to 60 s"));
        }
        if self.min_per_second >= i32::MAX as u32 {
            return Err(InvalidRetry("the budget's minimum is too large"));
        }
        let budget = TpsBudget::new(self.budget_window, self.min_per_second, self.budget_percent);
        let shared = Shared::new(self.provider, self.max_retries, self.backoff, self.deadline, budget);
        Ok(RetryLayer {
            policy: RetryPolicy::new(Arc::new(shared)),
        })
    }
}
