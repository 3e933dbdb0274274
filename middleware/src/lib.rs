//! Tower layers for LLM traffic, one concern a module, each usable alone.
//!
//! The chat layers ([`rate_limit`], [`budget`], [`circuit_breaker`], [`retry`],
//! [`timeout`], [`failover`], [`metrics`]) wrap any
//! `Service<ChatRequest, Response = ChatResponse>` from [`chrysalis_services`]
//! and are one themselves, so they compose in any order and another program
//! can take only the ones it needs; none needs an HTTP server. Two layers work
//! on `http::Request` instead, for an HTTP edge: [`auth`] (bearer tokens) and
//! [`inflight`] (a cap on requests in flight). Each `FooLayer` builds a `Foo`,
//! whose `get_ref`, `get_mut` and `into_inner` reach the service it wraps.
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
//!     .layer(TimeoutLayer::new(Duration::from_secs(30), Duration::from_secs(30)))
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
pub mod gate;
pub mod inflight;
pub mod metrics;
pub mod observe;
pub mod rate_limit;
#[cfg(test)]
mod readiness_tests;
pub mod retry;
#[cfg(test)]
mod test_support;
pub mod timeout;

/// The error type of every layer: the inner service's error or the layer's own.
pub use tower::BoxError;

/// `get_ref`, `get_mut` and `into_inner` for a service that wraps `inner: S`.
macro_rules! wraps_inner {
    ($service:ident) => {
        impl<S> $service<S> {
            /// The wrapped service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The wrapped service, mutably.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// The wrapped service, unwrapped.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}
pub(crate) use wraps_inner;

/// The service `poll_ready` made ready, for a call that outlives this
/// `call` (it waits first); a clone stays in its place (tower's readiness
/// belongs to the instance that was polled).
pub(crate) fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}
