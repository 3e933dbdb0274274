//! What tokens cost: USD per million input and output tokens, per model.

mod builtin;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::chat::Usage;

/// When the built-in prices were taken (public list prices).
pub const PRICES_TAKEN: &str = "2025-11-15";

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    /// Per million input tokens.
    pub input_per_mtok: f64,
    /// Per million output tokens.
    pub output_per_mtok: f64,
    /// Per million input tokens read from the prompt cache (`None`: as input).
    pub cached_input_per_mtok: Option<f64>,
    /// Per million input tokens written to the prompt cache (`None`: as input).
    pub cache_write_per_mtok: Option<f64>,
}

impl Price {
    /// `input` and `output` USD per million tokens, cached input at the input price.
    pub const fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Self {
            input_per_mtok,
            output_per_mtok,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
        }
    }

    /// What `usage` costs at this price: cache reads and writes at their own
    /// prices, the rest of the input at the input price.
    pub fn cost(&self, usage: Usage) -> f64 {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        let plain = usage.prompt_tokens - cached - written;
        let input = self.input_per_mtok;
        (plain as f64 * input
            + cached as f64 * self.cached_input_per_mtok.unwrap_or(input)
            + written as f64 * self.cache_write_per_mtok.unwrap_or(input)
            + usage.completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }

    /// The dearest a prompt token can be: the input price, or a cache write
    /// when that costs more (Anthropic's 1.25x).
    pub fn dearest_input_per_mtok(&self) -> f64 {
        self.input_per_mtok.max(self.cache_write_per_mtok.unwrap_or(0.0))
    }
}

/// What a cache read and a cache write cost, as fractions of the input
/// price, by vendor and model family (the vendors' published discounts).
fn cache_ratios(model: &str, vendor: &str) -> (Option<f64>, Option<f64>) {
    match vendor {
        // Reads at a tenth, five-minute writes at 1.25x.
        "anthropic" => (Some(0.1), Some(1.25)),
        "openai" if model.starts_with("gpt-5") => (Some(0.1), None),
        "openai" if model.starts_with("gpt-4.1") || model.starts_with("o3") || model.starts_with("o4") => {
            (Some(0.25), None)
        }
        "openai" if model.starts_with("gpt-4o") || model.starts_with("o1") => (Some(0.5), None),
        "google" if model.starts_with("gemini-2.5") => (Some(0.25), None),
        _ => (None, None),
    }
}

/// What a budgeted gateway does with a model the table cannot price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unpriced {
    /// Refuse the call (the budget cannot bound what it would cost).
    #[default]
    Refuse,
    /// Charge the dearest price the table knows for the provider.
    Ceiling,
    /// Serve it at $0: its calls are not held to any budget.
    Allow,
}

/// One model's entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    price: Price,
    /// Whose price it is (`openai`, `anthropic`, `google`, ...), if known.
    vendor: Option<String>,
    /// Input plus output tokens the model takes, if known.
    context_window: Option<u32>,
}

/// An entry of a prices file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    input_per_mtok: f64,
    output_per_mtok: f64,
    #[serde(default)]
    cached_input_per_mtok: Option<f64>,
    #[serde(default)]
    cache_write_per_mtok: Option<f64>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    context_window: Option<u32>,
}

/// Prices by model, with a record of the models it could not price.
#[derive(Debug, Default)]
pub struct PriceTable {
    entries: HashMap<String, Entry>,
    unpriced: Unpriced,
    unpriced_warned: Mutex<HashSet<String>>,
    unpriced_calls: AtomicU64,
}

impl PriceTable {
    /// The built-in prices (see [`PRICES_TAKEN`]).
    pub fn builtin() -> Self {
        let mut table = Self::default();
        for &(model, vendor, input, output, context_window) in builtin::ENTRIES {
            let (read, write) = cache_ratios(model, vendor);
            let price = Price {
                cached_input_per_mtok: read.map(|r| r * input),
                cache_write_per_mtok: write.map(|w| w * input),
                ..Price::new(input, output)
            };
            table.entries.insert(
                model.to_owned(),
                Entry {
                    price,
                    vendor: Some(vendor.to_owned()),
                    context_window: Some(context_window),
                },
            );
        }
        table
    }

