//! Configuration: every setting an environment variable and a flag (the flag
//! wins), parsed once at start-up into typed values.

use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrysalis_services::{anthropic, mock, ollama, openai, openrouter};
use clap::{builder::BoolishValueParser, Parser, ValueEnum};

/// The gateway's configuration.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about = "Chrysalis: one gateway for every LLM call")]
pub struct Config {
    /// Bind address.
    #[arg(long, env = "GATEWAY_HOST", default_value = "0.0.0.0")]
    pub gateway_host: IpAddr,
    /// HTTP port.
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 8080)]
    pub gateway_port: u16,
    /// Primary provider.
    #[arg(long, env = "LLM_PROVIDER", value_enum, default_value_t = ProviderKind::Openai)]
    pub llm_provider: ProviderKind,
    /// Fallback providers, tried in order; an item may pin a model (`anthropic:claude-3-5-haiku-latest`).
    #[arg(long, env = "LLM_FALLBACKS", default_value = "")]
    pub llm_fallbacks: Fallbacks,
    /// Model the primary uses when a request names none (default: the provider's own).
    #[arg(long, env = "LLM_DEFAULT_MODEL")]
    pub llm_default_model: Option<String>,
    /// OpenAI API key.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,
    /// Anthropic API key.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<Secret>,
    /// OpenRouter API key.
    #[arg(long, env = "OPENROUTER_API_KEY", hide_env_values = true)]
    pub openrouter_api_key: Option<Secret>,
    /// OpenAI API base.
    #[arg(long, env = "OPENAI_BASE_URL", default_value = openai::DEFAULT_BASE_URL)]
    pub openai_base_url: BaseUrl,
    /// Anthropic API base.
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = anthropic::DEFAULT_BASE_URL)]
    pub anthropic_base_url: BaseUrl,
    /// OpenRouter API base.
    #[arg(long, env = "OPENROUTER_BASE_URL", default_value = openrouter::DEFAULT_BASE_URL)]
    pub openrouter_base_url: BaseUrl,
    /// Ollama base.
    #[arg(long, env = "OLLAMA_BASE_URL", default_value = ollama::DEFAULT_BASE_URL)]
    pub ollama_base_url: BaseUrl,
    /// Sent to OpenRouter as `HTTP-Referer` (app attribution).
    #[arg(long, env = "OPENROUTER_SITE_URL")]
    pub openrouter_site_url: Option<HeaderText>,
    /// Sent to OpenRouter as `X-Title` (app attribution).
    #[arg(long, env = "OPENROUTER_APP_NAME")]
    pub openrouter_app_name: Option<HeaderText>,
    /// PEM certificates to trust besides the platform's (a private CA in front of
    /// an upstream or a proxy). Proxies come from HTTPS_PROXY, HTTP_PROXY, NO_PROXY.
    #[arg(long, env = "LLM_CA_BUNDLE")]
    pub llm_ca_bundle: Option<PathBuf>,
    /// Upstream timeout in ms: the default of the first-token and stall timeouts not set.
    #[arg(long, env = "LLM_TIMEOUT_MS", default_value_t = 120_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_timeout_ms: u64,
    /// Connecting to an upstream, in ms (default 10000, at most LLM_TIMEOUT_MS).
    #[arg(long, env = "LLM_CONNECT_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_connect_timeout_ms: Option<u64>,
    /// Until the first chunk of text, or the whole answer, in ms (default LLM_TIMEOUT_MS); then the call fails over.
    #[arg(long, env = "LLM_FIRST_TOKEN_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_first_token_timeout_ms: Option<u64>,
    /// Between chunks once a stream flows, in ms (default LLM_TIMEOUT_MS).
    #[arg(long, env = "LLM_STALL_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_stall_timeout_ms: Option<u64>,
    /// A stream cut after text reached the client: `off` (its error frame) or `prefill` (the next
    /// provider that continues an assistant prefill finishes it; budgets reserve twice for it).
    #[arg(long, env = "LLM_STREAM_RESUME", value_enum, default_value_t = StreamResume::Off)]
    pub llm_stream_resume: StreamResume,
    /// Retries of a failed call on the same provider (connect errors, 429, 500, 502, 503), before failover.
    #[arg(long, env = "LLM_RETRIES", default_value_t = 1)]
    pub llm_retries: u32,
    /// Base of the exponential backoff between retries, in ms (full jitter).
    #[arg(long, env = "LLM_RETRY_BACKOFF_MS", default_value_t = 200)]
    pub llm_retry_backoff_ms: u64,
    /// Token bucket refill, requests a second.
    #[arg(long, env = "GATEWAY_RATE_RPS", default_value_t = 10.0, value_parser = positive)]
    pub gateway_rate_rps: f64,
    /// Token bucket size: requests admitted at once.
    #[arg(long, env = "GATEWAY_RATE_BURST", default_value = "20")]
    pub gateway_rate_burst: NonZeroU32,
    /// One bucket for everyone (`global`) or one per agent_id (`agent`).
    #[arg(long, env = "GATEWAY_RATE_KEY", value_enum, default_value_t = RateKey::Global)]
    pub gateway_rate_key: RateKey,
    /// Redis for rate-limit buckets shared by every replica (redis://...); unset: each replica its own.
    #[arg(long, env = "GATEWAY_REDIS_URL", hide_env_values = true)]
    pub gateway_redis_url: Option<Secret>,
    /// How long a stored Responses API response can be continued by `previous_response_id`, in hours.
    #[arg(long, env = "GATEWAY_RESPONSES_TTL_HOURS", default_value_t = 720)]
    pub gateway_responses_ttl_hours: u64,
    /// The most the stored responses may take, in MiB (the oldest go first).
    #[arg(long, env = "GATEWAY_RESPONSES_MAX_MB", default_value_t = 256)]
    pub gateway_responses_max_mb: u64,
    /// Prefix of the gateway's Redis keys, so several deployments can share one server.
    #[arg(long, env = "GATEWAY_REDIS_PREFIX", default_value = "chrysalis:")]
    pub gateway_redis_prefix: String,
    /// PostgreSQL for a spend ledger shared by every replica (postgres://...); unset: the SQLite ledger of GATEWAY_DB.
    #[arg(long, env = "GATEWAY_DATABASE_URL", hide_env_values = true)]
    pub gateway_database_url: Option<Secret>,
    /// The PostgreSQL schema of the shared ledger: replicas sharing a budget name the same one.
    #[arg(long, env = "GATEWAY_DATABASE_SCHEMA", default_value = "chrysalis", value_parser = schema_name)]
    pub gateway_database_schema: String,
    /// How long a shared reservation outlives its replica's last renewal, in ms: a dead replica's holds lapse after it; a live one renews every quarter of it (at most every 5 s).
    #[arg(long, env = "GATEWAY_RESERVATION_TTL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub gateway_reservation_ttl_ms: u64,
    /// How long a call to a shared store may take, in ms: past it, Redis rate limits fall back to the replica's bucket and PostgreSQL budgets refuse (503).
    #[arg(long, env = "GATEWAY_STORE_TIMEOUT_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub gateway_store_timeout_ms: u64,
    /// Consecutive provider faults that open its circuit.
    #[arg(long, env = "CIRCUIT_FAILURE_THRESHOLD", default_value = "3")]
    pub circuit_failure_threshold: NonZeroU32,
    /// How long an open circuit waits before one probe, in ms.
    #[arg(long, env = "CIRCUIT_RESET_TIME_MS", default_value_t = 60_000)]
    pub circuit_reset_time_ms: u64,
    /// USD that may be spent in a UTC day.
    #[arg(long, env = "LLM_DAILY_BUDGET_USD", default_value_t = 50.0, value_parser = non_negative)]
    pub llm_daily_budget_usd: f64,
    /// USD that may be spent in a UTC month.
    #[arg(long, env = "LLM_MONTHLY_BUDGET_USD", default_value_t = 500.0, value_parser = non_negative)]
    pub llm_monthly_budget_usd: f64,
    /// Output cap reserved against the budget for, and sent with, a call that sets no max_tokens.
    #[arg(long, env = "LLM_BUDGET_DEFAULT_MAX_TOKENS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub llm_budget_default_max_tokens: u32,
    /// A model with no price: `refuse` it (400), charge the provider's dearest price (`ceiling`), or serve it unbudgeted at $0 (`allow`).
    #[arg(long, env = "LLM_UNPRICED_MODELS", value_enum, default_value_t = UnpricedModels::Refuse)]
    pub llm_unpriced_models: UnpricedModels,
    /// JSON file of extra or overriding prices: {"model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}.
    #[arg(long, env = "LLM_PRICES_FILE")]
    pub llm_prices_file: Option<PathBuf>,
    /// The embedded spend ledger (SQLite); with GATEWAY_DATABASE_URL, the settles waiting for the shared one.
    #[arg(long, env = "GATEWAY_DB", default_value = "gateway.db")]
    pub gateway_db: PathBuf,
    /// `normal`: spend survives a crash or kill -9 of the process; `full`: power loss too (an fsync per commit).
    #[arg(long, env = "GATEWAY_DB_SYNC", value_enum, default_value_t = DbSync::Normal)]
    pub gateway_db_sync: DbSync,
    /// Mock provider: wait this long before every answer.
    #[arg(long, env = "MOCK_LATENCY_MS", default_value_t = 0)]
    pub mock_latency_ms: u64,
    /// Mock provider: fail every call with a 503.
    #[arg(long, env = "MOCK_FAIL", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub mock_fail: bool,
    /// Bearer tokens (comma-separated) every /v1/* request must carry one of; empty: no auth.
    #[arg(long, env = "GATEWAY_AUTH_TOKEN", hide_env_values = true)]
    pub gateway_auth_token: Option<Tokens>,
    /// Browser origins allowed by CORS, exact, comma-separated; `*` allows any.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        default_value = "http://localhost:3000,http://localhost:8080"
    )]
    pub cors_allowed_origins: Origins,
    /// Chat requests in flight at most (streams count until they end); past it, 503 at once.
    #[arg(long, env = "GATEWAY_MAX_INFLIGHT", default_value = "1024")]
    pub gateway_max_inflight: NonZeroUsize,
    /// How long a client may take to send a request's headers, and how long an
    /// idle keep-alive connection stays open, in ms.
    #[arg(long, env = "GATEWAY_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub gateway_header_timeout_ms: u64,
    /// How long a client may take to send a chat request's body, in ms; past it, 408.
    #[arg(long, env = "GATEWAY_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub gateway_body_timeout_ms: u64,
    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub gateway_max_body_bytes: usize,
    /// How long in-flight requests and streams may run on after SIGTERM/SIGINT.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub gateway_shutdown_grace_ms: u64,
    /// Worker threads, each with its own event loop; a connection stays on one (0: one per core).
    #[arg(long, env = "GATEWAY_WORKERS", default_value_t = 0)]
    pub gateway_workers: usize,
    /// Log lines as `text` or `json` (filter with RUST_LOG).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub gateway_log_format: LogFormat,
    /// Log lines waiting for stdout at most; past it, lines are dropped and a
    /// warning says how many.
    #[arg(long, env = "GATEWAY_LOG_BUFFER_LINES", default_value = "65536")]
    pub gateway_log_buffer_lines: NonZeroUsize,
}

