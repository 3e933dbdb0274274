//! The embedded ledger: SQLite in WAL mode, one row per call, committed in
//! groups: one transaction for all the rows that arrived together, and each
//! caller learns when its row is durable.
//!
//! With [`Durability::ProcessCrash`] a commit is one append to the WAL, so it
//! is made on the caller's own thread, with no hop to another: by a task
//! scheduled behind the tasks already woken (so the rows they settle share
//! its transaction), which commits every queued row; callers that find the
//! connection busy leave their row for the one committing. With
//! [`Durability::PowerLoss`] every commit is fsynced, so a writer thread
//! does it, off the async workers.
//!
//! A commit costs what it writes: the table has no secondary index (an
//! index doubled the pages per commit) and new ledgers use 1 KiB pages, so
//! a commit appends one small frame to the WAL. Rows are kept in time order
//! (a row settled a moment before the previous one is stored at its time),
//! so a window's first row is found by bisecting the ids. A clock set back
//! by more than [`CLOCK_STEP_MS`] starts a new run of rows (`clock_steps`
//! holds the id of each run's first row): rows keep their real time, and
//! each run is bisected on its own. A thread of the ledger's own copies
//! the WAL into the database file once a second (a checkpoint fsyncs, so
//! it stays off the request path).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
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
/// A row this much older than the one before it means the clock was set
/// back (after a jump ahead, say), not that two settles raced.
const CLOCK_STEP_MS: i64 = 1000;
/// How often the WAL is copied into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

type Job = (SpendRow, oneshot::Sender<Result<(), LedgerError>>);

/// The SQLite spend ledger. One connection, in exclusive locking mode, so a
/// commit takes no file locks; reads (start-up, `/v1/usage`) share it.
#[derive(Debug)]
pub struct SqliteLedger {
    store: Arc<Mutex<Store>>,
    writer: Writer,
}

/// Rows waiting for a commit, and whether one is scheduled.
#[derive(Debug, Default)]
struct Queue {
    jobs: Mutex<Vec<Job>>,
    scheduled: AtomicBool,
}

/// The connection, and the time of the last row written, which the next
/// row may not precede.
#[derive(Debug)]
struct Store {
    connection: Connection,
    last_at_ms: i64,
    /// Rows were committed since the last checkpoint.
    written: bool,
}

#[derive(Debug)]
enum Writer {
    /// Rows wait in a queue for a commit scheduled on the caller's runtime.
    Inline(Arc<Queue>),
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
                CREATE TABLE IF NOT EXISTS clock_steps (first_id INTEGER PRIMARY KEY);
                DROP INDEX IF EXISTS spend_at;",
            )
            .map_err(sql)?;
        let last_at_ms = connection
            .query_row(
                "SELECT COALESCE((SELECT at_ms FROM spend ORDER BY id DESC LIMIT 1), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let store = Arc::new(Mutex::new(Store {
            connection,
            last_at_ms,
            written: false,
        }));
        let writer = match durability {
            Durability::ProcessCrash => Writer::Inline(Arc::default()),
            Durability::PowerLoss => {
                let (sender, receiver) = mpsc::channel();
                let shared = store.clone();
                std::thread::Builder::new()
                    .name("spend-ledger".into())
                    .spawn(move || write_loop(&shared, receiver))
                    .map_err(|e| LedgerError(format!("cannot start the writer: {e}")))?;
                Writer::Thread(Mutex::new(sender))
            }
        };
        let queue = match &writer {
            Writer::Inline(queue) => Some(queue.clone()),
            Writer::Thread(_) => None,
        };
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("spend-checkpoint".into())
            .spawn(move || checkpoint_loop(&weak, queue.as_deref()))
            .map_err(|e| LedgerError(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self { store, writer })
    }

    fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LedgerError> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        query(&store.connection).map_err(sql)
    }
}

