//! Spend and reservations per window, shared by every clone of the service:
//! kept in this process over a [`SpendLedger`], or in a database every
//! replica shares.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use chrysalis_services::{ChatRequest, Usage};
use tokio::sync::oneshot;
use tower::BoxError;

use super::error::{BudgetExceeded, LedgerError, LedgerUnreachable, Window};
use super::ledger::{Commit, SpendLedger, SpendRow};
use super::postgres::{Admission, PostgresLedger};
use super::report::{Totals, UsageReport, WindowReport};
use super::utc;
use super::windows::Windows;
use super::BudgetConfig;

const NANOS_PER_USD: f64 = 1e9;

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
    pub(super) config: BudgetConfig,
    clock: Arc<dyn WallClock>,
    accounts: Accounts,
}

/// Where reservations are decided and spend is kept.
enum Accounts {
    /// In this process, over a ledger of its own.
    Local {
        ledger: Arc<dyn SpendLedger>,
        windows: Mutex<Windows>,
    },
    /// In a database every replica shares.
    Shared(PostgresLedger),
}

/// What is spent and held, in nano-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub(crate) day_spent: i64,
    pub(crate) month_spent: i64,
    pub(crate) reserved: i64,
}

/// A call's reservation: held here, or asked of the shared ledger.
pub(crate) enum Reserved {
    Held(Reservation),
    Asking(oneshot::Receiver<Admission>, Asking),
}

