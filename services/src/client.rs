//! The HTTP client every network provider shares, and what is common to their calls.

use std::error::Error as StdError;
use std::sync::Arc;

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;

use crate::error::{ErrorKind, ProviderError};
use crate::pricing::PriceTable;
use crate::upstream::{http_client, read_body, read_error_body, HttpClient};

/// Where a network provider lives and how it is called.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The API base, without a trailing slash (`https://api.openai.com/v1`).
    pub base_url: String,
    /// The API key, if the provider needs one.
    pub api_key: Option<String>,
    /// The model used when a request names none.
    pub default_model: String,
    /// The process's shared HTTP client.
    pub client: HttpClient,
    /// What this provider's models cost.
    pub prices: Arc<PriceTable>,
}

impl std::fmt::Debug for ProviderConfig {
    // The key never reaches a log line, even at debug level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("default_model", &self.default_model)
            .finish()
    }
}

impl ProviderConfig {
    /// A provider at `base_url` serving `default_model` by default.
    pub fn new(base_url: impl Into<String>, default_model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: None,
            default_model: default_model.into(),
            client: http_client(),
            prices: Arc::new(PriceTable::builtin()),
        }
    }

    /// Sets the API key, and registers it with [`redact`](crate::redact) so
    /// that no error or log line ever shows it.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        crate::redact::register_secret(&key);
        self.api_key = Some(key);
        self
    }

    /// Shares `client` (one per process keeps connections pooled).
    #[must_use]
    pub fn client(mut self, client: HttpClient) -> Self {
        self.client = client;
        self
    }

    /// Prices calls with `prices` (shared by all providers of a process).
    #[must_use]
    pub fn prices(mut self, prices: Arc<PriceTable>) -> Self {
        self.prices = prices;
        self
    }

    /// `path` under the base URL, parsed once.
    pub(crate) fn endpoint(&self, path: &str) -> Endpoint {
        let url = format!("{}{path}", self.base_url);
        let parsed = reqwest::Url::parse(&url).map_err(|e| e.to_string()).and_then(|parsed| {
            match (parsed.scheme(), parsed.host_str()) {
                ("http" | "https", Some(_)) => Ok(parsed),
                _ => Err("an http:// or https:// URL with a host is needed".to_owned()),
            }
        });
        Endpoint(parsed.map_err(|e| format!("`{url}` is not a URL: {e}")))
    }

    /// The headers of a JSON POST; [`send`](Self::send) adds the URL and body.
    pub(crate) fn post(&self) -> http::request::Builder {
        http::Request::post("/").header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
    }

    /// `key` as a header value that logs and debug output never show.
    pub(crate) fn secret_header(&self, provider: &'static str, value: String) -> Result<HeaderValue, ProviderError> {
        let mut value = HeaderValue::try_from(value).map_err(|_| {
            ProviderError::new(
                provider,
                ErrorKind::InvalidRequest("the API key is not a valid header".into()),
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Adds `Authorization: Bearer <key>` when there is a key.
    pub(crate) fn bearer(
        &self,
        provider: &'static str,
        request: http::request::Builder,
    ) -> Result<http::request::Builder, ProviderError> {
        Ok(match &self.api_key {
            Some(key) => request.header(AUTHORIZATION, self.secret_header(provider, format!("Bearer {key}"))?),
            None => request,
        })
    }

    pub(crate) fn model<'a>(&'a self, requested: &'a Option<String>) -> &'a str {
        requested.as_deref().unwrap_or(&self.default_model)
    }

    /// POSTs `body` to `endpoint` with the headers of `request`; a non-2xx
    /// answer becomes [`ErrorKind::Status`].
    pub(crate) async fn send(
        &self,
        provider: &'static str,
        endpoint: &Endpoint,
        request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ProviderError> {
        let invalid = |e: String| ProviderError::new(provider, ErrorKind::InvalidRequest(e));
        let headers = request
            .body(())
            .map_err(|e| invalid(e.to_string()))?
            .into_parts()
            .0
            .headers;
        let mut upstream = reqwest::Request::new(reqwest::Method::POST, endpoint.url(provider)?);
        *upstream.headers_mut() = headers;
        *upstream.body_mut() = Some(body.into());
        let response = self
            .client
            .send(upstream)
            .await
            .map_err(|kind| ProviderError::new(provider, kind))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let wait = retry_after(response.headers(), std::time::SystemTime::now());
        let body = read_error_body(response).await;
        let (message, code) = upstream_message(&body);
        let kind = refusal(status.as_u16(), code.as_deref(), &message).unwrap_or(ErrorKind::Status {
            status: status.as_u16(),
            message,
        });
        Err(ProviderError::new(provider, kind).with_retry_after(wait))
    }

    /// Reads a whole JSON answer.
    pub(crate) async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        provider: &'static str,
        response: reqwest::Response,
    ) -> Result<T, ProviderError> {
        let body = read_body(response).await.map_err(|e| ProviderError::cut(provider, e))?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::new(provider, ErrorKind::Protocol(e.to_string())))
    }
}

/// A provider's URL, or why its base URL is unusable.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint(Result<reqwest::Url, String>);

impl Endpoint {
    fn url(&self, provider: &'static str) -> Result<reqwest::Url, ProviderError> {
        self.0
            .clone()
            .map_err(|e| ProviderError::new(provider, ErrorKind::InvalidRequest(e)))
    }
}

/// How long an upstream asks to wait: OpenAI's `retry-after-ms`, else
/// `Retry-After` in seconds or as an HTTP date (from `now`).
fn retry_after(headers: &http::HeaderMap, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| std::time::Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    match value.parse::<u64>() {
        Ok(seconds) => Some(std::time::Duration::from_secs(seconds)),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            Some(at.duration_since(now).unwrap_or_default())
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A 400 that no retry or other provider with the same model would take:
/// a prompt past the context window (OpenAI's `context_length_exceeded`,
/// Anthropic's "prompt is too long", the words Ollama and OpenRouter use),
/// or a content-policy refusal.
fn refusal(status: u16, code: Option<&str>, message: &str) -> Option<ErrorKind> {
    if !matches!(status, 400 | 413 | 422) {
        return None;
    }
    let lower = message.to_ascii_lowercase();
    let said = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
    let context = matches!(code, Some("context_length_exceeded" | "string_above_max_length"))
        || said(&[
            "context length",
            "context window",
            "maximum context",
            "prompt is too long",
            "too many tokens",
        ]);
    if context {
        return Some(ErrorKind::ContextLength(message.to_owned()));
    }
    let policy = matches!(code, Some("content_policy_violation" | "content_filter"))
        || said(&["content policy", "content management policy", "safety system"]);
    policy.then(|| ErrorKind::ContentPolicy(message.to_owned()))
}

/// The message of an upstream error body (`{"error": {"message": .., "code": ..}}`,
/// `{"error": ".."}`, or the start of whatever text it was) and its code, if any.
fn upstream_message(body: &[u8]) -> (String, Option<String>) {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Text(String),
        Number(i64),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Object { message: String, code: Option<Code> },
        Text(String),
    }
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorField,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: ErrorField::Object { message, code },
        }) => {
            let code = code.map(|c| match c {
                Code::Text(text) => text,
                Code::Number(n) => n.to_string(),
            });
            (message, code)
        }
        Ok(Envelope {
            error: ErrorField::Text(message),
        }) => (message, None),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let text = if text.is_empty() {
                "(empty body)".to_owned()
            } else {
                text.chars().take(200).collect()
            };
            (text, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_are_found_in_every_shape() {
        let message = |body: &[u8]| upstream_message(body).0;
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
        assert_eq!(message(openai), "Rate limit reached");
        assert_eq!(message(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(message(b"<html>502 Bad Gateway</html>"), "<html>502 Bad Gateway</html>");
        assert_eq!(message(b""), "(empty body)");
        let coded =
            br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(upstream_message(coded).1.as_deref(), Some("context_length_exceeded"));
    }

    #[test]
    fn context_length_and_content_policy_400s_are_told_apart_from_other_400s() {
        let kind = |status, code, message| refusal(status, code, message);
        let openai =
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.";
        assert!(matches!(
            kind(400, Some("context_length_exceeded"), openai),
            Some(ErrorKind::ContextLength(_))
        ));
        let anthropic = "prompt is too long: 210000 tokens > 200000 maximum";
        assert!(matches!(kind(400, None, anthropic), Some(ErrorKind::ContextLength(_))));
        let ollama = "input length exceeds the context length";
        assert!(matches!(kind(400, None, ollama), Some(ErrorKind::ContextLength(_))));
        let policy = "Your request was rejected as a result of our safety system.";
        assert!(matches!(
            kind(400, Some("content_policy_violation"), policy),
            Some(ErrorKind::ContentPolicy(_))
        ));
        assert_eq!(kind(400, None, "`temperature` must be at most 2"), None);
        assert_eq!(kind(500, None, anthropic), None, "only a refusal of the request");
    }

    #[test]
    fn retry_after_is_read_in_milliseconds_seconds_or_as_a_date() {
        use std::time::{Duration, SystemTime};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let wait = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = http::HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            retry_after(&headers, now)
        };
        assert_eq!(wait(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
        assert_eq!(
            wait(&[("retry-after-ms", "1500"), ("retry-after", "7")]),
            Some(Duration::from_millis(1500))
        );
        // RFC 9110's example date, 30 s after `now`.
        assert_eq!(
            wait(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            wait(&[("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT")]),
            Some(Duration::ZERO)
        );
        assert_eq!(wait(&[("retry-after", "soon")]), None);
        assert_eq!(wait(&[]), None);
    }
}
