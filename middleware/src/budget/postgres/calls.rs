//! What the ledger's thread asks of the database: reservations, settles
//! (and their retries, through the outbox), releases, renewals, reports;
//! each one statement within the store timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Object;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::super::error::LedgerError;
use super::super::ledger::{Breakdown, SpendRow};
use super::super::state::Standing;
use super::super::utc;
use super::outbox::Pending;
use super::worker::{Reserve, Settle, Worker};
use super::{pg, Admission, SharedReport};

/// Shards of each window's running total: settles of one window update
/// different rows, so they do not queue behind one row's lock.
const SHARDS: i64 = 16;
/// The longest wait between two tries of a settle the database did not take.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const RESERVE: &str =
    "SELECT o_admitted, o_day_spent, o_month_spent, o_reserved FROM reserve($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const SETTLE: &str = "SELECT settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const RELEASE: &str = "DELETE FROM reservations WHERE replica = $1 AND seq = ANY ($2)";
const RENEW: &str = "SELECT day_spent, month_spent, reserved FROM renew($1, $2, $3, $4, $5)";
const TOTALS: &str = "SELECT day_spent, month_spent, reserved FROM standing($1, $2)";
const BREAKDOWN: &str = "SELECT true, agent_id, SUM(cost_nanos)::bigint FROM spend WHERE at_ms >= $1 GROUP BY agent_id
    UNION ALL SELECT false, model, SUM(cost_nanos)::bigint FROM spend WHERE at_ms >= $1 GROUP BY model";

impl Worker {
    /// Asks for the reservations of `batch`, those of one window and limits at a time.
    pub(super) async fn reserve(self: Arc<Self>, mut batch: Vec<Reserve>) {
        while let Some(first) = batch.first() {
            let key = (first.windows, first.limits);
            let (group, rest) = batch.into_iter().partition(|r| (r.windows, r.limits) == key);
            self.reserve_group(group, key.0, key.1).await;
            batch = rest;
        }
    }

    async fn reserve_group(self: &Arc<Self>, group: Vec<Reserve>, windows: (i64, i64), limits: (i64, i64)) {
        let seqs: Vec<i64> = group.iter().map(|r| r.seq).collect();
        let agents: Vec<&str> = group.iter().map(|r| &*r.agent).collect();
        let nanos: Vec<i64> = group.iter().map(|r| r.nanos).collect();
        let params: [&(dyn ToSql + Sync); 9] = [
            &self.replica,
            &seqs,
            &agents,
            &nanos,
            &windows.0,
            &windows.1,
            &limits.0,
            &limits.1,
            &self.ttl_ms,
        ];
        // Those who asked first have waited longest: the batch ends with their wait.
        let deadline = group.iter().map(|r| r.deadline).min().unwrap_or_else(Instant::now);
        let rows = match self.query_by(deadline, RESERVE, &params).await {
            Ok(rows) if rows.len() == group.len() => rows,
            _ => {
                drop(group); // Refused now; then, as the database may have taken them, released.
                return self.release_later(seqs);
            }
        };
        let mut gone = Vec::new();
        for (reserve, row) in group.into_iter().zip(&rows) {
            let standing = standing(row, 1);
            if !row.get::<_, bool>(0) {
                let _ = reserve.reply.send(Admission::Refused(standing));
                continue;
            }
            self.live().insert(reserve.seq, reserve.nanos);
            if reserve.reply.send(Admission::Admitted(standing)).is_err() {
                gone.push(reserve.seq); // The caller went away: nothing will settle it.
            }
        }
        if let Some(last) = rows.last() {
            self.status.remember(windows, standing(last, 1));
        }
        if !gone.is_empty() {
            self.release_later(gone);
        }
    }

    /// Records a batch; the callers learn of the first try, and a batch the
    /// database did not take is tried again, off the lane, until it is.
    pub(super) async fn settle(self: Arc<Self>, batch: Vec<Settle>) {
        let mut dones = Vec::with_capacity(batch.len());
        let mut calls = Vec::with_capacity(batch.len());
        for Settle { seq, row, done } in batch {
            dones.push(done);
            calls.push((seq, row));
        }
        let result = self.record(self.replica, &calls).await;
        for done in dones {
            let _ = done.send(result.clone());
        }
        match result {
            Ok(()) => self.recorded(self.replica, &calls),
            Err(_) => {
                let replica = self.replica;
                self.keep(replica, &calls);
                tokio::spawn(self.retry(replica, calls));
            }
        }
    }

    /// Writes `calls` to the outbox, where a restart finds them.
    fn keep(&self, replica: i64, calls: &[(i64, SpendRow)]) {
        if let Some(Err(error)) = self.outbox.as_ref().map(|outbox| outbox.keep(replica, calls)) {
            tracing::error!(%error, calls = calls.len(), "spend not yet recorded could not be kept on disk either");
        }
    }

