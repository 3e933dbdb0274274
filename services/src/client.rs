//! The HTTP client every network provider shares, and what is common to their calls.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ErrorKind, ProviderError};
use crate::pricing::PriceTable;

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
    pub client: reqwest::Client,
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

    /// Sets the API key.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Shares `client` (one per process keeps connections pooled).
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Prices calls with `prices` (shared by all providers of a process).
    #[must_use]
    pub fn prices(mut self, prices: Arc<PriceTable>) -> Self {
        self.prices = prices;
        self
    }

    /// `path` under the base URL, parsed once (reqwest would parse a string on every call).
    pub(crate) fn endpoint(&self, path: &str) -> Endpoint {
        let url = format!("{}{path}", self.base_url);
        Endpoint(reqwest::Url::parse(&url).map_err(|e| format!("`{url}` is not a URL: {e}")))
    }

    pub(crate) fn model<'a>(&'a self, requested: &'a Option<String>) -> &'a str {
        requested.as_deref().unwrap_or(&self.default_model)
    }

    /// Sends `request`; a non-2xx answer becomes [`ErrorKind::Status`].
    pub(crate) async fn send(
        &self,
        provider: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::new(provider, send_error(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        let message = self.redact(&upstream_message(&body));
        Err(ProviderError::new(
            provider,
            ErrorKind::Status {
                status: status.as_u16(),
                message,
            },
        ))
    }

    /// Reads a whole JSON answer.
    pub(crate) async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        provider: &'static str,
        response: reqwest::Response,
    ) -> Result<T, ProviderError> {
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::cut(provider, describe(&e)))?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::new(provider, ErrorKind::Protocol(e.to_string())))
    }

    /// Removes the key, and anything shaped like one, from an upstream's words.
    pub(crate) fn redact(&self, message: &str) -> String {
        let mut clean = message
            .split(' ')
            .map(|word| if looks_like_key(word) { "[redacted]" } else { word })
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(key) = self.api_key.as_deref().filter(|k| !k.is_empty()) {
            clean = clean.replace(key, "[redacted]");
        }
        clean
    }
}

/// A provider's URL, or why its base URL is unusable.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint(Result<reqwest::Url, String>);

impl Endpoint {
    pub(crate) fn url(&self, provider: &'static str) -> Result<reqwest::Url, ProviderError> {
        self.0
            .clone()
            .map_err(|e| ProviderError::new(provider, ErrorKind::InvalidRequest(e)))
    }
}

/// The process's one HTTP client: pooled keep-alive connections to every upstream.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .expect("the TLS backend initialises")
}

fn looks_like_key(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
    word.starts_with("sk-") && word.len() > 8
}

fn send_error(error: &reqwest::Error) -> ErrorKind {
    if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Connect(describe(error))
    }
}

/// An error and its causes on one line, without the URL (it may carry credentials).
pub(crate) fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    if let Some(at) = text.find(" for url (") {
        text.truncate(at);
    }
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The message of an upstream error body: `{"error": {"message": ..}}`,
/// `{"error": ".."}`, or the start of whatever text it was.
fn upstream_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Object { message: String },
        Text(String),
    }
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorField,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: ErrorField::Object { message } | ErrorField::Text(message),
        }) => message,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(empty body)".to_owned()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_are_found_in_every_shape() {
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
        assert_eq!(upstream_message(openai), "Rate limit reached");
        assert_eq!(upstream_message(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(
            upstream_message(b"<html>502 Bad Gateway</html>"),
            "<html>502 Bad Gateway</html>"
        );
        assert_eq!(upstream_message(b""), "(empty body)");
    }

    #[test]
    fn keys_never_survive_redaction() {
        let config = ProviderConfig::new("http://x", "m").api_key("secret-key-123");
        let message = config.redact("Incorrect API key provided: sk-proj-abcdef123456. Or secret-key-123");
        assert!(!message.contains("sk-proj-abcdef123456"), "{message}");
        assert!(!message.contains("secret-key-123"), "{message}");
    }
}
