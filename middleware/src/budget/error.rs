//! The budget's own failures.

use std::fmt;

/// A budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The UTC day.
    Daily,
    /// The UTC month.
    Monthly,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        })
    }
}

/// The call could pass a budget: refused before any provider was called.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "the {window} budget of ${limit_usd:.2} would be exceeded: ${spent_usd:.6} spent, \
     ${reserved_usd:.6} reserved by calls in flight, and this call may cost up to ${estimate_usd:.6}"
)]
pub struct BudgetExceeded {
    /// Which window.
    pub window: Window,
    /// Its limit.
    pub limit_usd: f64,
    /// Spent in it so far.
    pub spent_usd: f64,
    /// Held by calls in flight.
    pub reserved_usd: f64,
    /// The most this call may cost.
    pub estimate_usd: f64,
}

/// The call names a model the price table cannot price, so the budget
/// cannot bound what it would cost: refused before any provider was called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model `{model}` has no price, so the budget cannot bound what a call to {provider} would cost;      add its price to the price table"
)]
pub struct UnpricedModel {
    /// The provider that would serve it.
    pub provider: &'static str,
    /// The model.
    pub model: String,
}

/// A limit that is not a non-negative number of dollars.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("a budget must be a non-negative number of dollars, not {0}")]
pub struct InvalidBudget(pub f64);

/// The spend ledger failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spend ledger: {0}")]
pub struct LedgerError(pub String);

/// The shared spend ledger did not answer in time: the call is refused, as
/// no money may be spent that could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("spend ledger unreachable: no call is made while its spend could not be recorded; retry shortly")]
pub struct LedgerUnreachable;
