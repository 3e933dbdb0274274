//! The whole request path, outer to inner, in one place.
//!
//! ```text
//! HTTP:  request id -> CORS -> Anthropic error shape -> head limits -> auth -> axum router
//!          -> chat routes: in-flight cap -> JSON body (type, time, size) -> handler
//! chat:  metrics -> rate limit -> budget -> failover
//!          -> [ per provider: metrics -> circuit breaker -> timeout -> retry -> provider ]
//! ```
//!
//! The request-level metrics layer sits outermost (DESIGN.md puts it after
//! the budget) so that it counts rate-limited and budget-refused requests
//! and measures the whole of the gateway's own overhead.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderName, Method};
use axum::Router;
use chrysalis_middleware::auth::BearerAuthLayer;
use chrysalis_middleware::budget::{
    BudgetConfig, BudgetHandle, BudgetLayer, Durability, PostgresConfig, PostgresLedger, Route, SqliteLedger,
};
use chrysalis_middleware::circuit_breaker::{CircuitBreakerLayer, CircuitHandle};
use chrysalis_middleware::failover::{CutCost, Failover, Resume, Target};
use chrysalis_middleware::inflight::InFlightLimitLayer;
use chrysalis_middleware::metrics::{Metrics, ProviderMetricsLayer, ProviderStats, RequestMetricsLayer};
use chrysalis_middleware::rate_limit::RateLimitLayer;
use chrysalis_middleware::retry::{RetryHandle, RetryLayer};
use chrysalis_middleware::timeout::TimeoutLayer;
use chrysalis_services::anthropic::Anthropic;
use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{ChatRequest, ChatResponse};
use prometheus_client::registry::Registry;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::collector::StatusCollector;
use crate::config::{Config, ConfigError, DbSync, Deadlines, Origins, RateKey, StreamResume, UnpricedModels};
use crate::http::anthropic_errors::AnthropicErrorsLayer;
use crate::http::head_limits::HeadLimitLayer;
use crate::http::{self, AppState};
use crate::providers::{self, Provider};
use crate::responses_store::{self, ResponseStore};

/// A chat service with its type erased: what every stage of the stack is boxed as.
pub type ChatService = BoxCloneSyncService<ChatRequest, ChatResponse, BoxError>;

/// The chat path, and handles on the state its layers keep.
pub struct Chat {
    /// The composed chat service.
    pub service: ChatService,
    /// What `/metrics`, `/v1/providers` and `/v1/usage` read.
    pub status: Arc<Status>,
    /// The primary provider, when it is Anthropic: it counts tokens for
    /// `/v1/messages/count_tokens`.
    pub token_counter: Option<Anthropic>,
}

/// The state the layers keep, for the read-only routes.
pub struct Status {
    /// Every metric family, and the scrape-time collector.
    pub registry: Registry,
    /// Each provider, in failover order.
    pub providers: Vec<ProviderHandle>,
    /// Failover counts per provider.
    pub failover: Failover<ChatService>,
    /// Spend and limits.
    pub budget: BudgetHandle,
}

/// One provider's handles.
#[derive(Clone)]
pub struct ProviderHandle {
    /// Its name.
    pub name: &'static str,
    /// `primary` or `fallback`.
    pub role: &'static str,
    /// The model it serves when a request does not pick one for it.
    pub model: String,
    /// Its circuit.
    pub circuit: CircuitHandle,
    /// Its retries.
    pub retries: RetryHandle,
    /// Its deadlines.
    pub deadlines: Deadlines,
    /// Retries a call may make on it.
    pub max_retries: u32,
    /// Its calls, failures and latency.
    pub stats: Arc<ProviderStats>,
}

/// The gateway's HTTP application.
pub fn app(config: &Config) -> Result<Router, ConfigError> {
    let chat = chat(config)?;
    let state = AppState {
        chat: chat.service,
        status: chat.status,
        token_counter: chat.token_counter,
        responses: Arc::new(responses(config)?),
        max_body_bytes: config.gateway_max_body_bytes,
        body_timeout: config.body_timeout(),
    };
    let auth = config
        .auth_tokens()
        .map(|tokens| BearerAuthLayer::new(tokens).expect("empty tokens are dropped when parsed"));
    let edge = ServiceBuilder::new()
        // Every request gets an id (or keeps the caller's), logged and echoed back.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        // Browsers: preflights answered here, before auth; every answer readable.
        .layer(cors(config))
        // What the layers below refuse on /v1/messages... is said in Anthropic's shape.
        .layer(AnthropicErrorsLayer)
        // An oversized URI or head gets a JSON 414 or 431 before any other work.
        .layer(HeadLimitLayer)
        // /v1/* needs a bearer token (or x-api-key); /healthz and /metrics stay open.
        .option_layer(auth);
    // Chat overload is answered 503 at once; a stream holds its place until it ends.
    let inflight = InFlightLimitLayer::new(config.gateway_max_inflight);
    // Body type, size and time limits apply where bodies are read (`http::chat`), so they answer in JSON.
    Ok(http::router(state, inflight).layer(edge))
}

