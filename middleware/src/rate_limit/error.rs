//! The rate limiter's own failures.

use std::time::Duration;

/// The bucket is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit reached: try again in {:.1} s", retry_after.as_secs_f64())]
pub struct RateLimited {
    /// How long until a request would be admitted.
    pub retry_after: Duration,
}

/// A shared store's URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rate limit store: {0}")]
pub struct InvalidStore(pub String);

/// A refill rate that is not a positive, finite number of requests a second.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("the rate must be a positive number of requests a second, not {0}")]
pub struct InvalidRate(pub f64);
