//! The layer (configuration and the shared state) and the service.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrysalis_services::{ChatRequest, ChatResponse};
use tower::{BoxError, Layer, Service};

use super::future::ResponseFuture;
use super::state::{Breaker, CircuitHandle};

/// Wraps a provider in a circuit breaker. Every service made by one layer
/// shares one circuit, and so does every handle taken from it.
#[derive(Debug, Clone)]
#[must_use]
pub struct CircuitBreakerLayer {
    breaker: Arc<Breaker>,
}

impl CircuitBreakerLayer {
    /// A circuit for `provider`: opens after 3 faults in a row, probes after 60 s.
    pub fn new(provider: &'static str) -> Self {
        Self::builder(provider).build()
    }

    /// A circuit for `provider` with other settings. The circuit is made by
    /// [`CircuitBreakerBuilder::build`], so no handle can watch one that a
    /// later setting replaces.
    pub fn builder(provider: &'static str) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            provider,
            threshold: NonZeroU32::new(3).expect("3 is not zero"),
            reset: Duration::from_secs(60),
        }
    }

    /// Reads the circuit's state.
    pub fn handle(&self) -> CircuitHandle {
        CircuitHandle(self.breaker.clone())
    }
}

/// The settings of a [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CircuitBreakerBuilder {
    provider: &'static str,
    threshold: NonZeroU32,
    reset: Duration,
}

impl CircuitBreakerBuilder {
    /// Consecutive faults that open the circuit.
    pub fn failure_threshold(mut self, threshold: NonZeroU32) -> Self {
        self.threshold = threshold;
        self
    }

    /// How long the circuit stays open before one probe goes through.
    pub fn reset_after(mut self, reset: Duration) -> Self {
        self.reset = reset;
        self
    }

    /// The layer, with its circuit.
    pub fn build(self) -> CircuitBreakerLayer {
        CircuitBreakerLayer {
            breaker: Arc::new(Breaker::new(self.provider, self.threshold.get(), self.reset)),
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// A provider behind a circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    breaker: Arc<Breaker>,
}

crate::wraps_inner!(CircuitBreaker);

impl<S> Service<ChatRequest> for CircuitBreaker<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        match self.breaker.admit() {
            Ok(ticket) => ResponseFuture::called(self.inner.call(request), ticket),
            Err(open) => ResponseFuture::refused(Err(open.into())),
        }
    }
}
