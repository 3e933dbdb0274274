//! The axum edge: routes, and nothing of LLM logic (that is the chat stack's).

pub mod anthropic_errors;
mod chat;
mod frame;
mod frame_stream;
pub mod head_limits;
mod log;
mod messages;
mod messages_request;
mod messages_sse;
mod names;
mod openai;
mod openai_sse;
mod params;
mod responses;
mod responses_request;
mod responses_sse;
mod sse;
mod status;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use std::sync::Arc;
use std::time::Duration;

use chrysalis_middleware::inflight::InFlightLimitLayer;
use chrysalis_services::anthropic::Anthropic;

use crate::error::ApiError;
use crate::responses_store::ResponseStore;
use crate::stack::{ChatService, Status};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The chat stack.
    pub chat: ChatService,
    /// What the read-only routes show.
    pub status: Arc<Status>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
    /// Anthropic, when it is the primary: it counts `count_tokens`' tokens.
    pub token_counter: Option<Anthropic>,
    /// Responses kept for `previous_response_id`.
    pub responses: Arc<ResponseStore>,
}

/// The routes. Only the chat routes count against `inflight`: health checks,
/// scrapes and status reads must answer most of all when the gateway is busy.
pub fn router(state: AppState, inflight: InFlightLimitLayer) -> Router {
    let chat = Router::new()
        .route("/v1/chat", post(chat::complete))
        .route("/v1/chat/stream", post(chat::stream))
        .route("/v1/chat/completions", post(openai::completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/responses", post(responses::responses))
        .route_layer(inflight);
    Router::new()
        .merge(chat)
        .route("/healthz", get(healthz))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/models", get(openai::models))
        .route("/v1/usage", get(status::usage))
        .route("/v1/providers", get(status::providers))
        .route("/metrics", get(status::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
