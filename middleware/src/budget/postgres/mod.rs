//! The spend ledger several replicas share, in PostgreSQL: one budget
//! whichever replica a call reaches.
//!
//! A call's reservation is made in the database, by one statement (the
//! `reserve` function of the schema) that takes a lock every reservation
//! takes, reads what is spent and what live reservations hold, and holds the
//! call's estimate if it fits: replicas racing for the last dollars queue on
//! that lock, so together they never admit more than the limits. A
//! reservation carries an expiry in the database's clock; each replica
//! extends those of its calls still running, so a replica that dies releases
//! its holds within the expiry. A settle records the call's row, adds it to
//! the window totals and drops the reservation in one transaction, committed
//! before the answer (or a stream's last frame) goes out; a settle whose
//! answer was lost is retried until the database has it, and counted once.
//!
//! Every call goes through a thread of the ledger's own, reached by a
//! channel: no request future holds a connection, and each wait is bounded
//! by the store timeout. A reservation that gets no answer in time is
//! refused: no money is spent that could not be recorded.
//!
//! ```no_run
//! use std::time::Duration;
//! use chrysalis_middleware::budget::{PostgresConfig, PostgresLedger};
//!
//! let mut config = PostgresConfig::new("postgres://gateway@db.internal/llm");
//! config.reservation_ttl = Duration::from_secs(60);
//! let ledger = PostgresLedger::connect(config).expect("the database is reachable");
//! # let _ = ledger;
//! ```

mod calls;
mod outbox;
mod schema;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::error::LedgerError;
use super::ledger::{Breakdown, Commit, SpendRow};
use super::state::Standing;
use worker::{Job, Reserve, Settle};

/// Where the shared ledger lives and how long its calls may take.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host[:port]/database[?options]`.
    pub url: String,
    /// The schema holding the ledger's tables: replicas sharing a budget name the same one.
    pub schema: String,
    /// The most a reservation, settle or connect may wait for the database.
    pub timeout: Duration,
    /// How long a reservation outlives the last word of its replica.
    pub reservation_ttl: Duration,
    /// Connections to the database, at most.
    pub connections: usize,
    /// A local SQLite file keeping settles the database did not take, until
    /// it does, across restarts; `None`: they wait in memory only.
    pub outbox: Option<PathBuf>,
}

impl PostgresConfig {
    /// The ledger at `url`, in schema `chrysalis`, with a 200 ms timeout,
    /// reservations that lapse 30 s after their replica stops renewing
    /// them, and up to 8 connections.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "chrysalis".into(),
            timeout: Duration::from_millis(200),
            reservation_ttl: Duration::from_secs(30),
            connections: 8,
            outbox: None,
        }
    }
}

/// The database's answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Held; the standing includes it.
    Admitted(Standing),
    /// It would pass a limit.
    Refused(Standing),
}

/// A window's spend, read from the database.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedReport {
    pub(crate) standing: Standing,
    pub(crate) day: Breakdown,
    pub(crate) month: Breakdown,
}

/// A handle on the shared ledger; clones share its thread and connections.
#[derive(Debug, Clone)]
pub struct PostgresLedger {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    /// Reservations: bounded, so a stalled database refuses calls rather than queueing them.
    reserves: mpsc::Sender<Reserve>,
    /// Settles, releases and reports: each belongs to a call already admitted.
    jobs: mpsc::UnboundedSender<Job>,
    next_seq: AtomicI64,
    status: Arc<Status>,
    timeout: Duration,
}

/// Whether the database answers, and the totals it last gave.
#[derive(Debug, Default)]
pub(crate) struct Status {
    up: AtomicBool,
    day_ms: AtomicI64,
    month_ms: AtomicI64,
    day_spent: AtomicI64,
    month_spent: AtomicI64,
    reserved: AtomicI64,
}

impl Status {
    /// Records whether the database answered; says so once per change.
    pub(crate) fn answered(&self, answered: bool) {
        match (self.up.swap(answered, Ordering::Relaxed), answered) {
            (true, false) => tracing::warn!(
                store = "postgres",
                "shared spend ledger unreachable: calls are refused (503) until it is back"
            ),
            (false, true) => tracing::info!(store = "postgres", "shared spend ledger is back"),
            _ => {}
        }
    }

