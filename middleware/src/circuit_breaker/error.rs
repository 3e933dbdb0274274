//! The breaker's own failure.

use std::time::Duration;

/// The circuit is open: the call was refused without touching the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the circuit of {provider} is open")]
pub struct Open {
    /// The provider behind the circuit.
    pub provider: &'static str,
    /// How long until a probe may go through.
    pub retry_after: Duration,
}
