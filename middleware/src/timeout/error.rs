//! The timeout's own failure.

/// The provider did not answer within the timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("the upstream did not answer in time")]
pub struct Elapsed;
