//! The one error type of every provider.

use std::time::Duration;

use thiserror::Error;

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{provider}: {kind}")]
pub struct ProviderError {
    /// The provider that failed.
    pub provider: &'static str,
    /// How it failed.
    pub kind: ErrorKind,
    /// How long the upstream asked to wait before trying again (its
    /// `Retry-After`), if it said.
    pub retry_after: Option<Duration>,
}

/// How a provider call failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ErrorKind {
    /// The upstream could not be reached.
    #[error("could not reach the upstream: {0}")]
    Connect(String),
    /// The upstream did not answer in time.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The upstream answered with an HTTP error status.
    #[error("the upstream answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The upstream's own message, with secrets removed.
        message: String,
    },
    /// The upstream reported an error inside a stream.
    #[error("the upstream reported an error: {0}")]
    Upstream(String),
    /// The upstream's answer could not be understood.
    #[error("the upstream's answer could not be read: {0}")]
    Protocol(String),
    /// A stream stopped before its end marker.
    #[error("the stream was cut short: {0}")]
    Cut(String),
    /// The request cannot be sent to this provider as it is.
    #[error("{0}")]
    InvalidRequest(String),
    /// The prompt (with the output cap) is past the model's context window,
    /// in the upstream's words. A model with a larger window may take it.
    #[error("the prompt is longer than the model's context window: {0}")]
    ContextLength(String),
    /// The upstream's content policy refused the request, in its words.
    #[error("the upstream's content policy refused the request: {0}")]
    ContentPolicy(String),
    /// The request asks for something this provider cannot do; another
    /// provider may. Nothing was sent.
    #[error("`{param}` is not supported by this provider: {why}")]
    Unsupported {
        /// The request parameter (`response_format`, `seed`, ...).
        param: String,
        /// Why, or what it can do instead.
        why: String,
    },
}

impl ProviderError {
    /// An error of `kind` from `provider`, its text passed through
    /// [`redact`](crate::redact::redact): upstream words (error bodies, stream
    /// error events, transport errors) may quote a key.
    pub fn new(provider: &'static str, kind: ErrorKind) -> Self {
        Self {
            provider,
            kind: kind.redacted(),
            retry_after: None,
        }
    }

    /// The error, with how long the upstream asked to wait.
    #[must_use]
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// `param` of the request, which `provider` cannot serve.
    pub fn unsupported(provider: &'static str, param: impl Into<String>, why: impl Into<String>) -> Self {
        let (param, why) = (param.into(), why.into());
        Self::new(provider, ErrorKind::Unsupported { param, why })
    }

    /// The prompt is past the model's context window.
    pub fn is_context_length(&self) -> bool {
        matches!(self.kind, ErrorKind::ContextLength(_))
    }

    /// The request asks for what this provider cannot do (another may).
    pub fn is_unsupported(&self) -> bool {
        matches!(self.kind, ErrorKind::Unsupported { .. })
    }

    /// A stream of `provider` that ended before its end marker.
    pub fn cut(provider: &'static str, detail: impl Into<String>) -> Self {
        Self::new(provider, ErrorKind::Cut(detail.into()))
    }

    /// A short, stable name of the failure: `connect`, `timeout`, `status`,
    /// `upstream`, `protocol`, `cut`, `invalid_request`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ErrorKind::Connect(_) => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status { .. } => "status",
            ErrorKind::Upstream(_) => "upstream",
            ErrorKind::Protocol(_) => "protocol",
            ErrorKind::Cut(_) => "cut",
            ErrorKind::InvalidRequest(_) => "invalid_request",
            ErrorKind::ContextLength(_) => "context_length_exceeded",
            ErrorKind::ContentPolicy(_) => "content_policy_violation",
            ErrorKind::Unsupported { .. } => "unsupported",
        }
    }

    /// The upstream's HTTP status, when it answered with one.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The request itself is at fault: another provider would refuse it too,
    /// and it says nothing about this provider's health.
    pub fn is_client_error(&self) -> bool {
        match self.kind {
            ErrorKind::InvalidRequest(_) | ErrorKind::ContextLength(_) | ErrorKind::ContentPolicy(_) => true,
            // 401/403 mean our key is wrong and 408/429 mean the upstream is
            // busy: faults of the provider, not of the caller.
            ErrorKind::Status { status, .. } => matches!(status, 400 | 404 | 413 | 422),
            _ => false,
        }
    }

    /// Trying another provider (or this one later) may succeed.
    pub fn retryable(&self) -> bool {
        !self.is_client_error()
    }
}

impl ErrorKind {
    fn redacted(self) -> Self {
        let clean = |text: String| match crate::redact::redact(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(clean) => clean,
        };
        match self {
            Self::Connect(text) => Self::Connect(clean(text)),
            Self::Status { status, message } => Self::Status {
                status,
                message: clean(message),
            },
            Self::Upstream(text) => Self::Upstream(clean(text)),
            Self::Protocol(text) => Self::Protocol(clean(text)),
            Self::Cut(text) => Self::Cut(clean(text)),
            Self::InvalidRequest(text) => Self::InvalidRequest(clean(text)),
            Self::ContextLength(text) => Self::ContextLength(clean(text)),
            Self::ContentPolicy(text) => Self::ContentPolicy(clean(text)),
            Self::Unsupported { param, why } => Self::Unsupported { param, why },
            Self::Timeout => Self::Timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> ProviderError {
        ProviderError::new(
            "openai",
            ErrorKind::Status {
                status,
                message: String::new(),
            },
        )
    }

    #[test]
    fn provider_faults_are_retryable_and_bad_requests_are_not() {
        for code in [401, 403, 408, 429, 500, 502, 503, 529] {
            assert!(status(code).retryable(), "{code}");
        }
        for code in [400, 404, 413, 422] {
            assert!(!status(code).retryable(), "{code}");
        }
        assert!(ProviderError::cut("openai", "eof").retryable());
        assert!(ProviderError::new("openai", ErrorKind::Timeout).retryable());
    }

    #[test]
    fn no_kind_of_error_carries_a_key() {
        let key = "sk-proj-Zy0xW9vU8tS7rQ6pO5nM4lK3jI2hG1fE";
        let said = || format!("Incorrect API key provided: {key}.");
        for kind in [
            ErrorKind::Connect(said()),
            ErrorKind::Status {
                status: 401,
                message: said(),
            },
            ErrorKind::Upstream(said()),
            ErrorKind::Protocol(said()),
            ErrorKind::Cut(said()),
            ErrorKind::InvalidRequest(said()),
        ] {
            let error = ProviderError::new("openai", kind);
            assert!(!error.to_string().contains(key), "{error}");
            assert!(error.to_string().contains("[redacted]"), "{error}");
        }
    }
}
