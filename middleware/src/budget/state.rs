//! Spend and reservations per window, shared by every clone of the service.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use chrysalis_services::pricing::{Price, Unpriced};
use chrysalis_services::{ChatRequest, Usage};
use tower::BoxError;

use super::error::{BudgetExceeded, LedgerError, UnpricedModel, Window};
use super::ledger::{Commit, SpendLedger, SpendRow};
use super::utc;
use super::{BudgetConfig, Route};

const NANOS_PER_USD: f64 = 1e9;

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

/// The wall clock budget windows follow (UTC days and months).
pub trait WallClock: Send + Sync + 'static {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

pub(crate) struct BudgetState {
    daily: i64,
    monthly: i64,
    config: BudgetConfig,
    ledger: Arc<dyn SpendLedger>,
    clock: Arc<dyn WallClock>,
    windows: Mutex<Windows>,
}

#[derive(Debug, Clone, Copy)]
struct Windows {
    day_start_ms: i64,
    month_start_ms: i64,
    day_spent: i64,
    month_spent: i64,
    /// The day and month last left (start, spent): a clock stepped back
    /// returns to them.
    left_day: (i64, i64),
    left_month: (i64, i64),
    /// Held by calls in flight, in both windows.
    reserved: i64,
}

impl Windows {
    fn new() -> Self {
        Self {
            day_start_ms: i64::MIN,
            month_start_ms: i64::MIN,
            day_spent: 0,
            month_spent: 0,
            left_day: (i64::MIN, 0),
            left_month: (i64::MIN, 0),
            reserved: 0,
        }
    }

    /// Starts new windows when the UTC day or month has turned.
    fn roll(&mut self, now_ms: i64) {
        let day = utc::day_start(now_ms.div_euclid(1000)) * 1000;
        let month = utc::month_start(now_ms.div_euclid(1000)) * 1000;
        roll(&mut self.day_start_ms, &mut self.day_spent, &mut self.left_day, day);
        roll(
            &mut self.month_start_ms,
            &mut self.month_spent,
            &mut self.left_month,
            month,
        );
    }
}

/// Moves one window to the one starting at `start_ms`. A clock that jumped
/// ahead and was set back returns to the window it left, whose spend is kept,
/// with what was spent meanwhile added: it was spent in that window.
fn roll(window_ms: &mut i64, spent: &mut i64, left: &mut (i64, i64), start_ms: i64) {
    if start_ms == *window_ms {
        return;
    }
    let carried = if start_ms == left.0 { left.1 + *spent } else { 0 };
    *left = (*window_ms, *spent);
    *window_ms = start_ms;
    *spent = carried;
}

pub(crate) fn nanos(usd: f64) -> i64 {
    (usd * NANOS_PER_USD).round() as i64
}

pub(crate) fn usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

