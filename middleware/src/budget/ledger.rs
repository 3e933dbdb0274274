//! Where spend is kept: a trait, so that a backend shared by several replicas
//! can come later, and an in-memory one for tests and embedders.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::error::LedgerError;

/// One call's spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// When it was settled, unix milliseconds.
    pub at_ms: i64,
    /// Who made the call.
    pub agent_id: String,
    /// Who served it.
    pub provider: String,
    /// Which model served it.
    pub model: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// What it cost, in nano-dollars (exact sums, no float drift).
    pub cost_nanos: i64,
}

/// Spend since some time, grouped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breakdown {
    /// Nano-dollars by agent_id.
    pub by_agent: BTreeMap<String, i64>,
    /// Nano-dollars by model.
    pub by_model: BTreeMap<String, i64>,
}

/// Resolves once an appended row is durable.
#[derive(Debug)]
pub struct Commit(CommitInner);

#[derive(Debug)]
enum CommitInner {
    Done(Option<Result<(), LedgerError>>),
    Waiting(oneshot::Receiver<Result<(), LedgerError>>),
}

impl Commit {
    /// Already durable (or already failed).
    pub fn done(result: Result<(), LedgerError>) -> Self {
        Self(CommitInner::Done(Some(result)))
    }

    /// Durable when `receiver` says so.
    pub fn waiting(receiver: oneshot::Receiver<Result<(), LedgerError>>) -> Self {
        Self(CommitInner::Waiting(receiver))
    }
}

impl Future for Commit {
    type Output = Result<(), LedgerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            CommitInner::Done(result) => Poll::Ready(result.take().expect("polled after completion")),
            CommitInner::Waiting(receiver) => Poll::Ready(match std::task::ready!(Pin::new(receiver).poll(cx)) {
                Ok(result) => result,
                Err(_) => Err(LedgerError("the ledger writer stopped".into())),
            }),
        }
    }
}

/// A durable record of spend.
pub trait SpendLedger: Send + Sync + 'static {
    /// Appends `row`; the [`Commit`] resolves once it is durable.
    fn append(&self, row: SpendRow) -> Commit;

    /// Nano-dollars spent since `since_ms` (unix milliseconds).
    fn spent_since(&self, since_ms: i64) -> Result<i64, LedgerError>;

    /// Spend since `since_ms`, by agent and by model.
    fn breakdown_since(&self, since_ms: i64) -> Result<Breakdown, LedgerError>;
}

/// A ledger in memory: nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    rows: Mutex<Vec<SpendRow>>,
}

impl MemoryLedger {
    fn rows_since(&self, since_ms: i64) -> Vec<SpendRow> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.iter().filter(|r| r.at_ms >= since_ms).cloned().collect()
    }
}

impl SpendLedger for MemoryLedger {
    fn append(&self, row: SpendRow) -> Commit {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).push(row);
        Commit::done(Ok(()))
    }

    fn spent_since(&self, since_ms: i64) -> Result<i64, LedgerError> {
        Ok(self.rows_since(since_ms).iter().map(|r| r.cost_nanos).sum())
    }

    fn breakdown_since(&self, since_ms: i64) -> Result<Breakdown, LedgerError> {
        let mut breakdown = Breakdown::default();
        for row in self.rows_since(since_ms) {
            *breakdown.by_agent.entry(row.agent_id).or_default() += row.cost_nanos;
            *breakdown.by_model.entry(row.model).or_default() += row.cost_nanos;
        }
        Ok(breakdown)
    }
}