    /// Sets what is done with models the table cannot price.
    pub fn set_unpriced(&mut self, policy: Unpriced) {
        self.unpriced = policy;
    }

    /// What is done with models the table cannot price.
    pub fn unpriced(&self) -> Unpriced {
        self.unpriced
    }

    /// Adds or overrides the price of `model` (and of its dated versions).
    pub fn insert(&mut self, model: &str, price: Price) {
        let model = model.to_ascii_lowercase();
        match self.entries.get_mut(&model) {
            Some(entry) => entry.price = price,
            None => {
                let entry = Entry {
                    price,
                    vendor: None,
                    context_window: None,
                };
                self.entries.insert(model, entry);
            }
        }
    }

    /// Adds or overrides prices from a JSON object
    /// `{"model": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}}`, each
    /// optionally with `"provider"` (whose ceiling it counts in) and
    /// `"context_window"`; returns how many.
    pub fn load_json(&mut self, json: &str) -> Result<usize, String> {
        let file: HashMap<String, FileEntry> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for (model, entry) in &file {
            let valid = |v: f64| v.is_finite() && v >= 0.0;
            let cache = [entry.cached_input_per_mtok, entry.cache_write_per_mtok];
            if !valid(entry.input_per_mtok) || !valid(entry.output_per_mtok) || !cache.into_iter().flatten().all(valid)
            {
                return Err(format!("the price of `{model}` must be a non-negative number"));
            }
        }
        let count = file.len();
        for (model, entry) in file {
            let price = Price {
                cached_input_per_mtok: entry.cached_input_per_mtok,
                cache_write_per_mtok: entry.cache_write_per_mtok,
                ..Price::new(entry.input_per_mtok, entry.output_per_mtok)
            };
            self.insert(&model, price);
            let known = self
                .entries
                .get_mut(&model.to_ascii_lowercase())
                .expect("just inserted");
            known.vendor = entry.provider.or(known.vendor.take());
            known.context_window = entry.context_window.or(known.context_window);
        }
        Ok(count)
    }

