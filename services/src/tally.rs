//! Counting a call as it goes: text seen, usage reported, and its price at the end.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::chat::{Chunk, Completion, FinishReason, StreamEnd, ToolCall, ToolCallDelta, Usage};
use crate::pricing::PriceTable;

/// What one call has produced so far.
pub(crate) struct Tally {
    provider: &'static str,
    prices: Arc<PriceTable>,
    /// The model to price: the requested one until the upstream names its own.
    pub(crate) model: String,
    /// The model requested, which prices the call if the served name is unknown.
    requested: String,
    prompt_chars: usize,
    completion_chars: usize,
    pub(crate) usage: Option<Usage>,
    /// The upstream's own figure (OpenRouter), which wins over the table.
    pub(crate) reported_cost: Option<f64>,
    pub(crate) finish_reason: Option<FinishReason>,
    /// A local model: free unless the price table names it, and never reported as unpriced.
    pub(crate) local: bool,
}

impl Tally {
    pub(crate) fn new(provider: &'static str, prices: Arc<PriceTable>, model: String, prompt_chars: usize) -> Self {
        Self {
            provider,
            prices,
            requested: model.clone(),
            model,
            prompt_chars,
            completion_chars: 0,
            usage: None,
            reported_cost: None,
            finish_reason: None,
            local: false,
        }
    }

    /// Prices by the model the upstream says served the call.
    pub(crate) fn served_by(&mut self, model: Option<&str>) {
        match model {
            Some(model) if !model.is_empty() && model != self.model => model.clone_into(&mut self.model),
            _ => {}
        }
    }

    /// Passes on a piece of text, skipping empty ones.
    pub(crate) fn delta(&mut self, text: &str, out: &mut VecDeque<Chunk>) {
        if !text.is_empty() {
            self.completion_chars += text.len();
            out.push_back(Chunk::Delta(text.to_owned()));
        }
    }

    /// Passes on a piece of a tool call.
    pub(crate) fn tool_call(&mut self, delta: ToolCallDelta, out: &mut VecDeque<Chunk>) {
        self.completion_chars += delta.arguments.len() + delta.name.as_ref().map_or(0, String::len);
        out.push_back(Chunk::ToolCall(delta));
    }

    /// The end of the call, priced. Usage the upstream did not report is estimated.
    pub(crate) fn end(&mut self) -> StreamEnd {
        let usage = self
            .usage
            .unwrap_or_else(|| Usage::estimate(self.prompt_chars, self.completion_chars));
        let cost_usd = match self.reported_cost {
            Some(cost) => cost,
            None if self.local => self.prices.lookup(&self.model).map_or(0.0, |p| p.cost(usage)),
            None => self.prices.cost(self.provider, &[&self.model, &self.requested], usage),
        };
        StreamEnd {
            usage,
            cost_usd,
            finish_reason: self.finish_reason.take(),
            resumed_by: None,
        }
    }

    /// A whole answer of `content` and `tool_calls` from `model` (as
    /// requested), priced by the model the upstream reported.
    pub(crate) fn complete(
        mut self,
        provider: &'static str,
        model: String,
        content: String,
        tool_calls: Vec<ToolCall>,
    ) -> Completion {
        self.completion_chars = content.len() + tool_calls.iter().map(|c| c.arguments.len()).sum::<usize>();
        let end = self.end();
        Completion {
            content,
            tool_calls,
            provider,
            model,
            usage: end.usage,
            cost_usd: end.cost_usd,
            finish_reason: end.finish_reason,
            meta: Default::default(),
        }
    }
}
