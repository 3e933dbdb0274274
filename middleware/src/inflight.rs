//! A cap on requests in flight for an HTTP service: past it, a request is
//! answered 503 at once instead of queueing without bound. A request counts
//! until its response body ends, so open streams count too.
//!
//! ```
//! use std::num::NonZeroUsize;
//! use chrysalis_middleware::inflight::InFlightLimitLayer;
//! use tower::{service_fn, Layer};
//!
//! let service = InFlightLimitLayer::new(NonZeroUsize::new(1024).unwrap()).layer(service_fn(|_: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! }));
//! ```

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::gate::{RefuseOrCall, Then};

/// Caps requests in flight; every service made by one layer shares the cap.
#[derive(Debug, Clone)]
#[must_use]
pub struct InFlightLimitLayer {
    permits: Arc<Semaphore>,
}

impl InFlightLimitLayer {
    /// At most `max` requests in flight.
    pub fn new(max: NonZeroUsize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.get())),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> InFlightLimit<S> {
        InFlightLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// An HTTP service with a cap on requests in flight.
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

crate::wraps_inner!(InFlightLimit);

impl<S, B, ResBody> Service<Request<B>> for InFlightLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<PermitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture::called(self.inner.call(request), Permit(permit)),
            Err(_) => ResponseFuture::refused(Ok(overloaded())),
        }
    }
}

/// The future of [`InFlightLimit`]: a 503 at once, or the inner call
/// holding its slot until the response's body ends.
pub type ResponseFuture<F, ResBody, E> = RefuseOrCall<F, Permit, Result<Response<PermitBody<ResBody>>, E>>;

/// An admitted request's slot, handed to its response's body.
#[derive(Debug)]
pub struct Permit(OwnedSemaphorePermit);

impl<ResBody, E> Then<Result<Response<ResBody>, E>> for Permit {
    type Output = Result<Response<PermitBody<ResBody>>, E>;

    fn then(self, outcome: Result<Response<ResBody>, E>) -> Result<Response<PermitBody<ResBody>>, E> {
        let permit = Some(self.0);
        Ok(outcome?.map(|inner| PermitBody { inner, permit }))
    }
}

fn overloaded<ResBody: From<String>>() -> Response<PermitBody<ResBody>> {
    let body = r#"{"error":{"type":"unavailable","message":"too many requests in flight; try again shortly"}}"#;
    let mut response = Response::new(PermitBody {
        inner: ResBody::from(body.to_owned()),
        permit: None,
    });
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pin_project! {
    /// A response body that holds its request's place until it ends or is dropped.
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<B: Default> Default for PermitBody<B> {
    fn default() -> Self {
        Self {
            inner: B::default(),
            permit: None,
        }
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use tower::{service_fn, ServiceExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_requests_are_refused_at_once_and_places_come_back() {
        let slow = service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(String::from("done")))
        });
        let service = InFlightLimitLayer::new(NonZeroUsize::new(2).unwrap()).layer(slow);
        let call = || service.clone().oneshot(Request::new(()));
        let (a, b) = (tokio::spawn(call()), tokio::spawn(call()));
        tokio::task::yield_now().await;
        let refused = call().await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[RETRY_AFTER], "1");
        let first = a.await.unwrap().unwrap();
        let _second = b.await.unwrap().unwrap();
        // Both bodies are still unread (a stream still sending): their places are still taken.
        assert_eq!(call().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        let again = tokio::spawn(call());
        assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
