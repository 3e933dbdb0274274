//! The most a call may cost, before it is made, and what a cut stream cost.

use chrysalis_services::pricing::{Price, Unpriced};
use chrysalis_services::{ChatRequest, Usage};

use super::error::UnpricedModel;
use super::state::{nanos, BudgetState};
use super::Route;

/// The most tokens one image of a prompt may count for, by provider.
/// Anthropic scales images down to about 1.15 megapixels, at most ~1,600
/// tokens. OpenAI's dearest is gpt-4o-mini at high detail: 2,833 tokens plus
/// 5,667 per 512-px tile, six tiles at most: 36,835. Others (OpenRouter's
/// many vendors) are held to the same 40,000.
pub const fn image_tokens(provider: &str) -> u64 {
    match provider.as_bytes() {
        b"anthropic" => 1_600,
        _ => 40_000,
    }
}

impl BudgetState {
    /// The most `request` may cost on any route that may serve it: every
    /// prompt byte a token (no tokenizer makes more; tool schemas and tool
    /// calls included), each image at its provider's bound, 16 tokens a
    /// message, at most the model's context window; plus every token it may
    /// generate; a prompt token at the dearest of input and cache write.
    pub(crate) fn estimate(&self, request: &ChatRequest) -> Result<i64, UnpricedModel> {
        let text = (request.prompt_chars() + 16 * request.messages.len()) as u64;
        let images = request.images() as u64;
        let completion = f64::from(request.max_tokens.unwrap_or(self.config.default_max_tokens));
        let (mut dearest, mut dearest_input) = (0.0_f64, 0.0_f64);
        for (route, model) in self.candidates(request) {
            let price = self.price(route, model)?;
            let provider = route.map_or("", |route| route.provider);
            let window = self.config.prices.context_window(model).map_or(u64::MAX, u64::from);
            let prompt = (text + images * image_tokens(provider)).min(window) as f64;
            let cost = (prompt * price.dearest_input_per_mtok() + completion * price.output_per_mtok) / 1e6;
            dearest = dearest.max(cost);
            dearest_input = dearest_input.max(price.dearest_input_per_mtok());
        }
        if self.config.resumable {
            // The cut call, then its continuation on any route: the prompt
            // again with the text so far (at most the output cap) as input.
            return Ok(nanos(2.0 * dearest + completion * dearest_input / 1e6));
        }
        Ok(nanos(dearest))
    }

    /// Each route that may serve `request`, with the model it would use.
    fn candidates<'a>(&'a self, request: &'a ChatRequest) -> impl Iterator<Item = (Option<&'a Route>, &'a str)> {
        let routes = &self.config.routes;
        let unrouted = routes.is_empty().then_some(request.model.as_deref()).flatten();
        let primary = routes
            .first()
            .map(|route| (Some(route), request.model.as_deref().unwrap_or(&route.model)));
        let fallbacks = routes.iter().skip(1).map(|route| (Some(route), route.model.as_str()));
        unrouted
            .map(|model| (None, model))
            .into_iter()
            .chain(primary)
            .chain(fallbacks)
    }

    /// The price `model` is reserved at on `route` (`None`: unknown provider).
    fn price(&self, route: Option<&Route>, model: &str) -> Result<Price, UnpricedModel> {
        const FREE: Price = Price::new(0.0, 0.0);
        let prices = &self.config.prices;
        let provider = route.map_or("unknown", |route| route.provider);
        if route.is_some_and(|route| route.local) {
            return Ok(prices.lookup(model).unwrap_or(FREE));
        }
        match prices.price_for(provider, model) {
            Some(price) => Ok(price),
            None if prices.unpriced() == Unpriced::Allow => Ok(FREE),
            None => Err(UnpricedModel {
                provider,
                model: model.to_owned(),
            }),
        }
    }

    /// What `usage` of `model` on `provider` costs, for a call whose
    /// provider could not report it (a stream cut short).
    pub(crate) fn partial_cost(&self, provider: &str, model: &str, usage: Usage) -> f64 {
        let route = self.config.routes.iter().find(|route| route.provider == provider);
        let prices = &self.config.prices;
        let price = match route {
            Some(route) if route.local => prices.lookup(model),
            _ => prices.price_for(provider, model),
        };
        price.map_or(0.0, |price| price.cost(usage))
    }
}