    /// Keeps what the database said of the windows starting at `windows`.
    pub(crate) fn remember(&self, windows: (i64, i64), standing: Standing) {
        self.day_ms.store(windows.0, Ordering::Relaxed);
        self.month_ms.store(windows.1, Ordering::Relaxed);
        self.day_spent.store(standing.day_spent, Ordering::Relaxed);
        self.month_spent.store(standing.month_spent, Ordering::Relaxed);
        self.reserved.store(standing.reserved, Ordering::Relaxed);
    }

    /// Counts a settle between two readings: `held` released, `cost` spent.
    pub(crate) fn settled(&self, held: i64, cost: i64) {
        self.reserved.fetch_sub(held, Ordering::Relaxed);
        self.day_spent.fetch_add(cost, Ordering::Relaxed);
        self.month_spent.fetch_add(cost, Ordering::Relaxed);
    }

    /// The windows last asked about.
    pub(crate) fn windows(&self) -> (i64, i64) {
        (
            self.day_ms.load(Ordering::Relaxed),
            self.month_ms.load(Ordering::Relaxed),
        )
    }
}

impl PostgresLedger {
    /// Connects, creates or migrates the schema, and starts the ledger's
    /// thread. Fails if the database cannot be reached at start-up.
    pub fn connect(config: PostgresConfig) -> Result<Self, LedgerError> {
        let status = Arc::new(Status::default());
        let timeout = config.timeout;
        let (reserves, jobs, replica) = worker::start(config, status.clone())?;
        tracing::info!(store = "postgres", replica, "shared spend ledger ready");
        Ok(Self {
            handle: Arc::new(Handle {
                reserves,
                jobs,
                next_seq: AtomicI64::new(1),
                status,
                timeout,
            }),
        })
    }

    /// Whether the database answered the last call.
    pub fn is_up(&self) -> bool {
        self.handle.status.up.load(Ordering::Relaxed)
    }

    /// Asks to hold `nanos` for a call of `agent` in the windows starting at
    /// `windows` (day, month), within `limits`. The call's number, and the
    /// answer; no answer (a closed channel) means the database is unreachable.
    pub(crate) fn reserve(
        &self,
        agent: &Arc<str>,
        nanos: i64,
        windows: (i64, i64),
        limits: (i64, i64),
    ) -> (i64, oneshot::Receiver<Admission>) {
        let seq = self.handle.next_seq.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let job = Reserve {
            seq,
            agent: agent.clone(),
            nanos,
            windows,
            limits,
            reply,
            deadline: tokio::time::Instant::now() + self.handle.timeout,
        };
        // A full queue drops the job and its reply: the call is refused.
        let _ = self.handle.reserves.try_send(job);
        (seq, answer)
    }

    /// Records call `seq`'s spend and drops its reservation.
    pub(crate) fn settle(&self, seq: i64, row: SpendRow) -> Commit {
        let (done, receiver) = oneshot::channel();
        let _ = self.handle.jobs.send(Job::Settle(Settle { seq, row, done }));
        Commit::waiting(receiver)
    }

    /// Drops call `seq`'s reservation: it cost nothing.
    pub(crate) fn release(&self, seq: i64) {
        let _ = self.handle.jobs.send(Job::Release { seq });
    }

    /// Spend in the windows starting at `windows`, from the database. Blocks.
    pub(crate) fn report(&self, windows: (i64, i64)) -> Result<SharedReport, LedgerError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let _ = self.handle.jobs.send(Job::Report { windows, reply });
        answer.recv().unwrap_or_else(|_| Err(unreachable()))
    }

    /// The totals the database last gave for the windows starting at
    /// `windows` (nothing yet for windows it was not asked about).
    pub(crate) fn standing(&self, windows: (i64, i64)) -> Standing {
        let status = &self.handle.status;
        let (day, month) = status.windows();
        let load = |value: &AtomicI64, same: bool| if same { value.load(Ordering::Relaxed) } else { 0 };
        Standing {
            day_spent: load(&status.day_spent, day == windows.0),
            month_spent: load(&status.month_spent, month == windows.1),
            reserved: status.reserved.load(Ordering::Relaxed),
        }
    }
}

pub(crate) fn unreachable() -> LedgerError {
    LedgerError("unreachable".into())
}

/// The error with its cause ("error connecting to server: Connection refused").
fn pg(error: tokio_postgres::Error) -> LedgerError {
    match std::error::Error::source(&error) {
        Some(cause) => LedgerError(format!("{error}: {cause}")),
        None => LedgerError(error.to_string()),
    }
}

#[cfg(test)]
mod tests;
