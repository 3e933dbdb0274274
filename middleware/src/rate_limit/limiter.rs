//! The buckets: one for everyone, or one per agent with a bounded agent count.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::clock::TokioClock;
use super::error::{InvalidRate, RateLimited};

type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, StateInformationMiddleware>;

/// Agents tracked at most; agents beyond share one overflow bucket.
pub(super) const MAX_AGENTS: usize = 10_000;
/// While there is room, every this many new agents, agents whose bucket is
/// full again are forgotten.
const SWEEP_EVERY: u64 = 1024;
/// With no room, the shortest time between two sweeps: clients choose their
/// own ids, so a flood of new ones must not sweep the whole map each.
const FULL_SWEEP_GAP: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct Limiter {
    buckets: Buckets,
    quota: Quota,
    clock: TokioClock,
}

#[derive(Debug)]
enum Buckets {
    Global(Bucket),
    PerAgent {
        agents: DashMap<Arc<str>, AgentBucket>,
        overflow: Bucket,
        sweep: Sweep,
    },
}

/// When idle agents are next looked for.
#[derive(Debug, Default)]
struct Sweep {
    new_agents: AtomicU64,
    /// Nanoseconds on the limiter's clock before which a full map is not swept.
    next_when_full: AtomicU64,
    #[cfg(test)]
    done: AtomicU64,
}

#[derive(Debug)]
struct AgentBucket {
    bucket: Bucket,
    /// Nanoseconds on the limiter's clock.
    last_seen: AtomicU64,
}

impl Limiter {
    pub(super) fn global(per_second: f64, burst: NonZeroU32) -> Result<Self, InvalidRate> {
        let quota = quota(per_second, burst)?;
        let clock = TokioClock::default();
        Ok(Self {
            buckets: Buckets::Global(bucket(quota, &clock)),
            quota,
            clock,
        })
    }

    pub(super) fn per_agent(per_second: f64, burst: NonZeroU32) -> Result<Self, InvalidRate> {
        let quota = quota(per_second, burst)?;
        let clock = TokioClock::default();
        Ok(Self {
            buckets: Buckets::PerAgent {
                agents: DashMap::new(),
                overflow: bucket(quota, &clock),
                sweep: Sweep::default(),
            },
            quota,
            clock,
        })
    }

    /// Takes a token for `agent`: `(bucket size, tokens left)`, or how long to wait.
    pub(super) fn check(&self, agent: &Arc<str>) -> Result<(u32, u32), RateLimited> {
        let outcome = match &self.buckets {
            Buckets::Global(bucket) => bucket.check(),
            Buckets::PerAgent {
                agents,
                overflow,
                sweep,
            } => {
                let now = self.clock.now();
                if let Some(known) = agents.get(agent) {
                    known.last_seen.store(nanos(now), Ordering::Relaxed);
                    known.bucket.check()
                } else {
                    self.make_room(agents, sweep, now);
                    if agents.len() >= MAX_AGENTS {
                        overflow.check()
                    } else {
                        let entry = agents.entry(agent.clone()).or_insert_with(|| AgentBucket {
                            bucket: bucket(self.quota, &self.clock),
                            last_seen: AtomicU64::new(nanos(now)),
                        });
                        entry.bucket.check()
                    }
                }
            }
        };
        match outcome {
            Ok(snapshot) => Ok((self.quota.burst_size().get(), snapshot.remaining_burst_capacity())),
            Err(not_until) => Err(RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
        }
    }

    /// Forgets idle agents at a bounded cost: every [`SWEEP_EVERY`] new
    /// agents while there is room; when the map is full, at most once per
    /// [`FULL_SWEEP_GAP`], and not before its oldest agent can have gone idle.
    fn make_room(&self, agents: &DashMap<Arc<str>, AgentBucket>, sweep: &Sweep, now: Duration) {
        let arrived = sweep.new_agents.fetch_add(1, Ordering::Relaxed);
        let due = if agents.len() >= MAX_AGENTS {
            let next = sweep.next_when_full.load(Ordering::Acquire);
            // One caller claims the sweep; the others go on to the overflow bucket.
            nanos(now) >= next
                && sweep
                    .next_when_full
                    .compare_exchange(next, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        } else {
            arrived % SWEEP_EVERY == 0
        };
        if !due {
            return;
        }
        let oldest = self.forget_idle(agents, now);
        let idle_at = oldest.saturating_add(nanos(self.refill()));
        let next = idle_at.max(nanos(now + FULL_SWEEP_GAP));
        sweep.next_when_full.store(next, Ordering::Release);
        #[cfg(test)]
        sweep.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops agents idle long enough for their bucket to be full again
    /// (forgetting them changes nothing they could notice), and returns when
    /// the longest-idle agent kept was last seen.
    fn forget_idle(&self, agents: &DashMap<Arc<str>, AgentBucket>, now: Duration) -> u64 {
        let (now, refill) = (nanos(now), nanos(self.refill()));
        let mut oldest = u64::MAX;
        agents.retain(|_, agent| {
            let seen = agent.last_seen.load(Ordering::Relaxed);
            let busy = seen.saturating_add(refill) > now;
            if busy {
                oldest = oldest.min(seen);
            }
            busy
        });
        oldest
    }

    /// The time between two tokens.
    pub(super) fn interval(&self) -> Duration {
        self.quota.replenish_interval()
    }

    /// How many tokens a bucket holds.
    pub(super) fn burst(&self) -> u32 {
        self.quota.burst_size().get()
    }

    /// The name of `agent`'s bucket in a shared store.
    pub(super) fn shared_key(&self, agent: &str) -> String {
        match self.buckets {
            Buckets::Global(_) => "global".to_owned(),
            Buckets::PerAgent { .. } => format!("agent:{agent}"),
        }
    }

    /// How long an unused bucket takes to fill up again.
    fn refill(&self) -> Duration {
        self.quota.replenish_interval() * self.quota.burst_size().get()
    }

    #[cfg(test)]
    pub(super) fn agents(&self) -> usize {
        match &self.buckets {
            Buckets::Global(_) => 1,
            Buckets::PerAgent { agents, .. } => agents.len(),
        }
    }

    #[cfg(test)]
    pub(super) fn sweeps(&self) -> u64 {
        match &self.buckets {
            Buckets::Global(_) => 0,
            Buckets::PerAgent { sweep, .. } => sweep.done.load(Ordering::Relaxed),
        }
    }
}

fn bucket(quota: Quota, clock: &TokioClock) -> Bucket {
    RateLimiter::direct_with_clock(quota, clock.clone()).with_middleware::<StateInformationMiddleware>()
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn quota(per_second: f64, burst: NonZeroU32) -> Result<Quota, InvalidRate> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return Err(InvalidRate(per_second));
    }
    let period = Duration::from_secs_f64(1.0 / per_second);
    let quota = Quota::with_period(period).ok_or(InvalidRate(per_second))?;
    Ok(quota.allow_burst(burst))
}
