//! Settles the shared ledger has not taken yet, kept on local disk (SQLite
//! in WAL mode, durable against a crash of the process) until it does: a
//! replica killed or stopped during a database outage records them when it
//! starts again. Written only when a settle fails, so a healthy database
//! costs no disk write here.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection};

use super::super::error::LedgerError;
use super::super::ledger::SpendRow;

/// A call's spend, under the replica and number it was reserved with.
pub(super) type Pending = (i64, i64, SpendRow);

#[derive(Debug)]
pub(super) struct Outbox {
    connection: Mutex<Connection>,
}

fn sql(error: rusqlite::Error) -> LedgerError {
    LedgerError(format!("settle outbox: {error}"))
}

impl Outbox {
    pub(super) fn open(path: &Path) -> Result<Self, LedgerError> {
        let connection =
            Connection::open(path).map_err(|e| LedgerError(format!("cannot open {}: {e}", path.display())))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS pending_settles (
                     replica INTEGER NOT NULL,
                     seq INTEGER NOT NULL,
                     at_ms INTEGER NOT NULL,
                     agent_id TEXT NOT NULL,
                     provider TEXT NOT NULL,
                     model TEXT NOT NULL,
                     input_tokens INTEGER NOT NULL,
                     output_tokens INTEGER NOT NULL,
                     cost_nanos INTEGER NOT NULL,
                     PRIMARY KEY (replica, seq)
                 );",
            )
            .map_err(sql)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `calls` of `replica` until [`Outbox::done`].
    pub(super) fn keep(&self, replica: i64, calls: &[(i64, SpendRow)]) -> Result<(), LedgerError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(sql)?;
        {
            let mut insert = transaction
                .prepare_cached("INSERT OR IGNORE INTO pending_settles VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                .map_err(sql)?;
            for (seq, row) in calls {
                let tokens = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
                insert
                    .execute(params![
                        replica,
                        seq,
                        row.at_ms,
                        row.agent_id,
                        row.provider,
                        row.model,
                        tokens(row.input_tokens),
                        tokens(row.output_tokens),
                        row.cost_nanos
                    ])
                    .map_err(sql)?;
            }
        }
        transaction.commit().map_err(sql)
    }

    /// Forgets `calls` of `replica`: the shared ledger has them.
    pub(super) fn done(&self, replica: i64, calls: &[(i64, SpendRow)]) -> Result<(), LedgerError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(sql)?;
        {
            let mut delete = transaction
                .prepare_cached("DELETE FROM pending_settles WHERE replica = ?1 AND seq = ?2")
                .map_err(sql)?;
            for (seq, _) in calls {
                delete.execute(params![replica, seq]).map_err(sql)?;
            }
        }
        transaction.commit().map_err(sql)
    }

    /// Every settle kept, in the order they were settled.
    pub(super) fn pending(&self) -> Result<Vec<Pending>, LedgerError> {
        let connection = self.connection();
        let mut select = connection
            .prepare("SELECT * FROM pending_settles ORDER BY at_ms")
            .map_err(sql)?;
        let rows = select
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    SpendRow {
                        at_ms: r.get(2)?,
                        agent_id: r.get(3)?,
                        provider: r.get(4)?,
                        model: r.get(5)?,
                        input_tokens: r.get::<_, i64>(6)?.max(0) as u64,
                        output_tokens: r.get::<_, i64>(7)?.max(0) as u64,
                        cost_nanos: r.get(8)?,
                    },
                ))
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at_ms: i64, cost_nanos: i64) -> SpendRow {
        SpendRow {
            at_ms,
            agent_id: "agent".into(),
            provider: "p".into(),
            model: "m".into(),
            input_tokens: 3,
            output_tokens: 4,
            cost_nanos,
        }
    }

    #[test]
    fn kept_settles_outlive_the_process_until_done() {
        let path = std::env::temp_dir().join(format!("chrysalis-outbox-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let outbox = Outbox::open(&path).unwrap();
        outbox.keep(7, &[(1, row(20, 5)), (2, row(10, 6))]).unwrap();
        outbox.keep(7, &[(1, row(20, 5))]).unwrap(); // Kept again: still once.
        drop(outbox);

        let reopened = Outbox::open(&path).unwrap();
        let pending = reopened.pending().unwrap();
        assert_eq!(pending, vec![(7, 2, row(10, 6)), (7, 1, row(20, 5))], "in settle order");
        reopened.done(7, &[(2, row(10, 6))]).unwrap();
        assert_eq!(reopened.pending().unwrap(), vec![(7, 1, row(20, 5))]);
        let _ = std::fs::remove_file(&path);
    }
}
