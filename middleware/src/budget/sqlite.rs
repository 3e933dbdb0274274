//! The embedded ledger: SQLite in WAL mode, one row per call, committed in
//! groups: one transaction for all the rows that arrived together, and each
//! caller learns when its row is durable.
//!
//! With [`Durability::ProcessCrash`] a commit is one append to the WAL, so the
//! caller that finds the writer free commits every queued row itself, on its
//! own thread, with no hop to another; callers that find it busy queue their
//! row for the one committing. With [`Durability::PowerLoss`] every commit
//! is fsynced, so a writer thread does it, off the async workers.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::error::LedgerError;
use super::ledger::{Breakdown, Commit, SpendLedger, SpendRow};

/// What a committed row survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// A crash or `kill -9` of the process (WAL, `synchronous=NORMAL`): a
    /// commit is a write to the OS, no fsync on the request path.
    #[default]
    ProcessCrash,
    /// Power loss too (`synchronous=FULL`): one fsync per group commit.
    PowerLoss,
}

/// Rows committed in one transaction at most.
const GROUP: usize = 512;

type Job = (SpendRow, oneshot::Sender<Result<(), LedgerError>>);

/// The SQLite spend ledger. One connection, in exclusive locking mode, so a
/// commit takes no file locks; reads (start-up, `/v1/usage`) share it.
#[derive(Debug)]
pub struct SqliteLedger {
    connection: Arc<Mutex<Connection>>,
    writer: Writer,
}

#[derive(Debug)]
enum Writer {
    /// Whoever finds the connection free commits what is queued.
    Inline(Mutex<Vec<Job>>),
    /// A thread commits, and fsyncs.
    Thread(Mutex<mpsc::Sender<Job>>),
}

impl SqliteLedger {
    /// Opens (or creates) the ledger at `path`.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let connection = connect(path, durability)?;
        connection
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
        let connection = Arc::new(Mutex::new(connection));
        let writer = match durability {
            Durability::ProcessCrash => Writer::Inline(Mutex::default()),
            Durability::PowerLoss => {
                let (sender, receiver) = mpsc::channel();
                let shared = connection.clone();
                std::thread::Builder::new()
                    .name("spend-ledger".into())
                    .spawn(move || write_loop(&shared, receiver))
                    .map_err(|e| LedgerError(format!("cannot start the writer: {e}")))?;
                Writer::Thread(Mutex::new(sender))
            }
        };
        Ok(Self { connection, writer })
    }

    fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LedgerError> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        query(&connection).map_err(sql)
    }
}

fn connect(path: &Path, durability: Durability) -> Result<Connection, LedgerError> {
    let connection = Connection::open(path).map_err(|e| LedgerError(format!("cannot open {}: {e}", path.display())))?;
    let synchronous = match durability {
        Durability::ProcessCrash => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    // WAL: a commit is one append. Exclusive: one connection, no file locks per commit.
    connection
        .execute_batch(&format!(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000;"
        ))
        .map_err(sql)?;
    Ok(connection)
}

fn sql(error: rusqlite::Error) -> LedgerError {
    LedgerError(error.to_string())
}

fn write_loop(connection: &Mutex<Connection>, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut connection.lock().unwrap_or_else(|p| p.into_inner()), group);
    }
}

/// Commits every queued row, for as long as rows keep coming. A caller that
/// found the connection busy has queued its row before trying it, and the
/// holder looks at the queue again after letting go, so no row is left behind.
fn commit_queued(connection: &Mutex<Connection>, queue: &Mutex<Vec<Job>>) {
    let pending = || !queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
    while pending() {
        let Ok(mut connection) = connection.try_lock() else {
            return; // The holder will see the queue.
        };
        loop {
            let group = std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()));
            if group.is_empty() {
                break;
            }
            commit_group(&mut connection, group);
        }
    }
}

fn commit_group(connection: &mut Connection, group: Vec<Job>) {
    let result = insert(connection, group.iter().map(|(row, _)| row));
    if let Err(error) = &result {
        tracing::error!(%error, rows = group.len(), "spend could not be written to the ledger");
    }
    for (_, done) in group {
        let _ = done.send(result.clone());
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
        match &self.writer {
            Writer::Inline(queue) => {
                queue.lock().unwrap_or_else(|p| p.into_inner()).push((row, done));
                commit_queued(&self.connection, queue);
                Commit::waiting(receiver)
            }
            Writer::Thread(sender) => match sender.lock().unwrap_or_else(|p| p.into_inner()).send((row, done)) {
                Ok(()) => Commit::waiting(receiver),
                Err(_) => Commit::done(Err(LedgerError("the ledger writer stopped".into()))),
            },
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

    #[test]
    fn rows_from_racing_threads_are_all_committed() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-race-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = std::sync::Arc::new(SqliteLedger::open(&path, Durability::ProcessCrash).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let commits: Vec<_> = (0..200).map(|i| ledger.append(row(t * 1000 + i, "a", 1))).collect();
                    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    commits.into_iter().for_each(|c| runtime.block_on(c).unwrap());
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(ledger.spent_since(0).unwrap(), 1600);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn rows_survive_reopening_and_sum_exactly() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let ledger = SqliteLedger::open(&path, Durability::PowerLoss).unwrap();
            let commits: Vec<_> = (0..100).map(|i| ledger.append(row(1000 + i, "a", 7_050))).collect();
            for commit in commits {
                commit.await.unwrap();
            }
            ledger.append(row(5000, "b", 1)).await.unwrap();
        }
        let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
        assert_eq!(ledger.spent_since(0).unwrap(), 705_001);
        assert_eq!(ledger.spent_since(1050).unwrap(), 50 * 7_050 + 1);
        let breakdown = ledger.breakdown_since(0).unwrap();
        assert_eq!(breakdown.by_agent["a"], 705_000);
        assert_eq!(breakdown.by_model["gpt-4o-mini"], 705_001);
        let _ = std::fs::remove_file(&path);
    }
}
