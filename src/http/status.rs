//! The read-only routes: `/metrics`, `/v1/providers`, `/v1/usage`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrysalis_middleware::budget::WindowReport;
use chrysalis_middleware::circuit_breaker::CircuitState;
use serde_json::{json, Value};

use super::AppState;
use crate::error::ApiError;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`: Prometheus text exposition.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut text, &state.status.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()).into_response(),
    }
}

/// `GET /v1/providers`: each provider's role, model, counts, circuit and latency.
pub(super) async fn providers(State(state): State<AppState>) -> Json<Value> {
    let failovers = state.status.failover.stats();
    let providers: Vec<Value> = state
        .status
        .providers
        .iter()
        .zip(failovers)
        .map(|(provider, failover)| {
            let stats = provider.stats.snapshot();
            let (circuit, retry_at) = match provider.circuit.state() {
                CircuitState::Open { retry_at } => ("open", Some(wall_clock(retry_at))),
                other => (other.name(), None),
            };
            json!({
                "name": provider.name,
                "role": provider.role,
                "model": provider.model,
                "calls": stats.calls,
                "failures": stats.failures,
                "failovers_from": failover.failovers_from,
                "failovers_to": failover.failovers_to,
                "circuit": circuit,
                "circuit_retry_at": retry_at,
                "latency_ms": {"p50": stats.p50_ms, "p99": stats.p99_ms},
                "deadlines_ms": {
                    "connect": provider.deadlines.connect.as_millis() as u64,
                    "first_token": provider.deadlines.first_token.as_millis() as u64,
                    "stall": provider.deadlines.stall.as_millis() as u64,
                },
                "retries": {
                    "max": provider.max_retries,
                    "made": provider.retries.retries().map(|(_, n)| n).sum::<u64>(),
                },
            })
        })
        .collect();
    Json(json!({ "providers": providers }))
}

/// A (future) instant of tokio's clock as RFC 3339 wall time, rounded up to the second.
fn wall_clock(at: tokio::time::Instant) -> String {
    let wall = SystemTime::now() + at.saturating_duration_since(tokio::time::Instant::now());
    let since = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let unix = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    chrysalis_middleware::budget::rfc3339(unix as i64)
}

/// `GET /v1/usage`: spend, limits and what is left, today and this month.
pub(super) async fn usage(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    // The breakdown is a ledger read (SQLite, or a wait for PostgreSQL): keep it off the async workers.
    let status = state.status.clone();
    let report = tokio::task::spawn_blocking(move || status.budget.report())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?;
    let report = report.map_err(|e| match state.status.budget.shared_store_up() {
        Some(false) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ledger_error", e.to_string()),
    })?;
    Ok(Json(
        json!({"day": window(&report.day), "month": window(&report.month)}),
    ))
}

fn window(report: &WindowReport) -> Value {
    json!({
        "start": report.start,
        "limit_usd": report.limit_usd,
        "spent_usd": report.spent_usd,
        "reserved_usd": report.reserved_usd,
        "remaining_usd": report.remaining_usd,
        "by_agent": report.by_agent,
        "by_model": report.by_model,
    })
}
