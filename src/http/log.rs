//! One log line per request: id, agent, provider, model, status, tokens, cost, duration.

use std::sync::Arc;

use axum::http::HeaderMap;
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
            .unwrap_or("-")
            .to_owned();
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

    fn agent_id(&self) -> &str {
        self.agent_id.as_deref().unwrap_or("-")
    }

    fn duration_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    pub(super) fn served(&self, provider: &str, model: &str, usage: Usage, cost_usd: f64) {
        tracing::info!(
            request_id = %self.request_id,
            route = self.route,
            agent_id = self.agent_id(),
            provider,
            model,
            status = 200,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            cost_usd,
            duration_ms = self.duration_ms(),
            "request served"
        );
    }

    pub(super) fn failed(&self, provider: Option<&str>, error: &ApiError) {
        tracing::info!(
            request_id = %self.request_id,
            route = self.route,
            agent_id = self.agent_id(),
            provider = provider.unwrap_or("-"),
            status = error.status.as_u16(),
            error_type = error.kind,
            message = %error.message,
            duration_ms = self.duration_ms(),
            "request failed"
        );
    }

    pub(super) fn cancelled(&self, provider: &str, model: &str) {
        tracing::info!(
            request_id = %self.request_id,
            route = self.route,
            agent_id = self.agent_id(),
            provider,
            model,
            status = 499,
            duration_ms = self.duration_ms(),
            "client went away mid-stream"
        );
    }
}
