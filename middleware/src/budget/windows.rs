//! The day's and month's spend of a budget kept in this process, and what
//! its calls in flight hold.

use super::state::Standing;
use super::utc;

#[derive(Debug, Clone, Copy)]
pub(super) struct Windows {
    pub(super) day_start_ms: i64,
    pub(super) month_start_ms: i64,
    pub(super) day_spent: i64,
    pub(super) month_spent: i64,
    /// The day and month last left (start, spent): a clock stepped back
    /// returns to them.
    left_day: (i64, i64),
    left_month: (i64, i64),
    /// Held by calls in flight, in both windows.
    pub(super) reserved: i64,
}

impl Windows {
    pub(super) fn new() -> Self {
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

    /// What is spent in each window and held by calls in flight.
    pub(super) fn standing(&self) -> Standing {
        Standing {
            day_spent: self.day_spent,
            month_spent: self.month_spent,
            reserved: self.reserved,
        }
    }

    /// Starts new windows when the UTC day or month has turned.
    pub(super) fn roll(&mut self, now_ms: i64) {
        let (day, month) = utc::window_starts_ms(now_ms);
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
