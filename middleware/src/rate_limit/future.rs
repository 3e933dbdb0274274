//! The response future: refused at once, or the call, marked with what is left.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use chrysalis_services::ChatResponse;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::error::RateLimited;

pin_project! {
    /// The future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Refused { limited: RateLimited },
        Admitted { #[pin] future: F, left: (u32, u32) },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn admitted(future: F, left: (u32, u32)) -> Self {
        Self {
            kind: Kind::Admitted { future, left },
        }
    }

    pub(super) fn refused(limited: RateLimited) -> Self {
        Self {
            kind: Kind::Refused { limited },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, E>>,
    E: Into<BoxError>,
{
    type Output = Result<ChatResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { limited } => Poll::Ready(Err((*limited).into())),
            KindProj::Admitted { future, left } => {
                let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                response.meta_mut().rate_limit = Some(*left);
                Poll::Ready(Ok(response))
            }
        }
    }
}
