//! A circuit breaker per provider: after `failure_threshold` consecutive
//! provider faults the circuit opens and calls fail at once, without touching
//! the network; after `reset_after` exactly one probe goes through (half-open);
//! its success closes the circuit, its failure opens it again.
//!
//! Faults are connect errors, timeouts, 5xx, 429 and broken streams; a
//! request the upstream refused as malformed (400-type) is not. A stream is
//! judged when it ends, not when it starts.
//!
//! ```
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use chrysalis_middleware::circuit_breaker::{CircuitBreakerLayer, CircuitState};
//! use chrysalis_services::mock::{Mock, MockConfig};
//! use tower::Layer;
//!
//! let layer = CircuitBreakerLayer::builder("mock")
//!     .failure_threshold(NonZeroU32::new(3).unwrap())
//!     .reset_after(Duration::from_secs(60))
//!     .build();
//! let circuit = layer.handle();
//! let service = layer.layer(Mock::new(MockConfig::default()));
//! assert_eq!(circuit.state(), CircuitState::Closed);
//! ```

pub mod error;
mod future;
mod layer;
mod state;

pub use future::ResponseFuture;
pub use layer::{CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerLayer};
pub use state::{CircuitHandle, CircuitState, Ticket};

#[cfg(test)]
mod tests;