/// How long an upstream call may take, step by step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// To connect.
    pub connect: Duration,
    /// Until the first chunk of text, or the whole answer.
    pub first_token: Duration,
    /// Between chunks, once a stream flows.
    pub stall: Duration,
}

/// A provider the gateway can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum ProviderKind {
    /// OpenAI's Chat Completions API.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenRouter (OpenAI's API, with cost accounting).
    Openrouter,
    /// A local Ollama.
    Ollama,
    /// The built-in mock: no network, no key.
    Mock,
}

impl ProviderKind {
    /// The provider's name in responses and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Openai => openai::NAME,
            Self::Anthropic => anthropic::NAME,
            Self::Openrouter => openrouter::NAME,
            Self::Ollama => ollama::NAME,
            Self::Mock => mock::NAME,
        }
    }

    /// The built-in default model.
    pub fn default_model(self) -> &'static str {
        match self {
            Self::Openai => openai::DEFAULT_MODEL,
            Self::Anthropic => anthropic::DEFAULT_MODEL,
            Self::Openrouter => openrouter::DEFAULT_MODEL,
            Self::Ollama => ollama::DEFAULT_MODEL,
            Self::Mock => mock::DEFAULT_MODEL,
        }
    }

    /// The variable that holds this provider's key, if it needs one.
    pub fn key_variable(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("OPENAI_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Openrouter => Some("OPENROUTER_API_KEY"),
            Self::Ollama | Self::Mock => None,
        }
    }
}