fn connect(path: &Path, durability: Durability) -> Result<Connection, LedgerError> {
    let connection = Connection::open(path).map_err(|e| LedgerError(format!("cannot open {}: {e}", path.display())))?;
    let synchronous = match durability {
        Durability::ProcessCrash => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    // Small pages: a commit rewrites the table's last page. (Takes effect when the file is created.)
    // WAL: a commit is one append. Exclusive: one connection, no file locks per commit.
    // No automatic checkpoints: they would run (and fsync) inside a caller's commit.
    connection
        .execute_batch(&format!(
            "PRAGMA page_size = 1024; PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000; \
             PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 16777216;"
        ))
        .map_err(sql)?;
    Ok(connection)
}

/// Copies the WAL into the database file now and then, off the request
/// path: a checkpoint fsyncs, and a request thread must not wait on a disk.
/// Callers that find the connection busy meanwhile queue their rows, which
/// are committed when the checkpoint lets go.
fn checkpoint_loop(store: &std::sync::Weak<Mutex<Store>>, queue: Option<&Queue>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(store) = store.upgrade() else {
            return; // The ledger is gone.
        };
        if let Err(error) = checkpoint(&mut store.lock().unwrap_or_else(|p| p.into_inner())) {
            tracing::warn!(%error, "ledger checkpoint failed (the WAL keeps the rows)");
        }
        if let Some(queue) = queue {
            commit_queued(&store, queue);
        }
    }
}

fn checkpoint(store: &mut Store) -> Result<(), LedgerError> {
    if std::mem::take(&mut store.written) {
        store
            .connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(sql)?;
    }
    Ok(())
}

fn sql(error: rusqlite::Error) -> LedgerError {
    LedgerError(error.to_string())
}

fn write_loop(store: &Mutex<Store>, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut store.lock().unwrap_or_else(|p| p.into_inner()), group);
    }
}

/// Commits every queued row, for as long as rows keep coming. A caller that
/// found the connection busy has queued its row before trying it, and the
/// holder looks at the queue again after letting go, so no row is left behind.
fn commit_queued(store: &Mutex<Store>, queue: &Queue) {
    let take = || std::mem::take(&mut *queue.jobs.lock().unwrap_or_else(|p| p.into_inner()));
    while !queue.jobs.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
        let Ok(mut store) = store.try_lock() else {
            return; // The holder will see the queue.
        };
        loop {
            let group = take();
            if group.is_empty() {
                break;
            }
            commit_group(&mut store, group);
        }
    }
}

fn commit_group(store: &mut Store, group: Vec<Job>) {
    let result = insert(store, group.iter().map(|(row, _)| row));
    if let Err(error) = &result {
        tracing::error!(%error, rows = group.len(), "spend could not be written to the ledger");
    }
    for (_, done) in group {
        let _ = done.send(result.clone());
    }
}

