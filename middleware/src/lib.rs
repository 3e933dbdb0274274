//! Tower layers for LLM traffic, one concern a module, each usable alone.
//!
//! Every layer wraps any `Service<ChatRequest, Response = ChatResponse>` from
//! [`chrysalis_services`] and is one itself, so they compose in any order and
//! another program can take only the ones it needs. None needs an HTTP server.
//!
//! ```
//! use std::time::Duration;
//! use chrysalis_middleware::{circuit_breaker::CircuitBreakerLayer, timeout::TimeoutLayer};
//! use chrysalis_services::{mock::{Mock, MockConfig}, ChatRequest, Message, Role};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let provider = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new("mock"))
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)))
//!     .service(Mock::new(MockConfig::default()));
//! let request = ChatRequest::new("docs", vec![Message::new(Role::User, "ping")]);
//! let answer = provider.oneshot(request).await.unwrap();
//! assert_eq!(answer.provider(), "mock");
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod budget;
pub mod circuit_breaker;
pub mod failover;
pub mod fault;
pub mod inflight;
pub mod metrics;
pub mod observe;
pub mod rate_limit;
#[cfg(test)]
mod readiness_tests;
#[cfg(test)]
mod test_support;
pub mod timeout;

/// The error type of every layer: the inner service's error or the layer's own.
pub use tower::BoxError;