impl FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        <Self as ValueEnum>::from_str(s.trim(), true)
            .map_err(|_| format!("unknown provider `{s}` (expected openai, anthropic, openrouter, ollama or mock)"))
    }
}

/// One provider in the failover order, maybe with a pinned model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Which provider.
    pub kind: ProviderKind,
    /// The model it must use, if pinned.
    pub model: Option<String>,
}

/// The `LLM_FALLBACKS` list: `anthropic, openrouter:meta-llama/llama-3.3-70b-instruct`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fallbacks(pub Vec<ProviderSpec>);

impl FromStr for Fallbacks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let specs = s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                // Only the first colon splits: OpenRouter models may hold colons (`:free`).
                let (kind, model) = match item.split_once(':') {
                    Some((kind, model)) if !model.trim().is_empty() => (kind, Some(model.trim().to_owned())),
                    Some((kind, _)) => (kind, None),
                    None => (item, None),
                };
                Ok(ProviderSpec {
                    kind: kind.parse()?,
                    model,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self(specs))
    }
}

/// An `http://` or `https://` base URL with no credentials in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(pub String);

impl FromStr for BaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(format!("`{s}` must start with http:// or https://")),
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("put credentials in the API key variable, not in the URL".to_owned());
        }
        Ok(Self(s.trim_end_matches('/').to_owned()))
    }
}

