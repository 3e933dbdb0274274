//! When, and how long after, a failed call is tried again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrysalis_services::{ChatRequest, ChatResponse, ErrorKind, ProviderError};
use tokio::time::{sleep, Instant, Sleep};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use tower::util::rng::{HasherRng, Rng};
use tower::BoxError;

use super::error::Retried;

/// Why a call was tried again, as `gateway_retries_total` labels it.
pub const REASONS: [&str; 5] = ["connect", "429", "500", "502", "503"];

#[derive(Debug)]
pub(crate) struct Shared {
    provider: &'static str,
    max_retries: u32,
    backoff: Duration,
    deadline: Duration,
    budget: TpsBudget,
    rng: Mutex<HasherRng>,
    retries: [AtomicU64; REASONS.len()],
}

impl Shared {
    pub(crate) fn new(
        provider: &'static str,
        max_retries: u32,
        backoff: Duration,
        deadline: Duration,
        budget: TpsBudget,
    ) -> Self {
        Self {
            provider,
            max_retries,
            backoff,
            deadline,
            budget,
            rng: Mutex::new(HasherRng::new()),
            retries: Default::default(),
        }
    }

    /// The n-th retry's backoff (n from 1): anywhere up to base x 2^(n-1).
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff.saturating_mul(1 << (retry - 1).min(16));
        let share = self.rng.lock().unwrap_or_else(|p| p.into_inner()).next_f64();
        ceiling.mul_f64(share)
    }
}

/// The retry policy of one call: how many tries it made and what failed.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    shared: Arc<Shared>,
    started: Instant,
    earlier: Vec<ProviderError>,
}

impl RetryPolicy {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            started: Instant::now(),
            earlier: Vec::new(),
        }
    }

    /// The policy of a call made now: it counts toward the retry budget.
    pub(crate) fn starting_now(&self) -> Self {
        self.shared.budget.deposit();
        Self {
            shared: self.shared.clone(),
            started: Instant::now(),
            earlier: Vec::new(),
        }
    }

    pub(crate) fn handle(&self) -> RetryHandle {
        RetryHandle(self.shared.clone())
    }

    /// How long to wait before trying `error`'s call again, if it should be.
    fn wait_for(&self, error: &ProviderError) -> Option<(usize, Duration)> {
        let reason = reason(error)?;
        let retry = self.earlier.len() as u32 + 1;
        if retry > self.shared.max_retries {
            return None;
        }
        let wait = error.retry_after.unwrap_or_else(|| self.shared.backoff(retry));
        let left = self.shared.deadline.saturating_sub(self.started.elapsed());
        // A wait past the deadline would time out anyway: fail over now.
        if wait >= left {
            tracing::debug!(
                provider = self.shared.provider,
                ?wait,
                "retry would end past the deadline; failing over"
            );
            return None;
        }
        if !self.shared.budget.withdraw() {
            tracing::warn!(provider = self.shared.provider, "retry budget spent; failing over");
            return None;
        }
        Some((reason, wait))
    }
}

/// Which of [`REASONS`] makes `error` worth another try, if one does.
fn reason(error: &ProviderError) -> Option<usize> {
    let label = match &error.kind {
        ErrorKind::Connect(_) => "connect",
        ErrorKind::Status { status, .. } => match status {
            429 => "429",
            500 => "500",
            502 => "502",
            503 => "503",
            _ => return None,
        },
        _ => return None,
    };
    REASONS.iter().position(|r| *r == label)
}

impl Policy<ChatRequest, ChatResponse, BoxError> for RetryPolicy {
    type Future = Sleep;

    fn retry(&mut self, _: &mut ChatRequest, result: &mut Result<ChatResponse, BoxError>) -> Option<Sleep> {
        let error = result.as_ref().err()?;
        let Some(failed) = error.downcast_ref::<ProviderError>() else {
            self.finish(result);
            return None;
        };
        match self.wait_for(failed) {
            Some((reason, wait)) => {
                self.shared.retries[reason].fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    provider = self.shared.provider,
                    reason = REASONS[reason],
                    ?wait,
                    "retrying"
                );
                self.earlier.push(failed.clone());
                Some(sleep(wait))
            }
            None => {
                self.finish(result);
                None
            }
        }
    }

    fn clone_request(&mut self, request: &ChatRequest) -> Option<ChatRequest> {
        Some(request.clone())
    }
}

impl RetryPolicy {
    /// A failure after retries carries the earlier tries' errors.
    fn finish(&mut self, result: &mut Result<ChatResponse, BoxError>) {
        if self.earlier.is_empty() {
            return;
        }
        if let Err(last) = result {
            let last = std::mem::replace(last, BoxError::from("replaced"));
            *result = Err(Box::new(Retried {
                earlier: std::mem::take(&mut self.earlier),
                last,
            }));
        }
    }
}

/// The retries a [`RetryLayer`](super::RetryLayer) made, by reason.
#[derive(Debug, Clone)]
pub struct RetryHandle(Arc<Shared>);

impl RetryHandle {
    /// Each of [`REASONS`] with its count so far.
    pub fn retries(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS
            .iter()
            .zip(&self.0.retries)
            .map(|(reason, count)| (*reason, count.load(Ordering::Relaxed)))
    }
}