/// A reservation the shared ledger has yet to answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asking {
    seq: i64,
    estimate: i64,
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
        let windows = Mutex::new(windows);
        Ok(Self::with(config, clock, Accounts::Local { ledger, windows }))
    }

    /// A budget kept in the shared ledger.
    pub(crate) fn shared(config: BudgetConfig, ledger: PostgresLedger, clock: Arc<dyn WallClock>) -> Self {
        Self::with(config, clock, Accounts::Shared(ledger))
    }

    fn with(config: BudgetConfig, clock: Arc<dyn WallClock>, accounts: Accounts) -> Self {
        Self {
            daily: nanos(config.daily_usd),
            monthly: nanos(config.monthly_usd),
            config,
            clock,
            accounts,
        }
    }

    pub(crate) fn default_max_tokens(&self) -> u32 {
        self.config.default_max_tokens
    }

    /// Holds the most `request` may cost, or refuses it if that could pass a
    /// limit or cannot be priced; with a shared ledger, asks it to.
    pub(crate) fn reserve(self: &Arc<Self>, request: &ChatRequest) -> Result<Reserved, BoxError> {
        let estimate = self.estimate(request)?;
        let now_ms = self.clock.now_ms();
        let windows = match &self.accounts {
            Accounts::Local { windows, .. } => windows,
            Accounts::Shared(ledger) => {
                let limits = (self.daily, self.monthly);
                let windows = utc::window_starts_ms(now_ms);
                let (seq, answer) = ledger.reserve(&request.agent_id, estimate, windows, limits);
                return Ok(Reserved::Asking(answer, Asking { seq, estimate }));
            }
        };
        let mut windows = lock(windows);
        windows.roll(now_ms);
        let standing = windows.standing();
        if let Some(exceeded) = self.exceeded(standing, estimate) {
            return Err(exceeded.into());
        }
        windows.reserved += estimate;
        Ok(Reserved::Held(self.reservation(request, estimate, 0)))
    }

    /// The reservation the shared ledger granted, or why it did not.
    pub(crate) fn answered(
        self: &Arc<Self>,
        request: &ChatRequest,
        asking: Asking,
        answer: Result<Admission, oneshot::error::RecvError>,
    ) -> Result<Reservation, BoxError> {
        match answer {
            Ok(Admission::Admitted(_)) => Ok(self.reservation(request, asking.estimate, asking.seq)),
            Ok(Admission::Refused(standing)) => {
                let exceeded = self.exceeded(standing, asking.estimate);
                // A replica with lower limits than this one refused on their account.
                Err(exceeded
                    .unwrap_or_else(|| self.window_exceeded(Window::Daily, standing, asking.estimate))
                    .into())
            }
            Err(_) => Err(LedgerUnreachable.into()),
        }
    }

    fn reservation(self: &Arc<Self>, request: &ChatRequest, estimate: i64, seq: i64) -> Reservation {
        Reservation {
            state: self.clone(),
            estimate,
            seq,
            agent_id: request.agent_id.clone(),
            prompt_chars: request.prompt_chars(),
            settled: false,
        }
    }

    /// The first window that `estimate` more would pass.
    fn exceeded(&self, standing: Standing, estimate: i64) -> Option<BudgetExceeded> {
        let over = |spent: i64, limit: i64| spent + standing.reserved + estimate > limit;
        if over(standing.day_spent, self.daily) {
            Some(self.window_exceeded(Window::Daily, standing, estimate))
        } else if over(standing.month_spent, self.monthly) {
            Some(self.window_exceeded(Window::Monthly, standing, estimate))
        } else {
            None
        }
    }

    fn window_exceeded(&self, window: Window, standing: Standing, estimate: i64) -> BudgetExceeded {
        let (spent, limit) = match window {
            Window::Daily => (standing.day_spent, self.daily),
            Window::Monthly => (standing.month_spent, self.monthly),
        };
        BudgetExceeded {
            window,
            limit_usd: usd(limit),
            spent_usd: usd(spent),
            reserved_usd: usd(standing.reserved),
            estimate_usd: usd(estimate),
        }
    }

    fn settle(&self, estimate: i64, seq: i64, row: Option<SpendRow>) -> Option<Commit> {
        let (ledger, windows) = match &self.accounts {
            Accounts::Local { ledger, windows } => (ledger, windows),
            Accounts::Shared(ledger) => {
                let Some(row) = row else {
                    ledger.release(seq);
                    return None;
                };
                return Some(ledger.settle(seq, row));
            }
        };
        let mut windows = lock(windows);
        windows.roll(self.clock.now_ms());
        windows.reserved -= estimate;
        let row = row?;
        windows.day_spent += row.cost_nanos;
        windows.month_spent += row.cost_nanos;
        // Appended under the lock, so the ledger's order is the spend's order.
        Some(ledger.append(row))
    }

    /// Spend and limits; with a shared ledger, what it last said.
    pub(crate) fn totals(&self) -> Totals {
        let limits = (self.daily, self.monthly);
        let windows = match &self.accounts {
            Accounts::Local { windows, .. } => windows,
            Accounts::Shared(ledger) => {
                return Totals::new(limits, ledger.standing(utc::window_starts_ms(self.clock.now_ms())));
            }
        };
        let mut windows = lock(windows);
        windows.roll(self.clock.now_ms());
        Totals::new(limits, windows.standing())
    }

    /// Spend, limits and what is left, by agent and model; read from the
    /// ledger (with a shared one, every replica's).
    pub(crate) fn report(&self) -> Result<UsageReport, LedgerError> {
        let (ledger, windows) = match &self.accounts {
            Accounts::Local { ledger, windows } => (ledger, windows),
            Accounts::Shared(ledger) => return self.shared_report(ledger),
        };
        let windows = {
            let mut windows = lock(windows);
            windows.roll(self.clock.now_ms());
            *windows
        };
        let report = |start_ms: i64, spent: i64, limit: i64| -> Result<WindowReport, LedgerError> {
            let breakdown = ledger.breakdown_since(start_ms)?;
            Ok(WindowReport::new(start_ms, spent, windows.reserved, limit, breakdown))
        };
        Ok(UsageReport {
            day: report(windows.day_start_ms, windows.day_spent, self.daily)?,
            month: report(windows.month_start_ms, windows.month_spent, self.monthly)?,
        })
    }

    fn shared_report(&self, ledger: &PostgresLedger) -> Result<UsageReport, LedgerError> {
        let (day_ms, month_ms) = utc::window_starts_ms(self.clock.now_ms());
        let shared = ledger.report((day_ms, month_ms))?;
        let Standing {
            day_spent,
            month_spent,
            reserved,
        } = shared.standing;
        Ok(UsageReport {
            day: WindowReport::new(day_ms, day_spent, reserved, self.daily, shared.day),
            month: WindowReport::new(month_ms, month_spent, reserved, self.monthly, shared.month),
        })
    }

    /// With a shared ledger: whether it answered the last call.
    pub(crate) fn shared_up(&self) -> Option<bool> {
        match &self.accounts {
            Accounts::Local { .. } => None,
            Accounts::Shared(ledger) => Some(ledger.is_up()),
        }
    }
}

fn lock(windows: &Mutex<Windows>) -> MutexGuard<'_, Windows> {
    windows.lock().unwrap_or_else(|p| p.into_inner())
}

/// Money held for one call; settled exactly once, released if dropped.
pub(crate) struct Reservation {
    state: Arc<BudgetState>,
    estimate: i64,
    /// Its number in the shared ledger.
    seq: i64,
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
        self.state.settle(self.estimate, self.seq, row)
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
            self.state.settle(self.estimate, self.seq, None);
        }
    }
}

impl std::fmt::Debug for BudgetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("BudgetState");
        match &self.accounts {
            Accounts::Local { windows, .. } => debug.field("windows", &*lock(windows)),
            Accounts::Shared(ledger) => debug.field("shared", ledger),
        };
        debug.finish_non_exhaustive()
    }
}
