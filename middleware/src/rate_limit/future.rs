//! The response future: refused at once, or the call, marked with what is
//! left; with a shared store, first the store's answer.

use std::sync::Arc;

use chrysalis_services::{ChatRequest, ChatResponse};
use tokio::sync::oneshot;
use tower::{BoxError, Service};

use super::error::RateLimited;
use super::limiter::Limiter;
use super::shared::{SharedBuckets, Verdict};
use crate::gate::{AskFirst, Decide, RefuseOrCall, Then};

/// Marks an admitted call's response with the requests left and the limit.
#[derive(Debug, Clone, Copy)]
pub struct MarkLeft(pub(super) (u32, u32));

impl<E: Into<BoxError>> Then<Result<ChatResponse, E>> for MarkLeft {
    type Output = Result<ChatResponse, BoxError>;

    fn then(self, outcome: Result<ChatResponse, E>) -> Self::Output {
        let mut response = outcome.map_err(Into::into)?;
        response.meta_mut().rate_limit = Some(self.0);
        Ok(response)
    }
}

type Decided<F> = RefuseOrCall<F, MarkLeft, Result<ChatResponse, BoxError>>;

/// The future of [`RateLimit`](super::RateLimit).
pub type ResponseFuture<S> = AskFirst<Verdict, Ask<S>>;

/// What a call waiting for the shared store's answer needs afterwards.
#[derive(Debug)]
pub struct Ask<S> {
    pub(super) inner: S,
    pub(super) request: ChatRequest,
    pub(super) limiter: Arc<Limiter>,
    pub(super) shared: SharedBuckets,
}

/// Decided here, by the local bucket.
pub(super) fn local<S>(inner: &mut S, limiter: &Limiter, request: ChatRequest) -> ResponseFuture<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    AskFirst::decided(decide(inner, limiter.check(&request.agent_id), request))
}

fn decide<S: Service<ChatRequest>>(
    inner: &mut S,
    verdict: Result<(u32, u32), RateLimited>,
    request: ChatRequest,
) -> Decided<S::Future> {
    match verdict {
        Ok(left) => RefuseOrCall::called(inner.call(request), MarkLeft(left)),
        Err(limited) => RefuseOrCall::refused(Err(limited.into())),
    }
}

impl<S> Decide<Verdict> for Ask<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    type Future = Decided<S::Future>;

    fn decide(self, answer: Result<Verdict, oneshot::error::RecvError>) -> Self::Future {
        let Self {
            mut inner,
            request,
            limiter,
            shared,
        } = self;
        shared.answered(answer.is_ok());
        let verdict = match answer {
            Ok(Verdict::Admitted(left)) => Ok((limiter.burst(), left)),
            Ok(Verdict::Limited(retry_after)) => Err(RateLimited { retry_after }),
            // The store is unreachable: this replica's own bucket decides.
            Err(_) => limiter.check(&request.agent_id),
        };
        decide(&mut inner, verdict, request)
    }
}
