//! The one place where any error of the stack becomes an HTTP status and a
//! JSON body `{"error": {"type": ..., "message": ...}}`.

use std::error::Error as StdError;

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrysalis_middleware::budget::error::{BudgetExceeded, LedgerUnreachable, UnpricedModel};
use chrysalis_middleware::circuit_breaker::error::Open;
use chrysalis_middleware::failover::error::{AllFailed, AllOpen};
use chrysalis_middleware::rate_limit::error::RateLimited;
use chrysalis_middleware::retry::error::Retried;
use chrysalis_middleware::timeout::error::Elapsed;
use chrysalis_services::redact::redact;
use chrysalis_services::{ErrorKind, ProviderError};
use serde::Serialize;

use crate::http::anthropic_errors::AnthropicShaped;

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
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
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
            message: redact(&error.kind.to_string()).into_owned(),
        }
    }
}

impl Attempt {
    /// The tries behind one provider's failure: each retry's, then the last.
    fn all_of(provider: &'static str, error: &(dyn StdError + 'static)) -> Vec<Self> {
        match error.downcast_ref::<Retried>() {
            Some(retried) => retried
                .earlier
                .iter()
                .map(Self::from)
                .chain([Self::of(provider, &*retried.last)])
                .collect(),
            None => vec![Self::of(provider, error)],
        }
    }

    fn of(provider: &'static str, error: &(dyn StdError + 'static)) -> Self {
        if let Some(error) = error.downcast_ref::<ProviderError>() {
            return Self::from(error);
        }
        let kind = if error.is::<Elapsed>() {
            "timeout"
        } else if error.is::<Open>() {
            "circuit_open"
        } else {
            "error"
        };
        Self {
            provider,
            error: kind,
            status: None,
            message: redact(&error.to_string()).into_owned(),
        }
    }
}