impl BudgetState {
    /// Loads this day's and month's spend from the ledger.
    pub(crate) fn open(
        config: BudgetConfig,
        ledger: Arc<dyn SpendLedger>,
        clock: Arc<dyn WallClock>,
    ) -> Result<Self, LedgerError> {
        let mut windows = Windows::new();
        windows.roll(clock.now_ms());
        windows.day_spent = ledger.spent_since(windows.day_start_ms)?;
        windows.month_spent = ledger.spent_since(windows.month_start_ms)?;
        Ok(Self {
            daily: nanos(config.daily_usd),
            monthly: nanos(config.monthly_usd),
            config,
            ledger,
            clock,
            windows: Mutex::new(windows),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn default_max_tokens(&self) -> u32 {
        self.config.default_max_tokens
    }

    /// Holds the most `request` may cost, or refuses it if that could pass a
    /// limit or cannot be priced.
    pub(crate) fn reserve(self: &Arc<Self>, request: &ChatRequest) -> Result<Reservation, BoxError> {
        let estimate = self.estimate(request)?;
        let mut windows = self.lock();
        windows.roll(self.clock.now_ms());
        for (window, spent, limit) in [
            (Window::Daily, windows.day_spent, self.daily),
            (Window::Monthly, windows.month_spent, self.monthly),
        ] {
            if spent + windows.reserved + estimate > limit {
                return Err(BudgetExceeded {
                    window,
                    limit_usd: usd(limit),
                    spent_usd: usd(spent),
                    reserved_usd: usd(windows.reserved),
                    estimate_usd: usd(estimate),
                }
                .into());
            }
        }
        windows.reserved += estimate;
        Ok(Reservation {
            state: self.clone(),
            estimate,
            agent_id: request.agent_id.clone(),
            prompt_chars: request.prompt_chars(),
            settled: false,
        })
    }

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

    fn settle(&self, estimate: i64, row: Option<SpendRow>) -> Option<Commit> {
        let mut windows = self.lock();
        windows.roll(self.clock.now_ms());
        windows.reserved -= estimate;
        let row = row?;
        windows.day_spent += row.cost_nanos;
        windows.month_spent += row.cost_nanos;
        // Appended under the lock, so the ledger's order is the spend's order.
        Some(self.ledger.append(row))
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut windows = self.lock();
        windows.roll(self.clock.now_ms());
        Totals {
            daily_limit_usd: usd(self.daily),
            monthly_limit_usd: usd(self.monthly),
            day_spent_usd: usd(windows.day_spent),
            month_spent_usd: usd(windows.month_spent),
            reserved_usd: usd(windows.reserved),
        }
    }

    pub(crate) fn report(&self) -> Result<UsageReport, LedgerError> {
        let windows = {
            let mut windows = self.lock();
            windows.roll(self.clock.now_ms());
            *windows
        };
        let report = |start_ms: i64, spent: i64, limit: i64| -> Result<WindowReport, LedgerError> {
            let breakdown = self.ledger.breakdown_since(start_ms)?;
            let dollars = |map: BTreeMap<String, i64>| map.into_iter().map(|(k, v)| (k, usd(v))).collect();
            Ok(WindowReport {
                start: utc::rfc3339(start_ms.div_euclid(1000)),
                limit_usd: usd(limit),
                spent_usd: usd(spent),
                reserved_usd: usd(windows.reserved),
                remaining_usd: usd((limit - spent - windows.reserved).max(0)),
                by_agent: dollars(breakdown.by_agent),
                by_model: dollars(breakdown.by_model),
            })
        };
        Ok(UsageReport {
            day: report(windows.day_start_ms, windows.day_spent, self.daily)?,
            month: report(windows.month_start_ms, windows.month_spent, self.monthly)?,
        })
    }
}

/// Spend and limits now, read from memory (cheap enough for every scrape).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// The daily limit.
    pub daily_limit_usd: f64,
    /// The monthly limit.
    pub monthly_limit_usd: f64,
    /// Spent today.
    pub day_spent_usd: f64,
    /// Spent this month.
    pub month_spent_usd: f64,
    /// Held by calls in flight.
    pub reserved_usd: f64,
}

/// Spend, limits and what is left, for today and this month.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    /// The UTC day.
    pub day: WindowReport,
    /// The UTC month.
    pub month: WindowReport,
}

/// One window's spend.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowReport {
    /// When the window started (RFC 3339, UTC).
    pub start: String,
    /// Its limit.
    pub limit_usd: f64,
    /// Spent in it.
    pub spent_usd: f64,
    /// Held by calls in flight.
    pub reserved_usd: f64,
    /// What is left.
    pub remaining_usd: f64,
    /// Spent, by agent_id.
    pub by_agent: BTreeMap<String, f64>,
    /// Spent, by model.
    pub by_model: BTreeMap<String, f64>,
}

/// Money held for one call; settled exactly once, released if dropped.
pub(crate) struct Reservation {
    state: Arc<BudgetState>,
    estimate: i64,
    agent_id: Arc<str>,
    prompt_chars: usize,
    settled: bool,
}

impl Reservation {
    /// Records what the call really cost and releases the rest.
    pub(crate) fn settle(mut self, provider: &str, model: &str, usage: Usage, cost_usd: f64) -> Option<Commit> {
        self.settled = true;
        let cost_nanos = nanos(cost_usd);
        // A free call changes no budget: it is only released, and writes no row.
        let row = (cost_nanos > 0).then(|| SpendRow {
            at_ms: self.state.clock.now_ms(),
            agent_id: self.agent_id.to_string(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cost_nanos,
        });
        self.state.settle(self.estimate, row)
    }

    /// A call cut short after `chars` of text: the tokens it used are
    /// estimated and charged, and the charge returned. Nobody waits for the
    /// write; the writer still records it.
    pub(crate) fn settle_partial(
        self,
        provider: &str,
        model: &str,
        chars: usize,
        resent_prompt: usize,
    ) -> Option<(Usage, f64)> {
        if chars == 0 && resent_prompt == 0 {
            return None; // Dropping releases it: nothing was generated.
        }
        let usage = Usage::estimate(self.prompt_chars + resent_prompt, chars);
        let cost = self.state.partial_cost(provider, model, usage);
        drop(self.settle(provider, model, usage, cost));
        Some((usage, cost))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.state.settle(self.estimate, None);
        }
    }
}

impl std::fmt::Debug for BudgetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetState")
            .field("windows", &*self.lock())
            .finish_non_exhaustive()
    }
}
