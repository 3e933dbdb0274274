//! What a budget tells of its spend: totals for every scrape, and the
//! report of `/v1/usage`.

use std::collections::BTreeMap;

use super::ledger::Breakdown;
use super::state::{usd, Standing};
use super::utc;

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

impl WindowReport {
    /// The window starting at `start_ms`, with `limit` (nano-dollars).
    pub(super) fn new(start_ms: i64, spent: i64, reserved: i64, limit: i64, breakdown: Breakdown) -> Self {
        let dollars = |map: BTreeMap<String, i64>| map.into_iter().map(|(k, v)| (k, usd(v))).collect();
        Self {
            start: utc::rfc3339(start_ms.div_euclid(1000)),
            limit_usd: usd(limit),
            spent_usd: usd(spent),
            reserved_usd: usd(reserved),
            remaining_usd: usd((limit - spent - reserved).max(0)),
            by_agent: dollars(breakdown.by_agent),
            by_model: dollars(breakdown.by_model),
        }
    }
}

impl Totals {
    pub(super) fn new(limits: (i64, i64), standing: Standing) -> Self {
        Self {
            daily_limit_usd: usd(limits.0),
            monthly_limit_usd: usd(limits.1),
            day_spent_usd: usd(standing.day_spent),
            month_spent_usd: usd(standing.month_spent),
            reserved_usd: usd(standing.reserved),
        }
    }
}