impl ApiError {
    /// An error with no retry hint and no attempts.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: redact(&message.into()).into_owned(),
            retry_after: None,
            attempts: Vec::new(),
            param: None,
        }
    }

    /// 400 for a parameter the gateway does not support: named, never dropped.
    pub fn unsupported(param: impl Into<String>, why: &str) -> Self {
        let param = param.into();
        let message = format!("`{param}` is not supported by this gateway: {why}");
        Self {
            param: Some(param),
            ..Self::invalid_request(message)
        }
    }

    /// The response in OpenAI's error shape: `{"error": {"message", "type", "code", "param"}}`.
    pub fn into_openai_response(self) -> Response {
        let kind = match self.status.as_u16() {
            400 | 408 | 413 | 415 => "invalid_request_error",
            401 => "authentication_error",
            402 => "insufficient_quota",
            404 => "not_found_error",
            429 => "rate_limit_error",
            _ => "api_error",
        };
        let body = serde_json::json!({"error": {
            "message": self.message, "type": kind, "code": self.kind, "param": self.param,
        }});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    /// The error type Anthropic's API gives a response of this status.
    pub fn anthropic_type(&self) -> &'static str {
        anthropic_type(self.status)
    }

    /// The response in Anthropic's error shape:
    /// `{"type": "error", "error": {"type", "message"}}`, the gateway's own
    /// type and the provider attempts alongside.
    pub fn into_anthropic_response(self) -> Response {
        let body = serde_json::json!({"type": "error", "error": {
            "type": self.anthropic_type(), "message": self.message, "code": self.kind,
            "attempts": (!self.attempts.is_empty()).then_some(&self.attempts),
        }});
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(AnthropicShaped);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
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

    /// 415: a chat route takes JSON only.
    pub fn not_json() -> Self {
        let message = "send the body as JSON, with `Content-Type: application/json`";
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }

    /// 408: the body did not arrive within `timeout`.
    pub fn body_timeout(timeout: Duration) -> Self {
        let message = format!("the request body did not arrive within {} ms", timeout.as_millis());
        Self::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }

    /// 503: the grace period of a shutdown is over.
    pub fn shutting_down() -> Self {
        let message = "the gateway is shutting down and its grace period is over: retry on another replica";
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
    }

    /// Any error the chat stack returns: the one place each becomes a status.
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        if let Some(retried) = error.downcast_ref::<Retried>() {
            let mut api = Self::from_error(&*retried.last);
            let earlier = retried.earlier.iter().map(Attempt::from);
            api.attempts.splice(0..0, earlier);
            return api;
        }
        if let Some(error) = error.downcast_ref::<ProviderError>() {
            return Self::from_provider(error);
        }
        let message = error.to_string();
        if let Some(all) = error.downcast_ref::<AllFailed>() {
            Self::all_failed(all, message)
        } else if error.is::<LedgerUnreachable>() {
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(Duration::from_secs(1))
        } else if error.is::<BudgetExceeded>() {
            Self::new(StatusCode::PAYMENT_REQUIRED, "budget_exceeded", message)
        } else if let Some(unpriced) = error.downcast_ref::<UnpricedModel>() {
            Self::unpriced(unpriced)
        } else if let Some(limited) = error.downcast_ref::<RateLimited>() {
            Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).retry_after(limited.retry_after)
        } else if let Some(open) = error.downcast_ref::<AllOpen>() {
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(open.retry_after)
        } else if let Some(open) = error.downcast_ref::<Open>() {
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(open.retry_after)
        } else if error.is::<Elapsed>() {
            Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
        } else {
            tracing::error!(error = %message, "unexpected error");
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
        }
    }

    /// 400 for a model the budget cannot price: what to do about it, by name.
    fn unpriced(unpriced: &UnpricedModel) -> Self {
        let message = format!(
            "model `{}` has no price, so the budget cannot bound what a call to {} would cost: \
             add it to LLM_PRICES_FILE, or set LLM_UNPRICED_MODELS=ceiling (charge the provider's dearest price) \
             or LLM_UNPRICED_MODELS=allow (serve it unbudgeted)",
            unpriced.model, unpriced.provider
        );
        Self {
            param: Some("model".into()),
            ..Self::new(StatusCode::BAD_REQUEST, "unpriced_model", message)
        }
    }

    /// 502 listing every attempt; 504 if every provider tried timed out; 400
    /// if none could serve what the request asks.
    fn all_failed(all: &AllFailed, message: String) -> Self {
        let attempts: Vec<_> = all
            .attempts
            .iter()
            .flat_map(|a| Attempt::all_of(a.provider, &*a.error))
            .collect();
        let timed_out = attempts.iter().all(|a| a.error == "timeout");
        let unsupported = all
            .attempts
            .iter()
            .find_map(|a| match a.error.downcast_ref::<ProviderError>() {
                Some(ProviderError {
                    kind: ErrorKind::Unsupported { param, .. },
                    ..
                }) => Some(param.clone()),
                _ => None,
            });
        if let Some(param) = unsupported.filter(|_| attempts.iter().all(|a| a.error == "unsupported")) {
            let message = format!("no provider can serve this request: {message}");
            return Self {
                attempts,
                param: Some(param),
                ..Self::invalid_request(message)
            };
        }
        let (status, kind) = if timed_out {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
        } else {
            (StatusCode::BAD_GATEWAY, "upstream_error")
        };
        Self {
            attempts,
            ..Self::new(status, kind, message)
        }
    }

    /// Tells the client to wait `wait`, in whole seconds rounded up.
    #[must_use]
    pub fn retry_after(mut self, wait: Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// A provider's failure.
    pub fn from_provider(error: &ProviderError) -> Self {
        if let ErrorKind::Unsupported { param, .. } = &error.kind {
            return Self {
                param: Some(param.clone()),
                attempts: vec![Attempt::from(error)],
                ..Self::invalid_request(error.to_string())
            };
        }
        if let ErrorKind::ContextLength(_) | ErrorKind::ContentPolicy(_) = &error.kind {
            // The provider's reason, with its own code: nothing to retry.
            return Self {
                attempts: vec![Attempt::from(error)],
                ..Self::new(StatusCode::BAD_REQUEST, error.kind_name(), error.to_string())
            };
        }
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
            param: self.param.as_deref(),
            attempts: &self.attempts,
        }
    }
}

/// The error type Anthropic's API gives a response of `status`, so its SDKs
/// raise the class they would.
pub fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 | 405 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The `error` object of a JSON error body or of a stream's error frame.
#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    /// The request parameter at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Attempt]>::is_empty")]
    attempts: &'a [Attempt],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: ErrorDetail<'a>,
        }
        let mut response = (self.status, Json(Body { error: self.detail() })).into_response();
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
        assert_eq!(ApiError::from_provider(&timeout).status, StatusCode::GATEWAY_TIMEOUT);
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
