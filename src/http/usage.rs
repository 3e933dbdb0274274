//! `GET /v1/usage`: spend, limits and what is left, today and this month.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrysalis_middleware::budget::WindowReport;
use serde_json::{json, Value};

use super::AppState;
use crate::error::ApiError;

pub(super) async fn usage(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    // The breakdown is a SQLite read: keep it off the async workers.
    let budget = state.budget.clone();
    let report = tokio::task::spawn_blocking(move || budget.report())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ledger_error", e.to_string()))?;
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
