//! Settling a streamed call when its stream ends, breaks or is dropped.

use chrysalis_services::{CutCharge, ResentPrompt};

use super::state::Reservation;
use crate::observe::{Hold, Observer, Outcome};

/// The reservation of a streamed call, with who serves it.
pub(super) struct SettleStream {
    pub(super) reservation: Reservation,
    pub(super) provider: &'static str,
    pub(super) model: String,
    /// Where a cut stream's charge is told to the layers outside.
    pub(super) cut_charge: CutCharge,
    /// Prompt bytes sent again to finish the stream, charged if it is cut.
    pub(super) resent_prompt: ResentPrompt,
}

impl Observer for SettleStream {
    fn finish(self, outcome: Outcome<'_>) -> Option<Hold> {
        let Self {
            reservation,
            provider,
            model,
            cut_charge,
            resent_prompt,
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
                if let Some((usage, cost_usd)) =
                    reservation.settle_partial(provider, &model, chars, resent_prompt.get())
                {
                    cut_charge.set(usage, cost_usd);
                }
                None
            }
        }
    }
}
