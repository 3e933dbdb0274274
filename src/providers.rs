//! Builds one provider service per configured provider.

use std::sync::Arc;
use std::time::Duration;

use chrysalis_services::mock::{Mock, MockConfig};
use chrysalis_services::ollama::Ollama;
use chrysalis_services::openai::OpenAiCompatible;
use chrysalis_services::openrouter::{self, Attribution};
use chrysalis_services::pricing::PriceTable;
use chrysalis_services::{anthropic::Anthropic, ChatRequest, ChatResponse, HttpClient, ProviderConfig, ProviderError};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceExt};

use crate::config::{Config, ConfigError, ProviderKind, ProviderSpec};
use crate::stack::ChatService;

/// A provider in the failover order.
pub struct Provider {
    /// Its name (`openai`, ...).
    pub name: &'static str,
    /// The model it uses when the request does not pick one for it.
    pub model: String,
    /// The model pinned for it as a fallback (`anthropic:claude-...`).
    pub pinned: Option<String>,
    /// It runs on hardware already paid for (Ollama, the mock).
    pub local: bool,
    /// Its service, type-erased.
    pub service: ChatService,
    /// The Anthropic service itself, when it is one, for what is not a chat
    /// call (counting tokens).
    pub anthropic: Option<Anthropic>,
}

/// The providers in failover order, sharing one HTTP client and one price table.
pub fn build(config: &Config, prices: &Arc<PriceTable>) -> Result<Vec<Provider>, ConfigError> {
    let client = client(config)?;
    Ok(config
        .providers()
        .map(|spec| {
            let model = spec
                .model
                .clone()
                .unwrap_or_else(|| spec.kind.default_model().to_owned());
            let network = network(config, &spec, &model, &client, prices);
            let anthropic =
                (spec.kind == ProviderKind::Anthropic).then(|| Anthropic::new(network(&config.anthropic_base_url.0)));
            let service = service(config, &spec, &model, &network, prices);
            Provider {
                name: spec.kind.name(),
                local: matches!(spec.kind, ProviderKind::Ollama | ProviderKind::Mock),
                service,
                anthropic,
                model: model.clone(),
                pinned: spec.model.clone(),
            }
        })
        .collect())
}

/// The upstream client, trusting `LLM_CA_BUNDLE` too when it is set.
fn client(config: &Config) -> Result<HttpClient, ConfigError> {
    let (variable, bundle) = match &config.llm_ca_bundle {
        None => ("HTTPS_PROXY", None),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| ConfigError {
                variable: "LLM_CA_BUNDLE",
                problem: format!("cannot read {}: {e}", path.display()),
            })?;
            ("LLM_CA_BUNDLE", Some(pem))
        }
    };
    // With no bundle, only a proxy variable that is not a URL can fail here.
    HttpClient::new(bundle.as_deref(), config.deadlines().connect).map_err(|problem| ConfigError { variable, problem })
}

/// The settings of a network provider at a base URL.
fn network<'a>(
    config: &'a Config,
    spec: &'a ProviderSpec,
    model: &'a str,
    client: &'a HttpClient,
    prices: &'a Arc<PriceTable>,
) -> impl Fn(&str) -> ProviderConfig + 'a {
    move |base: &str| {
        let mut provider = ProviderConfig::new(base, model)
            .client(client.clone())
            .prices(prices.clone());
        if let Some(key) = config.api_key(spec.kind) {
            provider = provider.api_key(key);
        }
        provider
    }
}

fn service(
    config: &Config,
    spec: &ProviderSpec,
    model: &str,
    network: &impl Fn(&str) -> ProviderConfig,
    prices: &Arc<PriceTable>,
) -> ChatService {
    match spec.kind {
        ProviderKind::Openai => boxed(OpenAiCompatible::openai(network(&config.openai_base_url.0))),
        ProviderKind::Anthropic => boxed(Anthropic::new(network(&config.anthropic_base_url.0))),
        ProviderKind::Openrouter => {
            let attribution = Attribution {
                site_url: config.openrouter_site_url.clone().map(|h| h.0),
                app_name: config.openrouter_app_name.clone().map(|h| h.0),
            };
            boxed(openrouter::service(network(&config.openrouter_base_url.0), attribution))
        }
        ProviderKind::Ollama => boxed(Ollama::new(network(&config.ollama_base_url.0))),
        ProviderKind::Mock => boxed(Mock::new(MockConfig {
            default_model: model.to_owned(),
            latency: Duration::from_millis(config.mock_latency_ms),
            fail: config.mock_fail,
            prices: prices.clone(),
        })),
    }
}

fn boxed<S>(service: S) -> ChatService
where
    S: Service<ChatRequest, Response = ChatResponse, Error = ProviderError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(service.map_err(BoxError::from))
}
