//! The embedded ledger: SQLite in WAL mode, one row per call. A writer thread
//! commits rows in groups (one transaction and one fsync for all the rows that
//! arrived together), and each caller learns when its row is durable.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::error::LedgerError;
use super::ledger::{Breakdown, Commit, SpendLedger, SpendRow};

/// Rows committed in one transaction at most.
const GROUP: usize = 512;

type Job = (SpendRow, oneshot::Sender<Result<(), LedgerError>>);

/// The SQLite spend ledger.
#[derive(Debug)]
pub struct SqliteLedger {
    writer: Mutex<mpsc::Sender<Job>>,
    reader: Mutex<Connection>,
}

impl SqliteLedger {
    /// Opens (or creates) the ledger at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let writer = connect(path)?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS spend (
                    id INTEGER PRIMARY KEY,
                    at_ms INTEGER NOT NULL,
                    agent_id TEXT NOT NULL,
                    provider TEXT NOT NULL,
                    model TEXT NOT NULL,
                    input_tokens INTEGER NOT NULL,
                    output_tokens INTEGER NOT NULL,
                    cost_nanos INTEGER NOT NULL
                );
                CREATE INDEX IF NOT EXISTS spend_at ON spend (at_ms);",
            )
            .map_err(sql)?;
        let reader = connect(path)?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("spend-ledger".into())
            .spawn(move || write_loop(writer, receiver))
            .map_err(|e| LedgerError(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            writer: Mutex::new(sender),
            reader: Mutex::new(reader),
        })
    }

    fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LedgerError> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        query(&reader).map_err(sql)
    }
}

fn connect(path: &Path) -> Result<Connection, LedgerError> {
    let connection = Connection::open(path).map_err(|e| LedgerError(format!("cannot open {}: {e}", path.display())))?;
    // WAL: readers never block the writer. FULL: a commit survives power loss.
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .map_err(sql)?;
    Ok(connection)
}

fn sql(error: rusqlite::Error) -> LedgerError {
    LedgerError(error.to_string())
}

fn write_loop(mut connection: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let result = insert(&mut connection, group.iter().map(|(row, _)| row));
        if let Err(error) = &result {
            tracing::error!(%error, rows = group.len(), "spend could not be written to the ledger");
        }
        for (_, done) in group {
            let _ = done.send(result.clone());
        }
    }
}

fn insert<'a>(connection: &mut Connection, rows: impl Iterator<Item = &'a SpendRow>) -> Result<(), LedgerError> {
    let transaction = connection.transaction().map_err(sql)?;
    {
        let mut statement = transaction
            .prepare_cached(
                "INSERT INTO spend (at_ms, agent_id, provider, model, input_tokens, output_tokens, cost_nanos)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql)?;
        for row in rows {
            statement
                .execute(params![
                    row.at_ms,
                    row.agent_id,
                    row.provider,
                    row.model,
                    row.input_tokens as i64,
                    row.output_tokens as i64,
                    row.cost_nanos
                ])
                .map_err(sql)?;
        }
    }
    transaction.commit().map_err(sql)
}

impl SpendLedger for SqliteLedger {
    fn append(&self, row: SpendRow) -> Commit {
        let (done, receiver) = oneshot::channel();
        let sender = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match sender.send((row, done)) {
            Ok(()) => Commit::waiting(receiver),
            Err(_) => Commit::done(Err(LedgerError("the ledger writer stopped".into()))),
        }
    }

    fn spent_since(&self, since_ms: i64) -> Result<i64, LedgerError> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(cost_nanos), 0) FROM spend WHERE at_ms >= ?1",
                [since_ms],
                |r| r.get(0),
            )
        })
    }

    fn breakdown_since(&self, since_ms: i64) -> Result<Breakdown, LedgerError> {
        self.read(|c| {
            let mut breakdown = Breakdown::default();
            let grouped = |column: &str| {
                format!("SELECT {column}, SUM(cost_nanos) FROM spend WHERE at_ms >= ?1 GROUP BY {column}")
            };
            for (column, into) in [
                ("agent_id", &mut breakdown.by_agent),
                ("model", &mut breakdown.by_model),
            ] {
                let mut statement = c.prepare(&grouped(column))?;
                let rows = statement.query_map([since_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                for row in rows {
                    let (key, nanos) = row?;
                    into.insert(key, nanos);
                }
            }
            Ok(breakdown)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at_ms: i64, agent: &str, cost_nanos: i64) -> SpendRow {
        SpendRow {
            at_ms,
            agent_id: agent.into(),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos,
        }
    }

    #[tokio::test]
    async fn rows_survive_reopening_and_sum_exactly() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let ledger = SqliteLedger::open(&path).unwrap();
            let commits: Vec<_> = (0..100).map(|i| ledger.append(row(1000 + i, "a", 7_050))).collect();
            for commit in commits {
                commit.await.unwrap();
            }
            ledger.append(row(5000, "b", 1)).await.unwrap();
        }
        let ledger = SqliteLedger::open(&path).unwrap();
        assert_eq!(ledger.spent_since(0).unwrap(), 705_001);
        assert_eq!(ledger.spent_since(1050).unwrap(), 50 * 7_050 + 1);
        let breakdown = ledger.breakdown_since(0).unwrap();
        assert_eq!(breakdown.by_agent["a"], 705_000);
        assert_eq!(breakdown.by_model["gpt-4o-mini"], 705_001);
        let _ = std::fs::remove_file(&path);
    }
}