/// A key or token: shown nowhere, not even in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_owned()))
    }
}

/// Auth tokens, comma-separated; shown nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens(pub Vec<String>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} redacted tokens>", self.0.len())
    }
}

impl FromStr for Tokens {
    type Err = String;

    /// A value that lists no token (`,`, spaces) is refused: taken as "no
    /// tokens", it would turn auth off while the operator meant it on.
    fn from_str(s: &str) -> Result<Self, String> {
        let tokens: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err("lists no token; leave it unset to serve without auth".into());
        }
        Ok(Self(tokens))
    }
}

/// CORS origins: exact origins, or any (`*`, only when set explicitly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Any origin.
    Any,
    /// These origins, exactly.
    List(Vec<http::HeaderValue>),
}

impl FromStr for Origins {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "*" {
            return Ok(Self::Any);
        }
        let origins = s.split(',').map(str::trim).filter(|o| !o.is_empty());
        let parsed = origins
            .map(|origin| match origin.parse::<http::Uri>() {
                Ok(uri) if uri.scheme().is_some() && uri.host().is_some() && uri.path() == "/" => {
                    http::HeaderValue::from_str(origin.trim_end_matches('/')).map_err(|e| e.to_string())
                }
                _ => Err(format!("`{origin}` is not an origin like https://app.example.com")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::List(parsed))
    }
}

/// Text that can be sent as an HTTP header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderText(pub String);

impl FromStr for HeaderText {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        http::HeaderValue::from_str(s)
            .map(|_| Self(s.to_owned()))
            .map_err(|_| "not a valid HTTP header value".to_owned())
    }
}

/// Whether a stream cut after its text reached the client is finished elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamResume {
    /// The client gets the cut stream's error frame.
    Off,
    /// The next provider that takes an assistant prefill continues the answer.
    Prefill,
}

/// What the rate limit's buckets are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateKey {
    /// One bucket for all requests.
    Global,
    /// One bucket per agent_id.
    Agent,
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a non-negative number")),
    }
}

fn schema_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    match valid {
        true => Ok(s.to_owned()),
        false => Err(format!(
            "`{s}` is not a schema name of lower-case letters, digits and _"
        )),
    }
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// What is done with a model the price table cannot price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnpricedModels {
    /// Refuse the call with a 400 naming the model: the budget cannot bound it.
    Refuse,
    /// Charge the dearest price known for the provider.
    Ceiling,
    /// Serve it at $0, outside every budget.
    Allow,
}

impl From<UnpricedModels> for chrysalis_services::pricing::Unpriced {
    fn from(policy: UnpricedModels) -> Self {
        match policy {
            UnpricedModels::Refuse => Self::Refuse,
            UnpricedModels::Ceiling => Self::Ceiling,
            UnpricedModels::Allow => Self::Allow,
        }
    }
}

