//! Anthropic's error shape for the errors the HTTP layers answer on the
//! Messages routes themselves (a 401 from auth, a 503 past the in-flight
//! cap, a 414/431 head, an unknown route), so an Anthropic client reads
//! every error of `/v1/messages...` as the API would give it. Responses
//! the route made are already in that shape, and pass as they are.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use futures_util::future::Either;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::anthropic_type;

/// Marks a response already in Anthropic's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnthropicShaped;

/// Rewrites the layers' own errors on `/v1/messages...` in Anthropic's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicErrorsLayer;

impl<S> Layer<S> for AnthropicErrorsLayer {
    type Service = AnthropicErrors<S>;

    fn layer(&self, inner: S) -> AnthropicErrors<S> {
        AnthropicErrors { inner }
    }
}

/// The service of [`AnthropicErrorsLayer`].
#[derive(Debug, Clone)]
pub struct AnthropicErrors<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for AnthropicErrors<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Reshape<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let messages = request.uri().path().starts_with("/v1/messages");
        let future = self.inner.call(request);
        match messages {
            true => Either::Left(Reshape { future }),
            false => Either::Right(future),
        }
    }
}

pin_project! {
    /// A Messages route's response, its error reshaped if a layer made it.
    pub struct Reshape<F> {
        #[pin]
        future: F,
    }
}

impl<F, E> Future for Reshape<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().future.poll(cx))?;
        let status = response.status();
        if !(status.is_client_error() || status.is_server_error())
            || response.extensions().get::<AnthropicShaped>().is_some()
        {
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Ok(reshaped(response)))
    }
}

/// The layer's error as Anthropic gives it, headers (`Retry-After`,
/// `WWW-Authenticate`) kept.
fn reshaped(response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    let body = serde_json::json!({"type": "error", "error": {
        "type": anthropic_type(parts.status), "message": message(parts.status),
    }});
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body.to_string().into())
}

fn message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "a valid `x-api-key` (or `Authorization: Bearer <token>`) header is required",
        StatusCode::SERVICE_UNAVAILABLE => "too many requests in flight; try again shortly",
        StatusCode::NOT_FOUND => "no such route",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route",
        StatusCode::URI_TOO_LONG => "the request URI is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request headers are too large",
        _ => status.canonical_reason().unwrap_or("error"),
    }
}
