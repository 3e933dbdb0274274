//! Bearer-token auth for an HTTP service: requests under a protected prefix
//! (`/v1/` by default) need `Authorization: Bearer <token>`, or the token as
//! `x-api-key` (the header Anthropic's SDKs send their key in); anything else
//! (health, metrics) and CORS preflights pass. Several tokens may be valid at
//! once, so a token can be rotated without downtime. Tokens are compared in
//! constant time, and never appear in a response or a log line.
//!
//! ```
//! use chrysalis_middleware::auth::BearerAuthLayer;
//! use tower::{service_fn, Layer};
//!
//! let layer = BearerAuthLayer::new(["current-token", "previous-token"]).unwrap();
//! let service = layer.layer(service_fn(|_: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! }));
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::gate::{RefuseOrCall, Unchanged};

/// No token was given, or one was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an auth token must not be empty")]
pub struct EmptyToken;

/// Requires a bearer token on protected paths.
#[derive(Debug, Clone)]
#[must_use]
pub struct BearerAuthLayer {
    shared: Arc<Tokens>,
}

struct Tokens {
    tokens: Vec<Vec<u8>>,
    prefix: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.tokens.len())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl BearerAuthLayer {
    /// Accepts any of `tokens` on paths under `/v1/`.
    pub fn new<T: AsRef<str>>(tokens: impl IntoIterator<Item = T>) -> Result<Self, EmptyToken> {
        Self::protecting("/v1/", tokens)
    }

    /// Accepts any of `tokens` on paths under `prefix`.
    pub fn protecting<T: AsRef<str>>(prefix: &str, tokens: impl IntoIterator<Item = T>) -> Result<Self, EmptyToken> {
        let tokens: Vec<Vec<u8>> = tokens
            .into_iter()
            .map(|t| t.as_ref().trim().as_bytes().to_vec())
            .collect();
        if tokens.is_empty() || tokens.iter().any(Vec::is_empty) {
            return Err(EmptyToken);
        }
        // A client may echo its token into a model name or a message that
        // reaches a log line: remove it there as well as a key.
        for token in &tokens {
            chrysalis_services::redact::register_secret(&String::from_utf8_lossy(token));
        }
        Ok(Self {
            shared: Arc::new(Tokens {
                tokens,
                prefix: prefix.to_owned(),
            }),
        })
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// An HTTP service behind bearer auth.
#[derive(Debug, Clone)]
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Tokens>,
}

crate::wraps_inner!(BearerAuth);

impl Tokens {
    fn needs_token<B>(&self, request: &Request<B>) -> bool {
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        !preflight && request.uri().path().starts_with(&self.prefix)
    }

    fn admits<B>(&self, request: &Request<B>) -> bool {
        let headers = request.headers();
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials);
        let api_key = || headers.get(API_KEY).and_then(|v| v.to_str().ok());
        let Some(given) = bearer.or_else(api_key) else {
            return false;
        };
        let given = given.trim().as_bytes();
        // Every token is compared, so the time taken says nothing of which matched.
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |found, token| {
                found | token.as_slice().ct_eq(given)
            })
            .into()
    }
}

impl<S, B, ResBody> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.shared.needs_token(&request) && !self.shared.admits(&request) {
            return ResponseFuture::refused(Ok(unauthorized()));
        }
        ResponseFuture::called(self.inner.call(request), Unchanged)
    }
}

/// The header Anthropic's SDKs carry their key in.
const API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");

fn unauthorized<ResBody: From<String>>() -> Response<ResBody> {
    let body = r#"{"error":{"type":"unauthorized","message":"a valid `Authorization: Bearer <token>` (or `x-api-key`) header is required"}}"#;
    let mut response = Response::new(ResBody::from(body.to_owned()));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The future of [`BearerAuth`]: a 401 at once, or the inner call.
pub type ResponseFuture<F, ResBody, E> = RefuseOrCall<F, Unchanged, Result<Response<ResBody>, E>>;

/// The credentials of a `Bearer` authorization; the scheme is
/// case-insensitive (RFC 7235 §2.1), so `BEARER` and `bearer` are the same.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{service_fn, ServiceExt};

    use super::*;

    async fn status(layer: &BearerAuthLayer, method: Method, path: &str, auth: Option<&str>) -> StatusCode {
        let service = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let mut request = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        if path == "/v1/preflight" {
            request = request.header(http::header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        }
        service.oneshot(request.body(()).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn protected_paths_need_one_of_the_tokens() {
        let layer = BearerAuthLayer::new(["new-token", "old-token"]).unwrap();
        assert_eq!(
            status(&layer, Method::POST, "/v1/chat", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&layer, Method::POST, "/v1/chat", Some("Bearer wrong")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&layer, Method::POST, "/v1/chat", Some("new-token")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&layer, Method::POST, "/v1/chat", Some("Bearer new-token")).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&layer, Method::POST, "/v1/chat", Some("Bearer old-token")).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&layer, Method::POST, "/v1/chat", Some("Bearer new-token-x")).await,
            StatusCode::UNAUTHORIZED
        );
        for scheme in ["BEARER", "bearer", "BeArEr"] {
            let auth = format!("{scheme} new-token");
            assert_eq!(
                status(&layer, Method::POST, "/v1/chat", Some(&auth)).await,
                StatusCode::OK,
                "{scheme}"
            );
        }
        assert_eq!(
            status(&layer, Method::POST, "/v1/chat", Some("Bearernew-token")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status(&layer, Method::GET, "/healthz", None).await, StatusCode::OK);
        assert_eq!(status(&layer, Method::GET, "/metrics", None).await, StatusCode::OK);
        assert_eq!(
            status(&layer, Method::OPTIONS, "/v1/preflight", None).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_anthropic_client_may_send_the_token_as_x_api_key() {
        let layer = BearerAuthLayer::new(["new-token"]).unwrap();
        let call = |headers: &[(&str, &str)]| {
            let service = layer.layer(service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }));
            let mut request = Request::builder().method(Method::POST).uri("/v1/messages");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            async move { service.oneshot(request.body(()).unwrap()).await.unwrap().status() }
        };
        assert_eq!(call(&[("x-api-key", "new-token")]).await, StatusCode::OK);
        assert_eq!(call(&[("x-api-key", "wrong")]).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            call(&[("x-api-key", "Bearer new-token")]).await,
            StatusCode::UNAUTHORIZED
        );
        // A valid bearer token decides; a stale x-api-key beside it does not matter.
        assert_eq!(
            call(&[("authorization", "Bearer new-token"), ("x-api-key", "stale")]).await,
            StatusCode::OK
        );
    }

    #[test]
    fn empty_tokens_are_refused_when_built() {
        assert_eq!(BearerAuthLayer::new(Vec::<String>::new()).unwrap_err(), EmptyToken);
        assert_eq!(BearerAuthLayer::new(["ok", " "]).unwrap_err(), EmptyToken);
    }
}
