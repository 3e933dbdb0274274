//! What tokens cost: USD per million input and output tokens, per model.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::chat::Usage;

/// When the built-in prices were taken (public list prices).
pub const PRICES_TAKEN: &str = "2025-11-15";

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million input tokens.
    pub input_per_mtok: f64,
    /// Per million output tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// What `usage` costs at this price.
    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.input_per_mtok + usage.completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

const BUILT_IN: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-5", 1.25, 10.00),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5-nano", 0.05, 0.40),
    ("o3", 2.00, 8.00),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-opus-4", 15.00, 75.00),
    ("claude-opus-4-1", 15.00, 75.00),
    ("claude-haiku-4-5", 1.00, 5.00),
    ("claude-sonnet-4-5", 3.00, 15.00),
    ("claude-opus-4-5", 5.00, 25.00),
];

/// Prices by model, with a record of the models it could not price.
#[derive(Debug, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
    unpriced_warned: Mutex<HashSet<String>>,
    unpriced_calls: AtomicU64,
}

impl PriceTable {
    /// The built-in prices (see [`PRICES_TAKEN`]).
    pub fn builtin() -> Self {
        let mut table = Self::default();
        for &(model, input, output) in BUILT_IN {
            table.insert(
                model,
                Price {
                    input_per_mtok: input,
                    output_per_mtok: output,
                },
            );
        }
        table
    }

    /// Adds or overrides the price of `model` (and of its dated versions).
    pub fn insert(&mut self, model: &str, price: Price) {
        self.prices.insert(model.to_ascii_lowercase(), price);
    }

    /// Adds or overrides prices from a JSON object
    /// `{"model": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}}`; returns how many.
    pub fn load_json(&mut self, json: &str) -> Result<usize, String> {
        let prices: HashMap<String, Price> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for (model, price) in &prices {
            let valid = |v: f64| v.is_finite() && v >= 0.0;
            if !valid(price.input_per_mtok) || !valid(price.output_per_mtok) {
                return Err(format!("the price of `{model}` must be a non-negative number"));
            }
        }
        let count = prices.len();
        prices.into_iter().for_each(|(model, price)| self.insert(&model, price));
        Ok(count)
    }

    /// The price of `model`: its own, or its family's for a dated or
    /// `-latest` name, or its vendor's for an OpenRouter `vendor/model` name.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        // Most names are already lowercase and exact: no allocation for them.
        if let Some(price) = self.prices.get(model) {
            return Some(*price);
        }
        let lower = if model.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(model.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(model)
        };
        if let Some(price) = self.prices.get(lower.as_ref()) {
            return Some(*price);
        }
        if lower.ends_with(":free") {
            return Some(Price {
                input_per_mtok: 0.0,
                output_per_mtok: 0.0,
            });
        }
        let bare = lower.rsplit_once('/').map_or(lower.as_ref(), |(_, name)| name);
        let price = self.prices.get(bare).or_else(|| self.prices.get(family(bare)));
        price.copied()
    }

    /// What `usage` on `model` costs; an unpriced model costs 0, is counted,
    /// and is warned about once.
    pub fn cost(&self, model: &str, usage: Usage) -> f64 {
        if let Some(price) = self.lookup(model) {
            return price.cost(usage);
        }
        self.unpriced_calls.fetch_add(1, Ordering::Relaxed);
        let mut warned = self.unpriced_warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.len() < 1024 && warned.insert(model.to_owned()) {
            tracing::warn!(model, "no price for this model: its calls are counted at $0");
        }
        0.0
    }

    /// The models the table prices by name.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.prices.keys().map(String::as_str)
    }

    /// Calls served by a model with no price.
    pub fn unpriced_calls(&self) -> u64 {
        self.unpriced_calls.load(Ordering::Relaxed)
    }
}

/// `claude-sonnet-4-20250514` -> `claude-sonnet-4`, `gpt-4o-mini-2024-07-18` ->
/// `gpt-4o-mini`, `claude-3-5-haiku-latest` -> `claude-3-5-haiku`.
fn family(model: &str) -> &str {
    if let Some(base) = model.strip_suffix("-latest") {
        return base;
    }
    // `-YYYY-MM-DD` (11 bytes) or `-YYYYMMDD` (9 bytes) at the end.
    let bytes = model.as_bytes();
    let is_date = |tail: &[u8], dashes: &[usize]| {
        tail.iter().enumerate().all(|(i, &b)| {
            if dashes.contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
    };
    for (len, dashes) in [(11, &[0usize, 5, 8][..]), (9, &[0usize][..])] {
        if bytes.len() > len && is_date(&bytes[bytes.len() - len..], dashes) {
            return &model[..model.len() - len];
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            prompt_tokens: input,
            completion_tokens: output,
        }
    }

    #[test]
    fn dated_and_aliased_names_resolve_to_their_family() {
        let table = PriceTable::builtin();
        let mini = table.lookup("gpt-4o-mini").unwrap();
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18"), Some(mini));
        assert_eq!(table.lookup("GPT-4o-mini"), Some(mini));
        assert_eq!(table.lookup("openai/gpt-4o-mini"), Some(mini));
        let sonnet = table.lookup("claude-sonnet-4").unwrap();
        assert_eq!(table.lookup("claude-sonnet-4-20250514"), Some(sonnet));
        assert_eq!(table.lookup("anthropic/claude-sonnet-4"), Some(sonnet));
        assert_eq!(table.lookup("claude-3-5-haiku-latest").unwrap().input_per_mtok, 0.80);
        assert_eq!(table.lookup("gpt-4o-2024-08-06").unwrap().output_per_mtok, 10.00);
    }

    #[test]
    fn costs_follow_the_list_prices() {
        let table = PriceTable::builtin();
        let cost = table.cost("gpt-4o-mini", usage(1_000_000, 1_000_000));
        assert!((cost - 0.75).abs() < 1e-12, "{cost}");
        let cost = table.cost("claude-opus-4-20250514", usage(1000, 100));
        assert!((cost - (0.015 + 0.0075)).abs() < 1e-12, "{cost}");
        assert_eq!(table.cost("meta-llama/llama-3.3-70b-instruct:free", usage(10, 10)), 0.0);
    }

    #[test]
    fn unknown_models_cost_nothing_and_are_counted() {
        let table = PriceTable::builtin();
        assert_eq!(table.lookup("gpt-4o-audio-preview"), None);
        assert_eq!(table.cost("my-finetune", usage(100, 100)), 0.0);
        assert_eq!(table.cost("my-finetune", usage(100, 100)), 0.0);
        assert_eq!(table.unpriced_calls(), 2);
    }

    #[test]
    fn a_prices_file_adds_and_overrides() {
        let mut table = PriceTable::builtin();
        let json = r#"{"my-finetune": {"input_per_mtok": 3, "output_per_mtok": 6}, "gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 1}}"#;
        assert_eq!(table.load_json(json), Ok(2));
        assert_eq!(table.lookup("my-finetune").unwrap().output_per_mtok, 6.0);
        assert_eq!(table.lookup("gpt-4o-2024-08-06").unwrap().input_per_mtok, 1.0);
        assert!(table
            .load_json(r#"{"x": {"input_per_mtok": -1, "output_per_mtok": 1}}"#)
            .is_err());
        assert!(table.load_json(r#"{"x": {"input": 1}}"#).is_err());
    }

    #[test]
    fn overrides_win_over_built_in_prices() {
        let mut table = PriceTable::builtin();
        table.insert(
            "gpt-4o-mini",
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            },
        );
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18").unwrap().output_per_mtok, 2.0);
    }
}