    async fn retry(self: Arc<Self>, replica: i64, calls: Vec<(i64, SpendRow)>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            tracing::error!(
                calls = calls.len(),
                "spend not yet recorded in the shared ledger; retrying"
            );
            tokio::time::sleep(backoff).await;
            if self.record(replica, &calls).await.is_ok() {
                return self.recorded(replica, &calls);
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Records, off the lanes, what the outbox kept from earlier runs.
    pub(super) fn replay(self: &Arc<Self>, pending: Vec<Pending>) {
        let mut by_replica: HashMap<i64, Vec<(i64, SpendRow)>> = HashMap::new();
        for (replica, seq, row) in pending {
            by_replica.entry(replica).or_default().push((seq, row));
        }
        for (replica, calls) in by_replica {
            tracing::info!(
                replica,
                calls = calls.len(),
                "recording spend kept while the shared ledger was unreachable"
            );
            tokio::spawn(self.clone().retry(replica, calls));
        }
    }

    /// The shared ledger has `calls`: they leave the outbox, and this replica's its holds.
    fn recorded(&self, replica: i64, calls: &[(i64, SpendRow)]) {
        if let Some(Err(error)) = self.outbox.as_ref().map(|outbox| outbox.done(replica, calls)) {
            tracing::warn!(%error, "recorded spend stays in the outbox (recorded once, even if replayed)");
        }
        if replica != self.replica {
            return;
        }
        for (seq, row) in calls {
            let held = self.live().remove(seq).unwrap_or(0);
            self.status.settled(held, row.cost_nanos);
        }
    }

    /// One try at recording `calls` (and dropping their reservations).
    async fn record(&self, replica: i64, calls: &[(i64, SpendRow)]) -> Result<(), LedgerError> {
        let column = |f: fn(&(i64, SpendRow)) -> i64| calls.iter().map(f).collect::<Vec<i64>>();
        let seqs = column(|(seq, _)| *seq);
        let at_ms = column(|(_, row)| row.at_ms);
        let inputs = column(|(_, row)| tokens(row.input_tokens));
        let outputs = column(|(_, row)| tokens(row.output_tokens));
        let costs = column(|(_, row)| row.cost_nanos);
        let text = |f: fn(&SpendRow) -> &str| calls.iter().map(|(_, row)| f(row)).collect::<Vec<&str>>();
        let (agents, providers, models) = (text(|r| &r.agent_id), text(|r| &r.provider), text(|r| &r.model));
        let (days, months): (Vec<i64>, Vec<i64>) = at_ms.iter().map(|&at| utc::window_starts_ms(at)).unzip();
        let shards: Vec<i16> = seqs.iter().map(|seq| seq.rem_euclid(SHARDS) as i16).collect();
        let params: [&(dyn ToSql + Sync); 12] = [
            &replica, &seqs, &at_ms, &agents, &providers, &models, &inputs, &outputs, &costs, &days, &months, &shards,
        ];
        self.query(SETTLE, &params).await.map(drop)
    }

    /// Releases off the reservation lane, which must not wait for it.
    fn release_later(self: &Arc<Self>, seqs: Vec<i64>) {
        let worker = self.clone();
        tokio::spawn(async move { worker.release(seqs).await });
    }

    pub(super) async fn release(&self, seqs: Vec<i64>) {
        for seq in &seqs {
            let held = self.live().remove(seq).unwrap_or(0);
            self.status.settled(held, 0);
        }
        // One that fails expires instead.
        let _ = self.query(RELEASE, &[&self.replica, &seqs]).await;
    }

    pub(super) async fn report(&self, windows: (i64, i64)) -> Result<SharedReport, LedgerError> {
        let totals = self.query_one(TOTALS, &[&windows.0, &windows.1]).await?;
        Ok(SharedReport {
            standing: standing(&totals, 0),
            day: self.breakdown(windows.0).await?,
            month: self.breakdown(windows.1).await?,
        })
    }

    async fn breakdown(&self, since_ms: i64) -> Result<Breakdown, LedgerError> {
        let mut breakdown = Breakdown::default();
        for row in self.query(BREAKDOWN, &[&since_ms]).await? {
            let map = if row.get(0) {
                &mut breakdown.by_agent
            } else {
                &mut breakdown.by_model
            };
            map.insert(row.get(1), row.get(2));
        }
        Ok(breakdown)
    }

    /// Extends the live reservations and reads the totals back.
    pub(super) async fn renew(&self) {
        let seqs: Vec<i64> = self.live().keys().copied().collect();
        let windows = self.status.windows();
        let params: [&(dyn ToSql + Sync); 5] = [&self.replica, &seqs, &self.ttl_ms, &windows.0, &windows.1];
        if let Ok(row) = self.query_one(RENEW, &params).await {
            self.status.remember(windows, standing(&row, 0));
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, LedgerError> {
        let rows = self.query(sql, params).await?;
        rows.into_iter().next().ok_or_else(|| LedgerError("no row".into()))
    }

    /// One statement, within the timeout; says whether the database answered.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, LedgerError> {
        self.query_by(Instant::now() + self.timeout, sql, params).await
    }

    async fn query_by(
        &self,
        deadline: Instant,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, LedgerError> {
        let result = self.query_within(deadline, sql, params).await;
        if let Err(error) = &result {
            tracing::debug!(store = "postgres", %error, "shared spend ledger call failed");
        }
        self.status.answered(result.is_ok());
        result
    }

    async fn query_within(
        &self,
        deadline: Instant,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, LedgerError> {
        let client = match timeout_at(deadline, self.pool.get()).await {
            Ok(client) => client.map_err(|e| LedgerError(e.to_string()))?,
            Err(_) => return Err(timed_out()),
        };
        let call = async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        };
        match timeout_at(deadline, call).await {
            Ok(result) => result.map_err(pg),
            Err(_) => {
                // Its connection may still be busy with the call: close it.
                drop(Object::take(client));
                Err(timed_out())
            }
        }
    }
}

fn timed_out() -> LedgerError {
    LedgerError("no answer within the store timeout".into())
}

fn tokens(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn standing(row: &Row, first: usize) -> Standing {
    Standing {
        day_spent: row.get(first),
        month_spent: row.get(first + 1),
        reserved: row.get(first + 2),
    }
}
