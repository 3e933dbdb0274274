//! The one place where any error of the stack becomes an HTTP status and a
//! JSON body `{"error": {"type": ..., "message": ...}}`.

use std::error::Error as StdError;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrysalis_services::{ErrorKind, ProviderError};
use serde::Serialize;

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable error type (`invalid_request`, `upstream_error`, ...).
    pub kind: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Whole seconds to wait before trying again.
    pub retry_after: Option<u64>,
    /// Each provider tried, for upstream failures.
    pub attempts: Vec<Attempt>,
}

/// One provider call that failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// The provider.
    pub provider: &'static str,
    /// How it failed (`connect`, `timeout`, `status`, ...).
    pub error: &'static str,
    /// The upstream's HTTP status, if it answered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What it said.
    pub message: String,
}

impl From<&ProviderError> for Attempt {
    fn from(error: &ProviderError) -> Self {
        Self {
            provider: error.provider,
            error: error.kind_name(),
            status: error.status(),
            message: error.kind.to_string(),
        }
    }
}

impl ApiError {
    /// An error with no retry hint and no attempts.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            attempts: Vec::new(),
        }
    }

    /// 400: the request is malformed.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 413: the body is over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        let message = format!("the request body is larger than {limit} bytes");
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// Any error the chat stack returns.
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        match error.downcast_ref::<ProviderError>() {
            Some(error) => Self::from_provider(error),
            None => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                error.to_string(),
            ),
        }
    }

    /// A provider's failure.
    pub fn from_provider(error: &ProviderError) -> Self {
        if error.is_client_error() {
            return Self::invalid_request(error.to_string());
        }
        let (status, kind) = match error.kind {
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
        };
        let mut api = Self::new(status, kind, error.to_string());
        api.attempts.push(Attempt::from(error));
        api
    }

    /// The JSON of the error itself: `{"type", "message", "attempts"?}`.
    pub fn detail(&self) -> ErrorDetail<'_> {
        ErrorDetail {
            kind: self.kind,
            message: &self.message,
            attempts: &self.attempts,
        }
    }
}

/// The `error` object of a JSON error body or of a stream's error frame.
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[Attempt]>::is_empty")]
    attempts: &'a [Attempt],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: ErrorDetail<'a>,
        }
        let mut response = (
            self.status,
            Json(Body {
                error: self.detail(),
            }),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_map_to_the_contract_statuses() {
        let timeout = ProviderError::new("openai", ErrorKind::Timeout);
        assert_eq!(
            ApiError::from_provider(&timeout).status,
            StatusCode::GATEWAY_TIMEOUT
        );
        let status = |status| {
            ProviderError::new(
                "openai",
                ErrorKind::Status {
                    status,
                    message: "x".into(),
                },
            )
        };
        let bad_model = ApiError::from_provider(&status(404));
        assert_eq!(
            (bad_model.status, bad_model.kind),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let overloaded = ApiError::from_provider(&status(529));
        assert_eq!(
            (overloaded.status, overloaded.kind),
            (StatusCode::BAD_GATEWAY, "upstream_error")
        );
        assert_eq!(overloaded.attempts[0].status, Some(529));
    }
}
