//! Failover across providers, in order: an open circuit is skipped without
//! waiting, a provider fault moves on to the next provider, a request the
//! upstream refused as malformed does not (the next would refuse it too).
//! A stream fails over only until its first chunk: the first chunk is read
//! here, before the response reaches the client.
//!
//! The primary gets the request's model; a fallback gets the model pinned for
//! it, or its own default.
//!
//! ```
//! use chrysalis_middleware::failover::{Failover, Target};
//! use chrysalis_services::mock::{Mock, MockConfig};
//! use chrysalis_services::{ChatRequest, Message, Role};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let broken = Mock::new(MockConfig { fail: true, ..MockConfig::default() });
//! let healthy = Mock::new(MockConfig::default());
//! let failover = Failover::new(vec![
//!     Target::primary("broken", broken),
//!     Target::fallback("healthy", None, healthy),
//! ]);
//! let request = ChatRequest::new("docs", vec![Message::new(Role::User, "ping")]);
//! let answer = failover.clone().oneshot(request).await.unwrap();
//! assert_eq!(failover.stats()[1].failovers_to, 1);
//! # let _ = answer;
//! # }
//! ```

pub mod error;
mod future;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use chrysalis_services::{ChatRequest, ChatResponse};
use tower::{BoxError, Service};

pub use future::ResponseFuture;

/// One provider in the order.
#[derive(Debug)]
pub struct Target<S> {
    name: &'static str,
    /// `None` for the primary (the request's model); `Some(pin)` for a fallback.
    model: Option<Option<String>>,
    service: S,
    failovers_from: AtomicU64,
    failovers_to: AtomicU64,
}

impl<S> Target<S> {
    /// The primary: it serves the request's own model.
    pub fn primary(name: &'static str, service: S) -> Self {
        Self::new(name, None, service)
    }

    /// A fallback, with the model pinned for it (`None`: its default).
    pub fn fallback(name: &'static str, model: Option<String>, service: S) -> Self {
        Self::new(name, Some(model), service)
    }

    fn new(name: &'static str, model: Option<Option<String>>, service: S) -> Self {
        Self {
            name,
            model,
            service,
            failovers_from: AtomicU64::new(0),
            failovers_to: AtomicU64::new(0),
        }
    }

    fn request(&self, request: &ChatRequest) -> ChatRequest {
        let mut request = request.clone();
        if let Some(model) = &self.model {
            request.model.clone_from(model);
        }
        request
    }
}

/// How often failover moved away from and to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverStats {
    /// The provider.
    pub provider: &'static str,
    /// Calls that moved on from here (it failed, or its circuit was open).
    pub failovers_from: u64,
    /// Calls served here after an earlier provider was passed over.
    pub failovers_to: u64,
}

/// Tries each target in order until one answers.
#[derive(Debug)]
pub struct Failover<S> {
    targets: Arc<[Target<S>]>,
}

impl<S> Clone for Failover<S> {
    fn clone(&self) -> Self {
        Self {
            targets: self.targets.clone(),
        }
    }
}

impl<S> Failover<S> {
    /// Failover over `targets`, tried in the order given.
    ///
    /// # Panics
    /// If `targets` is empty.
    pub fn new(targets: Vec<Target<S>>) -> Self {
        assert!(!targets.is_empty(), "failover needs at least one provider");
        Self {
            targets: targets.into(),
        }
    }

    /// Failovers so far, per provider, in order.
    pub fn stats(&self) -> Vec<FailoverStats> {
        self.targets
            .iter()
            .map(|t| FailoverStats {
                provider: t.name,
                failovers_from: t.failovers_from.load(Ordering::Relaxed),
                failovers_to: t.failovers_to.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl<S> Service<ChatRequest> for Failover<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    /// Always ready: each target's readiness is awaited when its turn comes.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        ResponseFuture::new(self.targets.clone(), request)
    }
}

#[cfg(test)]
mod tests;