    /// The price of `model`: its own, or its family's for a dated or
    /// `-latest` name, or its own for an OpenRouter `vendor/model` name.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        self.entry(model).map(|entry| entry.price)
    }

    /// The context window of `model` in tokens, when the table knows it.
    pub fn context_window(&self, model: &str) -> Option<u32> {
        self.entry(model).and_then(|entry| entry.context_window)
    }

    fn entry(&self, model: &str) -> Option<Cow<'_, Entry>> {
        // Most names are already lowercase and exact: no allocation for them.
        if let Some(entry) = self.entries.get(model) {
            return Some(Cow::Borrowed(entry));
        }
        let lower = if model.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(model.to_ascii_lowercase())
        } else {
            Cow::Borrowed(model)
        };
        if let Some(entry) = self.entries.get(lower.as_ref()) {
            return Some(Cow::Borrowed(entry));
        }
        if lower.ends_with(":free") {
            let free = Price::new(0.0, 0.0);
            let bare = lower.trim_end_matches(":free");
            let context_window = self.entry(bare).and_then(|entry| entry.context_window);
            return Some(Cow::Owned(Entry {
                price: free,
                vendor: None,
                context_window,
            }));
        }
        let bare = lower.rsplit_once('/').map_or(lower.as_ref(), |(_, name)| name);
        let entry = self.entries.get(bare).or_else(|| self.entries.get(family(bare)));
        entry.map(Cow::Borrowed)
    }

    /// The dearest input and the dearest output price the table knows for
    /// `provider`'s own models (`openai`, `anthropic`), or of all models for
    /// a provider that serves every vendor's (`openrouter`, or any other).
    pub fn ceiling(&self, provider: &str) -> Price {
        let own = |entry: &&Entry| match provider {
            "openai" | "anthropic" => entry.vendor.as_deref() == Some(provider),
            _ => true,
        };
        let mut ceiling = Price::new(0.0, 0.0);
        for entry in self.entries.values().filter(own) {
            ceiling.input_per_mtok = ceiling.input_per_mtok.max(entry.price.dearest_input_per_mtok());
            ceiling.output_per_mtok = ceiling.output_per_mtok.max(entry.price.output_per_mtok);
        }
        ceiling
    }

    /// The price a call of `model` on `provider` is charged at: the model's
    /// own, else (with [`Unpriced::Ceiling`]) the provider's ceiling, else none.
    pub fn price_for(&self, provider: &str, model: &str) -> Option<Price> {
        match self.lookup(model) {
            Some(price) => Some(price),
            None if self.unpriced == Unpriced::Ceiling => Some(self.ceiling(provider)),
            None => None,
        }
    }

    /// What `usage` on `model` served by `provider` costs, priced by the
    /// first of `models` the table knows (the served name, then the requested
    /// one). With no price (and no ceiling) it costs 0, is counted, and is
    /// warned about once.
    pub fn cost(&self, provider: &str, models: &[&str], usage: Usage) -> f64 {
        if let Some(price) = models.iter().find_map(|model| self.lookup(model)) {
            return price.cost(usage);
        }
        let model = models.first().copied().unwrap_or("");
        self.unpriced_calls.fetch_add(1, Ordering::Relaxed);
        let mut warned = self.unpriced_warned.lock().unwrap_or_else(|p| p.into_inner());
        let first = warned.len() < 1024 && warned.insert(model.to_owned());
        drop(warned);
        if self.unpriced == Unpriced::Ceiling {
            if first {
                tracing::warn!(provider, model = %crate::redact::redact(model), "no price for this model: charged at the provider's dearest");
            }
            return self.ceiling(provider).cost(usage);
        }
        if first {
            tracing::warn!(provider, model = %crate::redact::redact(model), "no price for this model: its calls are counted at $0");
        }
        0.0
    }

    /// The models the table prices by name.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
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
        Usage::new(input, output)
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
        let cost = table.cost("openai", &["gpt-4o-mini"], usage(1_000_000, 1_000_000));
        assert!((cost - 0.75).abs() < 1e-12, "{cost}");
        let cost = table.cost("anthropic", &["claude-opus-4-20250514"], usage(1000, 100));
        assert!((cost - (0.015 + 0.0075)).abs() < 1e-12, "{cost}");
        assert_eq!(
            table.cost("openrouter", &["meta-llama/llama-3.3-70b-instruct:free"], usage(10, 10)),
            0.0
        );
    }

    #[test]
    fn unknown_models_cost_nothing_and_are_counted() {
        let table = PriceTable::builtin();
        assert_eq!(table.lookup("gpt-4o-transcribe-2099"), None);
        assert_eq!(table.cost("openai", &["my-finetune"], usage(100, 100)), 0.0);
        assert_eq!(table.cost("openai", &["my-finetune"], usage(100, 100)), 0.0);
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
        table.insert("gpt-4o-mini", Price::new(1.0, 2.0));
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18").unwrap().output_per_mtok, 2.0);
    }

    #[test]
    fn current_models_of_every_vendor_are_priced_with_their_context_window() {
        let table = PriceTable::builtin();
        for model in [
            "gpt-5.1",
            "gpt-5-mini-2025-08-07",
            "gpt-4.1-2025-04-14",
            "o3-2025-04-16",
            "o1-pro",
            "chatgpt-4o-latest",
            "claude-sonnet-4-5-20250929",
            "claude-opus-4-1-20250805",
            "claude-haiku-4-5-20251001",
            "claude-3-5-sonnet-20241022",
            "google/gemini-2.5-pro",
            "x-ai/grok-4",
            "deepseek/deepseek-chat-v3.1",
            "meta-llama/llama-3.3-70b-instruct",
            "mistralai/mistral-large-2411",
            "qwen/qwen3-coder",
            "moonshotai/kimi-k2",
            "openai/gpt-oss-120b",
        ] {
            assert!(table.lookup(model).is_some(), "{model} has no price");
            assert!(table.context_window(model).is_some(), "{model} has no context window");
        }
        assert_eq!(table.context_window("gpt-4.1-mini"), Some(1_047_576));
        // A snapshot priced apart from its family keeps its own price.
        assert_eq!(table.lookup("gpt-4o-2024-05-13").unwrap().input_per_mtok, 5.00);
        assert_eq!(table.lookup("gpt-4o-2024-11-20").unwrap().input_per_mtok, 2.50);
    }

    #[test]
    fn the_ceiling_is_the_dearest_of_the_providers_own_models() {
        let table = PriceTable::builtin();
        let openai = table.ceiling("openai");
        assert_eq!((openai.input_per_mtok, openai.output_per_mtok), (150.00, 600.00));
        let anthropic = table.ceiling("anthropic");
        // Opus's cache writes, at 1.25x its 15 USD input, are the dearest prompt tokens.
        assert_eq!((anthropic.input_per_mtok, anthropic.output_per_mtok), (18.75, 75.00));
        // OpenRouter serves every vendor's models.
        assert_eq!(table.ceiling("openrouter"), openai);
    }

    #[test]
    fn the_unpriced_policy_decides_what_an_unknown_model_is_charged() {
        let mut table = PriceTable::builtin();
        assert_eq!(table.unpriced(), Unpriced::Refuse);
        assert_eq!(table.price_for("anthropic", "claude-next"), None);
        assert_eq!(table.cost("anthropic", &["claude-next"], usage(1000, 1000)), 0.0);
        table.set_unpriced(Unpriced::Ceiling);
        assert_eq!(
            table.price_for("anthropic", "claude-next"),
            Some(table.ceiling("anthropic"))
        );
        let cost = table.cost("anthropic", &["claude-next"], usage(1_000_000, 0));
        assert!((cost - 18.75).abs() < 1e-9, "{cost}");
        // The requested model prices a call whose served name is unknown.
        let cost = table.cost("openai", &["gpt-4o-mini-fast-2099", "gpt-4o-mini"], usage(1_000_000, 0));
        assert!((cost - 0.15).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn a_prices_file_entry_may_name_its_provider_and_context_window() {
        let mut table = PriceTable::builtin();
        let json = r#"{"gpt-9": {"input_per_mtok": 900, "output_per_mtok": 1000, "provider": "openai", "context_window": 4096}}"#;
        assert_eq!(table.load_json(json), Ok(1));
        assert_eq!(table.context_window("gpt-9"), Some(4096));
        assert_eq!(table.ceiling("openai").output_per_mtok, 1000.0);
        assert_eq!(table.ceiling("anthropic").output_per_mtok, 75.0);
    }

    #[test]
    fn cache_reads_and_writes_are_priced_apart_from_plain_input() {
        let table = PriceTable::builtin();
        let sonnet = table.lookup("claude-sonnet-4-5").unwrap();
        let usage = Usage {
            cached_prompt_tokens: 600_000,
            cache_write_tokens: 200_000,
            ..Usage::new(1_000_000, 0)
        };
        // 200k plain at 3, 600k read at 0.30, 200k written at 3.75 USD per million.
        let cost = sonnet.cost(usage);
        assert!((cost - (0.6 + 0.18 + 0.75)).abs() < 1e-9, "{cost}");
        let mini = table.lookup("gpt-4o-mini").unwrap();
        let cached = Usage {
            cached_prompt_tokens: 1_000_000,
            ..Usage::new(1_000_000, 0)
        };
        assert!((mini.cost(cached) - 0.075).abs() < 1e-9);
    }
}
