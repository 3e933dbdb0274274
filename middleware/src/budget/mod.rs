//! Daily and monthly USD budgets that cannot be overspent, even under
//! concurrency, and spend that survives a crash.
//!
//! Before a call, the most it may cost (its prompt plus every token it may
//! generate, at the dearest price of the models that may serve it) is
//! reserved, and the call goes on with that output cap (`max_tokens`) set, so
//! it cannot cost more. A call that could pass a limit, counting what is
//! spent and what calls in flight hold, is refused; so is a call to a model
//! the price table cannot price, unless the table's [`Unpriced`] policy says
//! otherwise. After the call its real cost is settled
//! and the rest released: complete answers when they arrive, streams when they
//! end, break, or the client goes away. A call's spend is durable in the
//! [`SpendLedger`] before its answer (or its stream's last frame) goes out.
//!
//! Several replicas share one budget with [`BudgetLayer::shared`] over a
//! [`PostgresLedger`]: reservations are then made in the database, atomic
//! across replicas, as leases that lapse when their replica dies; a call
//! the database cannot answer for in time is refused ([`error::LedgerUnreachable`]).
//!
//! ```
//! use std::sync::Arc;
//! use chrysalis_middleware::budget::{BudgetConfig, BudgetLayer, MemoryLedger, Route};
//! use chrysalis_services::{mock::{Mock, MockConfig}, pricing::PriceTable};
//! use tower::Layer;
//!
//! let mut config = BudgetConfig::new(50.0, 500.0, Arc::new(PriceTable::builtin())).unwrap();
//! // The mock serves calls; it is free unless the table prices its model.
//! config.routes = vec![Route::local("mock", "mock-1")];
//! let layer = BudgetLayer::new(config, Arc::new(MemoryLedger::default())).unwrap();
//! let budget = layer.handle();
//! let service = layer.layer(Mock::new(MockConfig::default()));
//! assert_eq!(budget.report().unwrap().day.limit_usd, 50.0);
//! ```

pub mod error;
mod estimate;
mod future;
mod ledger;
mod postgres;
mod report;
mod settle;
mod sqlite;
mod state;
mod utc;
mod windows;

use std::sync::Arc;
use std::task::{Context, Poll};

use chrysalis_services::pricing::PriceTable;
#[cfg(doc)]
use chrysalis_services::pricing::Unpriced;
use chrysalis_services::{ChatRequest, ChatResponse};
use tower::{BoxError, Layer, Service};

use crate::gate::AskFirst;
pub use future::{Call, ResponseFuture, Settled};
pub use ledger::{Breakdown, Commit, MemoryLedger, SpendLedger, SpendRow};
pub use postgres::{PostgresConfig, PostgresLedger};
pub use report::{Totals, UsageReport, WindowReport};
pub use sqlite::{Durability, SqliteLedger};
pub use state::{SystemClock, WallClock};
pub use utc::rfc3339;

use error::{InvalidBudget, LedgerError};
use state::{BudgetState, Reserved};

/// Limits and the prices to estimate with.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// USD a UTC day.
    pub daily_usd: f64,
    /// USD a UTC month.
    pub monthly_usd: f64,
    /// Prices, to estimate what a call may cost.
    pub prices: Arc<PriceTable>,
    /// The providers that may serve a call, in failover order: the first
    /// serves the model the call names (its own when it names none), the
    /// others their own. A call is reserved at the dearest. With no routes,
    /// only the model the call names is priced.
    pub routes: Vec<Route>,
    /// The output cap reserved for, and set on, a call that sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// A stream cut short may be finished by a second call (failover's
    /// resume), which repeats the prompt with the text so far: each call is
    /// reserved for twice, plus its output cap again as prompt.
    pub resumable: bool,
}

/// A provider that may serve a call, and the model it would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The provider (`openai`, `anthropic`, `openrouter`, ...).
    pub provider: &'static str,
    /// Its model: the primary's default, a fallback's pinned or default one.
    pub model: String,
    /// Runs on hardware already paid for (Ollama, the mock): free unless the
    /// price table names its model, and never refused as unpriced.
    pub local: bool,
}

impl Route {
    /// A provider that charges for its calls.
    pub fn paid(provider: &'static str, model: impl Into<String>) -> Self {
        Self {
            provider,
            model: model.into(),
            local: false,
        }
    }

