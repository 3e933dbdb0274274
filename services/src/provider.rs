//! The one `tower::Service` of every provider: each provider writes only
//! what a call does ([`ChatApi`]); [`Provider`] makes it a service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::chat::{ChatRequest, ChatResponse};
use crate::error::ProviderError;

/// What one provider does with a call.
pub trait ChatApi: Send + Sync + 'static {
    /// Makes the call: the whole answer, or a stream once its head arrived.
    fn chat(self: Arc<Self>, request: ChatRequest) -> impl Future<Output = Result<ChatResponse, ProviderError>> + Send;
}

/// A provider as a service: a cheap handle on its [`ChatApi`], always ready.
pub struct Provider<A>(Arc<A>);

/// The future of every provider, boxed once per call at the end of the
/// stack (where the call's own work dwarfs it), so a stack's type does not
/// name each provider's future.
pub type ProviderFuture = Pin<Box<dyn Future<Output = Result<ChatResponse, ProviderError>> + Send>>;

impl<A> Provider<A> {
    pub(crate) fn from_api(api: A) -> Self {
        Self(Arc::new(api))
    }

    pub(crate) fn api(&self) -> &A {
        &self.0
    }
}

impl<A> Clone for Provider<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<A: fmt::Debug> fmt::Debug for Provider<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<A: ChatApi> tower::Service<ChatRequest> for Provider<A> {
    type Response = ChatResponse;
    type Error = ProviderError;
    type Future = ProviderFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        Box::pin(self.0.clone().chat(request))
    }
}