/// The store of Responses API conversations, beside the ledger.
fn responses(config: &Config) -> Result<ResponseStore, ConfigError> {
    let path = responses_store::path_beside(&config.gateway_db);
    let ttl = Duration::from_secs(config.gateway_responses_ttl_hours.saturating_mul(3600));
    let max_bytes = config.gateway_responses_max_mb.saturating_mul(1 << 20);
    ResponseStore::open(&path, ttl, max_bytes).map_err(|e| ConfigError {
        variable: "GATEWAY_DB",
        problem: format!("cannot open the responses store {}: {e}", path.display()),
    })
}

fn cors(config: &Config) -> CorsLayer {
    let origins = match &config.cors_allowed_origins {
        Origins::Any => AllowOrigin::any(),
        Origins::List(origins) => AllowOrigin::list(origins.iter().cloned()),
    };
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        // Whatever headers a page's preflight names: the SDKs send their own
        // (`x-api-key`, `anthropic-version`, `x-stainless-*`, ...), and which
        // origins may call is what protects the gateway, with its token.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header("x-request-id"),
            RETRY_AFTER,
            header("x-gateway-cost-usd"),
            header("x-ratelimit-limit-requests"),
            header("x-ratelimit-remaining-requests"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The chat path, outer to inner.
pub fn chat(config: &Config) -> Result<Chat, ConfigError> {
    let prices = Arc::new(prices(config)?);
    let providers = providers::build(config, &prices)?;
    let token_counter = providers.first().and_then(|p| p.anthropic.clone());
    let budget = budget(config, &providers, prices.clone())?;
    let mut registry = Registry::default();
    let known_models = prices.models().chain(providers.iter().map(|p| p.model.as_str()));
    let metrics = Metrics::register(&mut registry, known_models);
    let mut handles = Vec::new();
    let targets = providers
        .into_iter()
        .enumerate()
        .map(|(index, provider)| {
            let breaker = CircuitBreakerLayer::builder(provider.name)
                .failure_threshold(config.circuit_failure_threshold)
                .reset_after(config.circuit_reset())
                .build();
            let measured = ProviderMetricsLayer::new(&metrics, provider.name);
            let retry = retry(config, provider.name);
            handles.push(ProviderHandle {
                name: provider.name,
                role: if index == 0 { "primary" } else { "fallback" },
                model: provider.model.clone(),
                circuit: breaker.handle(),
                retries: retry.handle(),
                deadlines: config.deadlines(),
                max_retries: config.llm_retries,
                stats: measured.stats(),
            });
            target(index, provider, measured, breaker, retry, config)
        })
        .collect();
    let mut failover = Failover::new(targets).context_windows(prices.clone());
    if config.llm_stream_resume == StreamResume::Prefill {
        let charges = budget.handle();
        let cut_cost: CutCost = Arc::new(move |provider, model, usage| charges.cut_cost(provider, model, usage));
        failover = failover.resume(Resume::prefill(PREFILL_PROVIDERS, cut_cost));
    }
    let rate_limit = rate_limit(config)?;
    let budget_handle = budget.handle();
    let service = ServiceBuilder::new()
        // Outermost, so rejections, in-flight requests and overhead are all seen.
        .layer(RequestMetricsLayer::new(&metrics))
        // Refuse excess first, before anything is spent on it.
        .layer(rate_limit.clone())
        // Reserve the most a call may cost; settle what it did cost, durably.
        .layer(budget)
        // Try providers in order; a stream only until its first chunk.
        .service(failover.clone());
    let collector = StatusCollector {
        rate_limit,
        providers: handles.clone(),
        failover: failover.clone(),
        budget: budget_handle.clone(),
        prices,
    };
    registry.register_collector(Box::new(collector));
    let status = Status {
        registry,
        providers: handles,
        failover,
        budget: budget_handle,
    };
    Ok(Chat {
        service: BoxCloneSyncService::new(service),
        status: Arc::new(status),
        token_counter,
    })
}

fn prices(config: &Config) -> Result<PriceTable, ConfigError> {
    let mut prices = PriceTable::builtin();
    prices.set_unpriced(config.llm_unpriced_models.into());
    if let Some(path) = &config.llm_prices_file {
        let error = |problem: String| ConfigError {
            variable: "LLM_PRICES_FILE",
            problem,
        };
        let json = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
        let count = prices.load_json(&json).map_err(error)?;
        tracing::info!(count, file = %path.display(), "prices loaded");
    }
    Ok(prices)
}

fn route(provider: &Provider) -> Route {
    let route = if provider.local { Route::local } else { Route::paid };
    route(provider.name, provider.model.clone())
}

/// With unpriced models refused, a provider whose own model has no price
/// would refuse every call: say so at start-up instead.
fn check_priced(config: &Config, providers: &[Provider], prices: &PriceTable) -> Result<(), ConfigError> {
    if config.llm_unpriced_models != UnpricedModels::Refuse {
        return Ok(());
    }
    match providers.iter().find(|p| !p.local && prices.lookup(&p.model).is_none()) {
        None => Ok(()),
        Some(unpriced) => Err(ConfigError {
            variable: "LLM_PRICES_FILE",
            problem: format!(
                "model `{}` of provider {} has no price, so the budget cannot bound its calls: \
                 add it to LLM_PRICES_FILE, or set LLM_UNPRICED_MODELS=ceiling (charge the provider's dearest price) \
                 or =allow (serve it unbudgeted)",
                unpriced.model, unpriced.name
            ),
        }),
    }
}

fn budget(config: &Config, providers: &[Provider], prices: Arc<PriceTable>) -> Result<BudgetLayer, ConfigError> {
    check_priced(config, providers, &prices)?;
    let mut budget = BudgetConfig::new(config.llm_daily_budget_usd, config.llm_monthly_budget_usd, prices)
        .expect("limits were checked when the configuration was parsed");
    budget.routes = providers.iter().map(route).collect();
    budget.default_max_tokens = config.llm_budget_default_max_tokens;
    budget.resumable = config.llm_stream_resume == StreamResume::Prefill;
    if let Some(url) = &config.gateway_database_url {
        let ledger = PostgresLedger::connect(PostgresConfig {
            url: url.0.clone(),
            schema: config.gateway_database_schema.clone(),
            timeout: Duration::from_millis(config.gateway_store_timeout_ms),
            reservation_ttl: Duration::from_millis(config.gateway_reservation_ttl_ms),
            connections: 8,
            // The embedded ledger's file keeps what the shared one could not take yet.
            outbox: Some(config.gateway_db.clone()),
        })
        .map_err(|e| ConfigError {
            variable: "GATEWAY_DATABASE_URL",
            problem: e.to_string(),
        })?;
        return Ok(BudgetLayer::shared(budget, ledger));
    }
    let durability = match config.gateway_db_sync {
        DbSync::Normal => Durability::ProcessCrash,
        DbSync::Full => Durability::PowerLoss,
    };
    let ledger = SqliteLedger::open(&config.gateway_db, durability).map_err(|e| ConfigError {
        variable: "GATEWAY_DB",
        problem: e.to_string(),
    })?;
    BudgetLayer::new(budget, Arc::new(ledger)).map_err(|e| ConfigError {
        variable: "GATEWAY_DB",
        problem: e.to_string(),
    })
}

/// The providers whose APIs continue an assistant prefill: Anthropic's
/// Messages, OpenRouter (for the models that do), Ollama, the mock. OpenAI's
/// Chat Completions answers anew instead, so it is never asked to continue.
const PREFILL_PROVIDERS: [&str; 4] = ["anthropic", "openrouter", "ollama", "mock"];

/// One provider's own stack.
fn target(
    index: usize,
    provider: Provider,
    measured: ProviderMetricsLayer,
    breaker: CircuitBreakerLayer,
    retry: RetryLayer,
    config: &Config,
) -> Target<ChatService> {
    let deadlines = config.deadlines();
    let service = ServiceBuilder::new()
        // Each real call: its latency, tokens, cost and failure.
        .layer(measured)
        // A dead provider is skipped without a network call.
        .layer(breaker)
        // A silent or stalled upstream becomes a fault the breaker counts;
        // the first-token deadline bounds every try together.
        .layer(TimeoutLayer::new(deadlines.first_token, deadlines.stall))
        // What can succeed on a second try is tried again here, within that deadline.
        .layer(retry)
        .service(provider.service);
    let service = BoxCloneSyncService::new(service);
    let target = match index {
        0 => Target::primary(provider.name, service),
        _ => Target::fallback(provider.name, provider.pinned, service),
    };
    target.default_model(provider.model)
}

fn retry(config: &Config, provider: &'static str) -> RetryLayer {
    RetryLayer::builder(provider)
        .max_retries(config.llm_retries)
        .backoff(Duration::from_millis(config.llm_retry_backoff_ms))
        .deadline(config.deadlines().first_token)
        .build()
        .expect("the deadline is at least 1 ms and the budget is the default")
}

fn rate_limit(config: &Config) -> Result<RateLimitLayer, ConfigError> {
    let (rps, burst) = (config.gateway_rate_rps, config.gateway_rate_burst);
    let layer = match config.gateway_rate_key {
        RateKey::Global => RateLimitLayer::global(rps, burst),
        RateKey::Agent => RateLimitLayer::per_agent(rps, burst),
    }
    .expect("the rate was checked when the configuration was parsed");
    let Some(url) = &config.gateway_redis_url else {
        return Ok(layer);
    };
    let timeout = Duration::from_millis(config.gateway_store_timeout_ms);
    layer
        .shared(&url.0, &config.gateway_redis_prefix, timeout)
        .map_err(|e| ConfigError {
            variable: "GATEWAY_REDIS_URL",
            problem: e.to_string(),
        })
}
