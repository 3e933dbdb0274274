//! One log line per request: id, agent, provider, model, status, tokens, cost, duration.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::HeaderMap;
use chrysalis_services::redact::redact;
use chrysalis_services::Usage;
use tokio::time::Instant;

use crate::error::ApiError;

/// What is known of a request until its line is written.
pub(super) struct RequestLog {
    request_id: String,
    agent_id: Option<Arc<str>>,
    started: Instant,
    route: &'static str,
}

impl RequestLog {
    pub(super) fn start(headers: &HeaderMap, route: &'static str) -> Self {
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map_or(Cow::Borrowed("-"), field)
            .into_owned();
        Self {
            request_id,
            agent_id: None,
            started: Instant::now(),
            route,
        }
    }

    pub(super) fn agent(&mut self, agent_id: &Arc<str>) {
        self.agent_id = Some(agent_id.clone());
    }

    /// The span of the call through the chat stack: what layers log during
    /// it (a provider that failed over, an open circuit) carries the request id.
    pub(super) fn span(&self) -> tracing::Span {
        tracing::info_span!("request", request_id = %self.request_id, route = self.route, agent_id = %self.agent_id())
    }

    fn agent_id(&self) -> Cow<'_, str> {
        self.agent_id.as_deref().map_or(Cow::Borrowed("-"), field)
    }

    fn duration_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    pub(super) fn served(&self, provider: &str, model: &str, usage: Usage, cost_usd: f64) {
        tracing::info!(
            request_id = %self.request_id,
            route = self.route,
            agent_id = %self.agent_id(),
            provider,
            model = %field(model),
            status = 200,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            cost_usd,
            duration_ms = self.duration_ms(),
            "request served"
        );
    }

    /// A request that failed; `charged` is what a stream cut short was charged.
    pub(super) fn failed(&self, provider: Option<&str>, error: &ApiError, charged: Option<(Usage, f64)>) {
        let (usage, cost_usd) = charged.unwrap_or_default();
        tracing::info!(
            request_id = %self.request_id,
            route = self.route,
            agent_id = %self.agent_id(),
            provider = provider.unwrap_or("-"),
            status = error.status.as_u16(),
            error_type = error.kind,
            message = %field(&error.message),
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            cost_usd,
            duration_ms = self.duration_ms(),
            "request failed"
        );
    }

    /// A stream the client left; `charged` is what the text it was sent cost.
    pub(super) fn cancelled(&self, provider: &str, model: &str, charged: Option<(Usage, f64)>) {
        let (usage, cost_usd) = charged.unwrap_or_default();
        tracing::info!(
            request_id = %self.request_id,
            route = self.route,
            agent_id = %self.agent_id(),
            provider,
            model = %field(model),
            status = 499,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            cost_usd,
            duration_ms = self.duration_ms(),
            "client went away mid-stream"
        );
    }
}

/// Longest text a log field carries: a client chooses its agent id, request
/// id and model name, and a line must stay a line.
const MAX_FIELD_BYTES: usize = 256;

/// `text` as a log field: no secrets, at most [`MAX_FIELD_BYTES`] (cut on a
/// character boundary and marked with `…`).
fn field(text: &str) -> Cow<'_, str> {
    let text = if text.len() > MAX_FIELD_BYTES {
        let mut end = MAX_FIELD_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(format!("{}…", &text[..end]))
    } else {
        Cow::Borrowed(text)
    };
    match redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(clean) => Cow::Owned(clean),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_are_bounded_and_carry_no_key() {
        let long = "é".repeat(10_000);
        let cut = field(&long);
        assert!(cut.len() <= MAX_FIELD_BYTES + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(field("sk-proj-0123456789abcdef01234567"), "[redacted]");
        assert!(matches!(field("agent-7"), Cow::Borrowed("agent-7")));
    }
}
