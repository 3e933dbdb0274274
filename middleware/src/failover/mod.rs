//! Failover across providers, in order: an open circuit is skipped without
//! waiting, a provider fault moves on to the next provider, a request the
//! upstream refused as malformed does not (the next would refuse it too).
//! A stream fails over only until its first chunk: the first chunk is read
//! here, before the response reaches the client.
//!
//! The primary gets the request's model; a fallback gets the model pinned for
//! it, or its own default.
//!
//! A prompt too long for a model's context window is a refusal like any
//! malformed request, but with [`Failover::context_windows`] it moves on to
//! the next provider whose model has a larger window (never the same model).
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
mod resume;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{ChatRequest, ChatResponse};
use tower::{BoxError, Service};

pub use future::ResponseFuture;
pub use resume::{CutCost, Resume};

/// One provider in the order.
#[derive(Debug)]
pub struct Target<S> {
    name: &'static str,
    /// `None` for the primary (the request's model); `Some(pin)` for a fallback.
    model: Option<Option<String>>,
    service: S,
    /// The model it serves when the request names none, if known.
    default_model: Option<String>,
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
            default_model: None,
            failovers_from: AtomicU64::new(0),
            failovers_to: AtomicU64::new(0),
        }
    }

    /// The model it serves when a request names none (for its context window).
    #[must_use]
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        self.default_model = Some(model.into());
        self
    }

    /// The model it would serve `request` with, if known.
    fn model_for<'a>(&'a self, request: &'a ChatRequest) -> Option<&'a str> {
        let model = match &self.model {
            None => request.model.as_deref(),
            Some(pinned) => pinned.as_deref(),
        };
        model.or(self.default_model.as_deref())
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
    windows: Option<Arc<PriceTable>>,
    resume: Option<Arc<Resume>>,
}

impl<S> Clone for Failover<S> {
    fn clone(&self) -> Self {
        Self {
            targets: self.targets.clone(),
            windows: self.windows.clone(),
            resume: self.resume.clone(),
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
            windows: None,
            resume: None,
        }
    }

    /// Finishes a stream cut after its text reached the client with a
    /// continuation from the next provider `resume` allows (see [`Resume`]).
    #[must_use]
    pub fn resume(mut self, resume: Resume) -> Self {
        self.resume = Some(Arc::new(resume));
        self
    }

    /// Moves a prompt too long for one model's context window on to the
    /// next provider whose model's window (from `prices`) is larger.
    #[must_use]
    pub fn context_windows(mut self, prices: Arc<PriceTable>) -> Self {
        self.windows = Some(prices);
        self
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
    S: Service<ChatRequest, Response = ChatResponse> + Clone + Send + Sync + Unpin + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    /// Always ready: each target's readiness is awaited when its turn comes.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        ResponseFuture::new(self.targets.clone(), self.windows.clone(), self.resume.clone(), request)
    }
}

#[cfg(test)]
mod tests;
