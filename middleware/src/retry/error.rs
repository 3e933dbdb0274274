//! The retry layer's errors.

use chrysalis_services::ProviderError;
use thiserror::Error;
use tower::BoxError;

/// A [`RetryLayer`](super::RetryLayer) setting out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("invalid retry settings: {0}")]
pub struct InvalidRetry(pub &'static str);

/// A call that failed after retries: each earlier try's error, then the
/// last one, which decides what the call's failure is.
#[derive(Debug, Error)]
#[error("{last} (after {} retr{})", earlier.len(), if earlier.len() == 1 { "y" } else { "ies" })]
pub struct Retried {
    /// The tries before the last, in order.
    pub earlier: Vec<ProviderError>,
    /// The last try's error.
    #[source]
    pub last: BoxError,
}

/// The error that decides what a failure is: a retried call's last one.
pub fn last_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> &'a (dyn std::error::Error + 'static) {
    match error.downcast_ref::<Retried>() {
        Some(retried) => &*retried.last,
        None => error,
    }
}
