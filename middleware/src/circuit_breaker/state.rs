//! The breaker's state machine, shared by every clone of the service.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::error::Open;
use crate::observe::{Hold, Observer, Outcome};

/// What a circuit is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `retry_at`.
    Open {
        /// When a probe may go through.
        retry_at: Instant,
    },
    /// One probe is in flight; other calls are refused.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// How long callers are told to wait while a probe is in flight.
const PROBE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) provider: &'static str,
    pub(crate) threshold: u32,
    pub(crate) reset: Duration,
    state: Mutex<State>,
    /// Changes of state so far, by the state entered (closed, open, half-open).
    transitions: [AtomicU64; 3],
}

/// Reads a circuit's state (for metrics and `/v1/providers`).
#[derive(Debug, Clone)]
pub struct CircuitHandle(pub(crate) Arc<Breaker>);

impl CircuitHandle {
    /// The state now.
    pub fn state(&self) -> CircuitState {
        match *self.0.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } => CircuitState::Open { retry_at: until },
            State::HalfOpen => CircuitState::HalfOpen,
        }
    }

    /// The provider behind the circuit.
    pub fn provider(&self) -> &'static str {
        self.0.provider
    }

    /// How many times the circuit entered each state: `closed`, `open`, `half_open`.
    pub fn transitions(&self) -> [(&'static str, u64); 3] {
        let count = |i: usize| self.0.transitions[i].load(Ordering::Relaxed);
        [("closed", count(0)), ("open", count(1)), ("half_open", count(2))]
    }
}

/// Whether a call went through as an ordinary call or as the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
    /// The call was abandoned before it said anything about the provider.
    Unknown,
}

impl Breaker {
    pub(crate) fn new(provider: &'static str, threshold: u32, reset: Duration) -> Self {
        Self {
            provider,
            threshold,
            reset,
            state: Mutex::new(State::Closed { failures: 0 }),
            transitions: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a call through, with the ticket that must report its verdict.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Ticket, Open> {
        let mut state = self.lock();
        let admission = match *state {
            State::Closed { .. } => Admission::Normal,
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(self.open(until - now));
                }
                *state = State::HalfOpen;
                self.entered(&state);
                Admission::Probe
            }
            State::HalfOpen => return Err(self.open(PROBE_WAIT)),
        };
        Ok(Ticket {
            breaker: self.clone(),
            admission,
            verdict: None,
        })
    }

    fn open(&self, retry_after: Duration) -> Open {
        Open {
            provider: self.provider,
            retry_after,
        }
    }

    fn record(&self, admission: Admission, verdict: Verdict) {
        let mut state = self.lock();
        let next = match (admission, &*state, verdict) {
            (Admission::Probe, _, Verdict::Success) => State::Closed { failures: 0 },
            (Admission::Probe, _, Verdict::Failure) => State::Open {
                until: Instant::now() + self.reset,
            },
            // An abandoned probe frees the way for the next caller to probe.
            (Admission::Probe, _, Verdict::Unknown) => State::Open { until: Instant::now() },
            (Admission::Normal, State::Closed { .. }, Verdict::Success) => State::Closed { failures: 0 },
            (Admission::Normal, State::Closed { failures }, Verdict::Failure) if failures + 1 >= self.threshold => {
                State::Open {
                    until: Instant::now() + self.reset,
                }
            }
            (Admission::Normal, State::Closed { failures }, Verdict::Failure) => {
                State::Closed { failures: failures + 1 }
            }
            // Late answers from before the circuit opened change nothing.
            _ => return,
        };
        log_transition(self.provider, &state, &next);
        let changed = std::mem::discriminant(&*state) != std::mem::discriminant(&next);
        *state = next;
        if changed {
            self.entered(&state);
        }
    }

    fn entered(&self, state: &State) {
        let index = match state {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen => 2,
        };
        self.transitions[index].fetch_add(1, Ordering::Relaxed);
    }
}

fn log_transition(provider: &'static str, from: &State, to: &State) {
    match (from, to) {
        (State::Closed { .. }, State::Open { .. }) => tracing::warn!(provider, "circuit opened"),
        (State::HalfOpen, State::Open { .. }) => {
            tracing::warn!(provider, "probe failed: circuit open again")
        }
        (State::HalfOpen, State::Closed { .. }) => {
            tracing::info!(provider, "probe succeeded: circuit closed")
        }
        _ => {}
    }
}

/// One admitted call; reports its verdict exactly once, `Unknown` if dropped.
#[derive(Debug)]
pub struct Ticket {
    breaker: Arc<Breaker>,
    admission: Admission,
    verdict: Option<Verdict>,
}

impl Ticket {
    pub(crate) fn record(mut self, verdict: Verdict) {
        self.verdict = Some(verdict);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let verdict = self.verdict.unwrap_or(Verdict::Unknown);
        self.breaker.record(self.admission, verdict);
    }
}

impl Observer for Ticket {
    fn finish(self, outcome: Outcome<'_>) -> Option<Hold> {
        let verdict = match outcome {
            Outcome::Completed { .. } => Verdict::Success,
            Outcome::Failed { error, .. } => verdict_of(error),
            // The client left; text had flowed, so the provider was working.
            Outcome::Dropped { chunks, .. } if chunks > 0 => Verdict::Success,
            Outcome::Dropped { .. } => Verdict::Unknown,
        };
        self.record(verdict);
        None
    }
}

pub(crate) fn verdict_of(error: &(dyn std::error::Error + 'static)) -> Verdict {
    if crate::fault::is_client_error(error) || crate::fault::is_unsupported(error) {
        // The provider answered (or was not asked); the request was at fault.
        Verdict::Success
    } else {
        Verdict::Failure
    }
}