/// How hard the ledger pushes each commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DbSync {
    /// Durable against a process crash (SQLite `synchronous=NORMAL` in WAL mode).
    Normal,
    /// Durable against power loss (`synchronous=FULL`).
    Full,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// A configuration that parses but cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads flags and environment; on a bad value, the one line that says what is wrong.
    pub fn load() -> Result<Self, String> {
        let config = match Self::try_parse() {
            Ok(config) => config,
            Err(e) if !e.use_stderr() => e.exit(),
            Err(e) => {
                let text = e.to_string();
                return Err(text.lines().next().unwrap_or("error: bad configuration").to_owned());
            }
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// The providers in failover order: the primary, then the fallbacks.
    pub fn providers(&self) -> impl Iterator<Item = ProviderSpec> + '_ {
        let primary = ProviderSpec {
            kind: self.llm_provider,
            model: self.llm_default_model.clone(),
        };
        std::iter::once(primary).chain(self.llm_fallbacks.0.iter().cloned())
    }

    /// The key of `kind`, if set and not empty.
    pub fn api_key(&self, kind: ProviderKind) -> Option<&str> {
        let key = match kind {
            ProviderKind::Openai => &self.openai_api_key,
            ProviderKind::Anthropic => &self.anthropic_api_key,
            ProviderKind::Openrouter => &self.openrouter_api_key,
            ProviderKind::Ollama | ProviderKind::Mock => &None,
        };
        key.as_ref().map(|k| k.0.as_str()).filter(|k| !k.trim().is_empty())
    }

    /// Checks what flags cannot: every configured provider has its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for spec in self.providers() {
            if let Some(variable) = spec.kind.key_variable() {
                if self.api_key(spec.kind).is_none() {
                    let problem = format!(
                        "not set, but provider {} is configured (LLM_PROVIDER / LLM_FALLBACKS)",
                        spec.kind.name()
                    );
                    return Err(ConfigError { variable, problem });
                }
            }
        }
        Ok(())
    }

    /// The deadlines of an upstream call.
    pub fn deadlines(&self) -> Deadlines {
        let or_default = |ms: Option<u64>| Duration::from_millis(ms.unwrap_or(self.llm_timeout_ms));
        // A connection that takes over 10 s will not come: fail over sooner.
        let connect = self.llm_connect_timeout_ms.unwrap_or(10_000.min(self.llm_timeout_ms));
        Deadlines {
            connect: Duration::from_millis(connect),
            first_token: or_default(self.llm_first_token_timeout_ms),
            stall: or_default(self.llm_stall_timeout_ms),
        }
    }

    /// How long an open circuit waits before a probe.
    pub fn circuit_reset(&self) -> Duration {
        Duration::from_millis(self.circuit_reset_time_ms)
    }

    /// The tokens that open /v1/*, if auth is on (a set list is never empty).
    pub fn auth_tokens(&self) -> Option<&[String]> {
        self.gateway_auth_token.as_ref().map(|t| t.0.as_slice())
    }

    /// How long a client may take to send headers, or keep an idle connection.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.gateway_header_timeout_ms)
    }

    /// How long a client may take to send a chat request's body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.gateway_body_timeout_ms)
    }

    /// The grace period for in-flight work at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.gateway_shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
    }

    #[test]
    fn a_token_list_with_no_token_refuses_to_start_rather_than_turn_auth_off() {
        for empty in [",", " , ", " "] {
            let error = parse(&["--gateway-auth-token", empty]).unwrap_err().to_string();
            assert!(error.contains("lists no token"), "{empty:?}: {error}");
        }
        let config = parse(&["--gateway-auth-token", "a, ,b"]).unwrap();
        assert_eq!(config.auth_tokens(), Some(&["a".to_owned(), "b".to_owned()][..]));
    }

    #[test]
    fn fallbacks_pin_models_and_keep_colons_in_model_names() {
        let fallbacks: Fallbacks =
            "anthropic:claude-3-5-haiku-latest, openrouter:meta-llama/llama-3.3-70b-instruct:free,ollama"
                .parse()
                .unwrap();
        let kinds: Vec<_> = fallbacks.0.iter().map(|s| (s.kind, s.model.as_deref())).collect();
        assert_eq!(
            kinds,
            [
                (ProviderKind::Anthropic, Some("claude-3-5-haiku-latest")),
                (ProviderKind::Openrouter, Some("meta-llama/llama-3.3-70b-instruct:free")),
                (ProviderKind::Ollama, None),
            ]
        );
        assert!("antropic"
            .parse::<Fallbacks>()
            .unwrap_err()
            .contains("unknown provider"));
        assert_eq!("".parse::<Fallbacks>().unwrap(), Fallbacks::default());
    }

    #[test]
    fn a_missing_key_names_its_variable() {
        let config = parse(&["--llm-provider", "mock", "--llm-fallbacks", "openrouter"]).unwrap();
        let error = config.validate().unwrap_err();
        assert_eq!(error.variable, "OPENROUTER_API_KEY");
        let config = parse(&["--llm-provider", "mock", "--llm-fallbacks", "ollama"]).unwrap();
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let error = parse(&["--gateway-port", "eighty"]).unwrap_err().to_string();
        assert!(error.contains("GATEWAY_PORT"), "{error}");
        let error = parse(&["--openai-base-url", "ftp://x"]).unwrap_err().to_string();
        assert!(error.contains("OPENAI_BASE_URL"), "{error}");
        let error = parse(&["--llm-provider", "gemini"]).unwrap_err().to_string();
        assert!(error.contains("LLM_PROVIDER"), "{error}");
    }
}