    /// A provider that runs locally.
    pub fn local(provider: &'static str, model: impl Into<String>) -> Self {
        Self {
            local: true,
            ..Self::paid(provider, model)
        }
    }
}

impl BudgetConfig {
    /// Limits of `daily_usd` and `monthly_usd`, reserving 4096 output tokens
    /// for calls that set no `max_tokens`.
    pub fn new(daily_usd: f64, monthly_usd: f64, prices: Arc<PriceTable>) -> Result<Self, InvalidBudget> {
        for limit in [daily_usd, monthly_usd] {
            if !(limit.is_finite() && limit >= 0.0) {
                return Err(InvalidBudget(limit));
            }
        }
        Ok(Self {
            daily_usd,
            monthly_usd,
            prices,
            routes: Vec::new(),
            default_max_tokens: 4096,
            resumable: false,
        })
    }
}

/// Applies the budget; every service made by one layer shares its spend.
#[derive(Debug, Clone)]
#[must_use]
pub struct BudgetLayer {
    state: Arc<BudgetState>,
}

impl BudgetLayer {
    /// A budget over `ledger`, starting from what it holds for this day and month.
    pub fn new(config: BudgetConfig, ledger: Arc<dyn SpendLedger>) -> Result<Self, LedgerError> {
        Self::with_clock(config, ledger, Arc::new(SystemClock))
    }

    /// The same, with windows that follow `clock`.
    pub fn with_clock(
        config: BudgetConfig,
        ledger: Arc<dyn SpendLedger>,
        clock: Arc<dyn WallClock>,
    ) -> Result<Self, LedgerError> {
        Ok(Self {
            state: Arc::new(BudgetState::open(config, ledger, clock)?),
        })
    }

    /// A budget kept in `ledger`, shared with every gateway that uses the
    /// same database and schema: together they stay within the limits.
    pub fn shared(config: BudgetConfig, ledger: PostgresLedger) -> Self {
        Self {
            state: Arc::new(BudgetState::shared(config, ledger, Arc::new(SystemClock))),
        }
    }

    /// Reads spend and limits.
    pub fn handle(&self) -> BudgetHandle {
        BudgetHandle(self.state.clone())
    }
}

/// Reads a budget's spend and limits.
#[derive(Debug, Clone)]
pub struct BudgetHandle(Arc<BudgetState>);

impl BudgetHandle {
    /// Spend and limits now, without reading the ledger (with a shared one,
    /// what the database last said: refreshed by every call, at least every 5 s).
    pub fn totals(&self) -> Totals {
        self.0.totals()
    }

    /// Spend, limits and what is left, today and this month, by agent and
    /// model. Reads the ledger (with a shared one, waits for the database):
    /// call it off the async workers, as with `spawn_blocking`.
    pub fn report(&self) -> Result<UsageReport, LedgerError> {
        self.0.report()
    }

    /// With a shared ledger: whether it answered the last call.
    pub fn shared_store_up(&self) -> Option<bool> {
        self.0.shared_up()
    }

    /// What the budget charges `usage` of a stream `provider` cut short
    /// serving `model` (its price there; nothing if it has none).
    pub fn cut_cost(&self, provider: &str, model: &str, usage: chrysalis_services::Usage) -> f64 {
        self.0.partial_cost(provider, model, usage)
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = Budget<S>;

    fn layer(&self, inner: S) -> Budget<S> {
        Budget {
            inner,
            state: self.state.clone(),
        }
    }
}

/// A service whose calls are held to a budget.
#[derive(Debug, Clone)]
pub struct Budget<S> {
    inner: S,
    state: Arc<BudgetState>,
}

crate::wraps_inner!(Budget);

impl<S> Service<ChatRequest> for Budget<S>
where
    S: Service<ChatRequest, Response = ChatResponse> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: ChatRequest) -> Self::Future {
        // The cap reserved for is the cap sent: no answer can run past it.
        request.max_tokens.get_or_insert(self.state.default_max_tokens());
        match self.state.reserve(&request) {
            Ok(Reserved::Held(reservation)) => future::called(&mut self.inner, request, reservation),
            Ok(Reserved::Asking(answer, asking)) => {
                let inner = crate::take_ready(&mut self.inner);
                AskFirst::asking(answer, Call::new(inner, request, asking, self.state.clone()))
            }
            Err(refused) => future::refused(refused),
        }
    }
}

#[cfg(test)]
mod tests;
