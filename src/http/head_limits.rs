//! Bounds on a request's head (its URI and headers), answered in JSON.
//!
//! hyper refuses heads past its own bounds with an empty 414 or 431 and
//! gives no hook to shape that answer, so the server sets hyper's bounds
//! well above these ([`HYPER_MAX_HEADERS`], [`HYPER_MAX_HEADER_BYTES`]) and
//! this layer refuses first, with a body a client can read. Only heads past
//! hyper's bounds, or that do not parse as HTTP at all, still get hyper's
//! empty answer.

use std::task::{Context, Poll};

use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready};
use tower::{Layer, Service};

use crate::error::ApiError;

/// The longest request target accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names, values and separators) accepted.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most header fields accepted.
pub const MAX_HEADERS: usize = 100;
/// Where hyper itself stops reading a head.
pub const HYPER_MAX_HEADERS: usize = 4 * MAX_HEADERS;
/// Where hyper itself stops reading a head, in bytes.
pub const HYPER_MAX_HEADER_BYTES: usize = 4 * MAX_HEADER_BYTES;

/// Refuses a request whose head is past the bounds above: 414 or 431, in JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadLimitLayer;

impl<S> Layer<S> for HeadLimitLayer {
    type Service = HeadLimit<S>;

    fn layer(&self, inner: S) -> HeadLimit<S> {
        HeadLimit { inner }
    }
}

/// The service of [`HeadLimitLayer`].
#[derive(Debug, Clone)]
pub struct HeadLimit<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for HeadLimit<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match refusal(&request) {
            Some(error) => Either::Left(futures_util::future::ready(Ok(error.into_response()))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

fn refusal<B>(request: &Request<B>) -> Option<ApiError> {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        let message = format!("the request target is longer than {MAX_URI_BYTES} bytes");
        return Some(ApiError::new(StatusCode::URI_TOO_LONG, "uri_too_long", message));
    }
    let headers = request.headers();
    // As sent: `name: value\r\n`.
    let bytes: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        let message = format!("send at most {MAX_HEADERS} headers of at most {MAX_HEADER_BYTES} bytes in all");
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            message,
        ));
    }
    None
}
