//! OpenRouter: OpenAI's API at `https://openrouter.ai/api/v1`, with usage
//! accounting (`usage: {include: true}`) so the upstream reports each call's
//! cost, which then wins over the price table. Its streams carry SSE comment
//! lines (`: OPENROUTER PROCESSING`) as keep-alives.

use http::header::{HeaderName, HeaderValue};

use crate::client::ProviderConfig;
use crate::openai::{Dialect, OpenAiCompatible};

/// The provider's name in responses, metrics and errors.
pub const NAME: &str = "openrouter";
/// OpenRouter's API base.
pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// The model used when neither the request nor the configuration names one.
pub const DEFAULT_MODEL: &str = "openai/gpt-4o-mini";

/// Optional app attribution shown on openrouter.ai.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// Sent as `HTTP-Referer`.
    pub site_url: Option<String>,
    /// Sent as `X-Title`.
    pub app_name: Option<String>,
}

/// An OpenRouter service.
///
/// ```no_run
/// use chrysalis_services::{openrouter, ProviderConfig};
/// let router = openrouter::service(
///     ProviderConfig::new(openrouter::DEFAULT_BASE_URL, openrouter::DEFAULT_MODEL).api_key("sk-or-..."),
///     openrouter::Attribution::default(),
/// );
/// ```
pub fn service(config: ProviderConfig, attribution: Attribution) -> OpenAiCompatible {
    let headers = [
        ("http-referer", attribution.site_url),
        ("x-title", attribution.app_name),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        let value = HeaderValue::try_from(value?).ok()?;
        Some((HeaderName::from_static(name), value))
    })
    .collect();
    OpenAiCompatible::new(NAME, config, Dialect::OpenRouter { headers })
}
