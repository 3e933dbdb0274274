//! Settling a streamed call when its stream ends, breaks or is dropped.

use super::state::Reservation;
use crate::observe::{Hold, Observer, Outcome};

/// The reservation of a streamed call, with who serves it.
pub(super) struct SettleStream {
    pub(super) reservation: Reservation,
    pub(super) provider: &'static str,
    pub(super) model: String,
}

impl Observer for SettleStream {
    fn finish(self, outcome: Outcome<'_>) -> Option<Hold> {
        let Self {
            reservation,
            provider,
            model,
        } = self;
        match outcome {
            Outcome::Completed { usage, cost_usd } => {
                let commit = reservation.settle(provider, &model, usage, cost_usd)?;
                // The last frame waits until the spend is durable.
                Some(Box::pin(async move {
                    let _ = commit.await;
                }))
            }
            Outcome::Failed { chars, .. } | Outcome::Dropped { chars, .. } => {
                // Nobody waits for a cut stream's spend; the writer still records it.
                drop(reservation.settle_partial(provider, &model, chars));
                None
            }
        }
    }
}