fn insert<'a>(store: &mut Store, rows: impl Iterator<Item = &'a SpendRow>) -> Result<(), LedgerError> {
    let mut last_at_ms = store.last_at_ms;
    let transaction = store.connection.transaction().map_err(sql)?;
    {
        let mut statement = transaction
            .prepare_cached(
                "INSERT INTO spend (at_ms, agent_id, provider, model, input_tokens, output_tokens, cost_nanos)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql)?;
        let mut step = transaction
            .prepare_cached("INSERT INTO clock_steps (first_id) VALUES (?1)")
            .map_err(sql)?;
        for row in rows {
            let stepped_back = row.at_ms < last_at_ms - CLOCK_STEP_MS;
            // Racing settles may queue a row a moment older than the one before it.
            last_at_ms = if stepped_back {
                row.at_ms
            } else {
                last_at_ms.max(row.at_ms)
            };
            statement
                .execute(params![
                    last_at_ms,
                    row.agent_id,
                    row.provider,
                    row.model,
                    row.input_tokens as i64,
                    row.output_tokens as i64,
                    row.cost_nanos
                ])
                .map_err(sql)?;
            if stepped_back {
                step.execute([transaction.last_insert_rowid()]).map_err(sql)?;
            }
        }
    }
    transaction.commit().map_err(sql)?;
    store.last_at_ms = last_at_ms;
    store.written = true;
    Ok(())
}

/// The ids of the rows at or after `since_ms`, as ranges `[first, end)`:
/// one per run of rows in time order, each bisected on its own.
fn ranges_since(connection: &Connection, since_ms: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    let (first, end): (i64, i64) = connection.query_row(
        "SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) + 1 FROM spend",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut starts = vec![first];
    let mut steps = connection.prepare_cached("SELECT first_id FROM clock_steps ORDER BY first_id")?;
    for step in steps.query_map([], |r| r.get(0))? {
        starts.push(step?);
    }
    starts.push(end);
    starts
        .windows(2)
        .map(|run| Ok((first_id_since(connection, since_ms, run[0], run[1])?, run[1])))
        .collect()
}

/// The id of the first row in `[low, high)` at or after `since_ms` (or
/// `high`): that run is in time order, so bisect its ids (which may have gaps).
fn first_id_since(connection: &Connection, since_ms: i64, mut low: i64, mut high: i64) -> rusqlite::Result<i64> {
    let mut next =
        connection.prepare_cached("SELECT id, at_ms FROM spend WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 1")?;
    let end = high;
    while low < high {
        let middle = low + (high - low) / 2;
        let row: Option<(i64, i64)> = next
            .query_row([middle, end], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((id, at_ms)) if at_ms < since_ms => low = id + 1,
            _ => high = middle,
        }
    }
    Ok(low)
}

impl Drop for SqliteLedger {
    /// Commits the rows still queued: a commit scheduled on a runtime that
    /// shut down before running it would otherwise lose them.
    fn drop(&mut self) {
        if let Writer::Inline(queue) = &self.writer {
            commit_queued(&self.store, queue);
        }
    }
}

impl SpendLedger for SqliteLedger {
    fn append(&self, row: SpendRow) -> Commit {
        let (done, receiver) = oneshot::channel();
        match &self.writer {
            Writer::Inline(queue) => {
                queue.jobs.lock().unwrap_or_else(|p| p.into_inner()).push((row, done));
                match tokio::runtime::Handle::try_current() {
                    // Commit once the tasks already woken have run: the rows
                    // they settle meanwhile join the same transaction.
                    Ok(runtime) => {
                        if !queue.scheduled.swap(true, Ordering::AcqRel) {
                            let (store, queue) = (self.store.clone(), queue.clone());
                            runtime.spawn(async move {
                                // Cleared before draining, so a row queued meanwhile is drained or scheduled again.
                                queue.scheduled.store(false, Ordering::Release);
                                commit_queued(&store, &queue);
                            });
                        }
                    }
                    Err(_) => commit_queued(&self.store, queue),
                }
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
            let mut sum =
                c.prepare_cached("SELECT COALESCE(SUM(cost_nanos), 0) FROM spend WHERE id >= ?1 AND id < ?2")?;
            let mut spent = 0;
            for (first, end) in ranges_since(c, since_ms)? {
                spent += sum.query_row([first, end], |r| r.get::<_, i64>(0))?;
            }
            Ok(spent)
        })
    }

    fn breakdown_since(&self, since_ms: i64) -> Result<Breakdown, LedgerError> {
        self.read(|c| {
            let mut breakdown = Breakdown::default();
            let ranges = ranges_since(c, since_ms)?;
            let grouped = |column: &str| {
                format!("SELECT {column}, SUM(cost_nanos) FROM spend WHERE id >= ?1 AND id < ?2 GROUP BY {column}")
            };
            for (column, into) in [
                ("agent_id", &mut breakdown.by_agent),
                ("model", &mut breakdown.by_model),
            ] {
                let mut statement = c.prepare(&grouped(column))?;
                for &(first, end) in &ranges {
                    let rows =
                        statement.query_map([first, end], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                    for row in rows {
                        let (key, nanos) = row?;
                        *into.entry(key).or_default() += nanos;
                    }
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
    async fn windows_start_at_the_right_row_and_late_rows_keep_time_order() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-window-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
        // Bursts of rows at the same millisecond, gaps between them, costs that tell rows apart.
        let times: Vec<i64> = (0..300)
            .map(|i| 10_000 + (i / 3) * 7 + if i % 50 == 0 { 500 } else { 0 })
            .collect();
        let mut stored = Vec::new();
        for (i, at_ms) in times.iter().enumerate() {
            // A row settled a moment before the previous one is stored at the previous one's time.
            let at_ms = (*at_ms).max(stored.last().map_or(0, |(t, _)| *t));
            stored.push((at_ms, 1i64 << (i % 40)));
            ledger.append(row(times[i], "a", 1 << (i % 40))).await.unwrap();
        }
        for since in (9_990..11_200).step_by(3) {
            let expected: i64 = stored.iter().filter(|(t, _)| *t >= since).map(|(_, c)| c).sum();
            assert_eq!(ledger.spent_since(since).unwrap(), expected, "since {since}");
        }
        assert_eq!(ledger.spent_since(i64::MAX).unwrap(), 0);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_clock_set_back_after_a_jump_ahead_leaves_later_rows_at_their_real_time() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-step-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        const YEAR: i64 = 365 * 86_400_000;
        {
            let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
            ledger.append(row(10_000, "a", 1)).await.unwrap();
            ledger.append(row(10_000 + YEAR, "a", 2)).await.unwrap(); // the clock jumped ahead
            ledger.append(row(20_000, "a", 4)).await.unwrap(); // and was set right
        }
        // Reopened, the next row follows the last row's time, not the future one.
        let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
        ledger.append(row(30_000, "b", 8)).await.unwrap();
        ledger.append(row(29_990, "b", 16)).await.unwrap(); // a racing settle, a moment older
        assert_eq!(ledger.spent_since(0).unwrap(), 31);
        assert_eq!(ledger.spent_since(15_000).unwrap(), 2 + 4 + 8 + 16);
        assert_eq!(ledger.spent_since(25_000).unwrap(), 2 + 8 + 16);
        assert_eq!(
            ledger.spent_since(31_000).unwrap(),
            2,
            "only the row the wrong clock wrote"
        );
        assert_eq!(ledger.spent_since(YEAR).unwrap(), 2);
        assert_eq!(ledger.spent_since(i64::MAX).unwrap(), 0);
        let breakdown = ledger.breakdown_since(25_000).unwrap();
        assert_eq!((breakdown.by_agent["a"], breakdown.by_agent["b"]), (2, 24));
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn rows_settled_together_share_one_commit() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-group-{}.db", std::process::id()));
        let wal = path.with_extension("db-wal");
        let _ = std::fs::remove_file(&path);
        let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
        let commits: Vec<_> = (0..50).map(|i| ledger.append(row(i, "a", 1))).collect();
        for commit in commits {
            commit.await.unwrap();
        }
        // One commit per row would append 50 frames of 1 KiB to the WAL.
        let frames = std::fs::metadata(&wal).unwrap().len() / 1048;
        assert!(frames < 10, "{frames} WAL frames for 50 rows");
        assert_eq!(ledger.spent_since(0).unwrap(), 50);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_row_whose_commit_never_ran_is_committed_when_the_ledger_closes() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-close-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // Appended on a runtime that stops before its scheduled commit runs.
        let inside = runtime.enter();
        let commit = ledger.append(row(1, "a", 42));
        drop(inside);
        drop(runtime);
        drop(commit);
        drop(ledger);
        let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
        assert_eq!(ledger.spent_since(0).unwrap(), 42);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_checkpoint_moves_committed_rows_into_the_database_file() {
        let path = std::env::temp_dir().join(format!("chrysalis-ledger-checkpoint-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ledger = SqliteLedger::open(&path, Durability::ProcessCrash).unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        for i in 0..2000 {
            ledger.append(row(i, "a", 1)).await.unwrap();
        }
        checkpoint(&mut ledger.store.lock().unwrap()).unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        assert!(
            full > empty + 2000 * 20,
            "the rows reached the file: {empty} -> {full} bytes"
        );
        assert_eq!(ledger.spent_since(0).unwrap(), 2000);
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
