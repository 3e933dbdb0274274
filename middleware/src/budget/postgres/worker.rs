//! The ledger's thread: a runtime of its own, a pool of connections, and
//! two lanes (reservations; settles and the rest) that batch what arrives
//! while the database is busy.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::NoTls;

use super::super::error::LedgerError;
use super::super::ledger::SpendRow;
use super::super::state::{Standing, SystemClock, WallClock};
use super::super::utc;
use super::outbox::Outbox;
use super::{pg, schema, unreachable, Admission, PostgresConfig, SharedReport, Status};

/// Reservations waiting for the database; past this, calls are refused.
const QUEUE: usize = 4096;
/// Calls reserved, or settled, in one transaction at most: those that
/// arrive while the database is busy share the next one's lock and commit.
const BATCH: usize = 256;
/// The most connecting, migrating and numbering the replica may take at start-up.
const START_UP: Duration = Duration::from_secs(30);
/// How often the totals are read back (for `/metrics`), at most.
const RENEW_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// A reservation to ask for.
#[derive(Debug)]
pub(super) struct Reserve {
    pub(super) seq: i64,
    pub(super) agent: Arc<str>,
    pub(super) nanos: i64,
    pub(super) windows: (i64, i64),
    pub(super) limits: (i64, i64),
    pub(super) reply: oneshot::Sender<Admission>,
    /// When the caller stops waiting: the time it asked, plus the store timeout.
    pub(super) deadline: Instant,
}

/// What else the ledger's thread is asked to do.
#[derive(Debug)]
pub(super) enum Job {
    Settle(Settle),
    Release {
        seq: i64,
    },
    Report {
        windows: (i64, i64),
        reply: std::sync::mpsc::SyncSender<Result<SharedReport, LedgerError>>,
    },
}

/// A call's spend to record.
#[derive(Debug)]
pub(super) struct Settle {
    pub(super) seq: i64,
    pub(super) row: SpendRow,
    pub(super) done: oneshot::Sender<Result<(), LedgerError>>,
}

type Channels = (mpsc::Sender<Reserve>, mpsc::UnboundedSender<Job>, i64);

/// Starts the thread; returns once the schema is migrated and this replica has its number.
pub(super) fn start(config: PostgresConfig, status: Arc<Status>) -> Result<Channels, LedgerError> {
    let pg_config = pg_config(&config)?;
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("gateway-postgres".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds");
            runtime.block_on(async move {
                let opened = tokio::time::timeout(START_UP, open(&config, pg_config, status)).await;
                let worker = match opened {
                    Ok(Ok(worker)) => Arc::new(worker),
                    Ok(Err(error)) => return drop(ready.send(Err(error))),
                    Err(_) => return drop(ready.send(Err(LedgerError("no answer at start-up within 30 s".into())))),
                };
                let (reserves, reserve_queue) = mpsc::channel(QUEUE);
                let (jobs, job_queue) = mpsc::unbounded_channel();
                let _ = ready.send(Ok((reserves, jobs, worker.replica)));
                serve(worker, reserve_queue, job_queue).await;
            });
        })
        .map_err(|e| LedgerError(format!("cannot start the ledger's thread: {e}")))?;
    started.recv().unwrap_or_else(|_| Err(unreachable()))
}

fn pg_config(config: &PostgresConfig) -> Result<tokio_postgres::Config, LedgerError> {
    let invalid = || LedgerError("not a PostgreSQL URL (postgres://user[:password]@host[:port]/database)".into());
    let mut pg_config = tokio_postgres::Config::from_str(&config.url).map_err(|_| invalid())?;
    // Its password must never reach a log line, as a provider key must not.
    if let Some(password) = pg_config.get_password().and_then(|p| std::str::from_utf8(p).ok()) {
        chrysalis_services::redact::register_secret(password);
    }
    let schema = &config.schema;
    if schema.is_empty()
        || !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(LedgerError(format!(
            "schema `{schema}` must be lower-case letters, digits and _"
        )));
    }
    pg_config
        .options(format!("-c search_path={schema}"))
        .application_name("chrysalis-gateway")
        .connect_timeout(config.timeout)
        .keepalives_idle(Duration::from_secs(10))
        // A connection whose peer vanished fails, instead of waiting on TCP's minutes of retries.
        .tcp_user_timeout(config.timeout.max(Duration::from_secs(1)));
    Ok(pg_config)
}

/// The pool, the schema migrated, and this replica's number.
async fn open(
    config: &PostgresConfig,
    pg_config: tokio_postgres::Config,
    status: Arc<Status>,
) -> Result<Worker, LedgerError> {
    let mut start_config = pg_config.clone();
    start_config.connect_timeout(config.timeout.max(Duration::from_secs(5)));
    let (mut client, connection) = start_config.connect(NoTls).await.map_err(pg)?;
    tokio::spawn(connection);
    schema::migrate(&mut client, &config.schema).await?;
    let replica: i64 = client
        .query_one("SELECT nextval('replica_ids')", &[])
        .await
        .map_err(pg)?
        .get(0);
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.connections.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.timeout))
        .create_timeout(Some(config.timeout))
        .recycle_timeout(Some(config.timeout))
        .build()
        .map_err(|e| LedgerError(e.to_string()))?;
    let outbox = config.outbox.as_deref().map(Outbox::open).transpose()?;
    status.remember(utc::window_starts_ms(SystemClock.now_ms()), Standing::default());
    status.up.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(Worker {
        pool,
        replica,
        timeout: config.timeout,
        ttl_ms: i64::try_from(config.reservation_ttl.as_millis()).unwrap_or(i64::MAX),
        live: Mutex::default(),
        status,
        outbox,
    })
}

/// The ledger's thread's state, shared by its tasks.
pub(super) struct Worker {
    pub(super) pool: Pool,
    pub(super) replica: i64,
    pub(super) timeout: Duration,
    pub(super) ttl_ms: i64,
    /// Calls of this replica holding a reservation, and what each holds: renewed until settled.
    pub(super) live: Mutex<HashMap<i64, i64>>,
    pub(super) status: Arc<Status>,
    /// Where settles the database did not take wait for it, across restarts.
    pub(super) outbox: Option<Outbox>,
}

/// Two lanes: reservations, one batch at a time (they queue on one lock in
/// the database anyway, and those that arrive meanwhile make the next
/// batch), and the other jobs, settles one batch at a time (one commit for
/// the batch).
async fn serve(worker: Arc<Worker>, reserves: mpsc::Receiver<Reserve>, jobs: mpsc::UnboundedReceiver<Job>) {
    tokio::spawn(renew_loop(Arc::downgrade(&worker)));
    match worker.outbox.as_ref().map(Outbox::pending) {
        Some(Ok(pending)) => worker.replay(pending),
        Some(Err(error)) => tracing::error!(%error, "the settle outbox cannot be read"),
        None => {}
    }
    tokio::spawn(reserve_lane(worker.clone(), reserves));
    job_lane(worker, jobs).await;
}

async fn reserve_lane(worker: Arc<Worker>, mut reserves: mpsc::Receiver<Reserve>) {
    while let Some(first) = reserves.recv().await {
        let mut batch = vec![first];
        while let Some(next) = (batch.len() < BATCH).then(|| reserves.try_recv().ok()).flatten() {
            batch.push(next);
        }
        tracing::debug!(calls = batch.len(), "reserving together");
        worker.clone().reserve(batch).await;
    }
}

async fn job_lane(worker: Arc<Worker>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let settles = dispatch(&worker, first, &mut jobs);
        if !settles.is_empty() {
            tracing::debug!(calls = settles.len(), "settling together");
            worker.clone().settle(settles).await;
        }
    }
}

/// Starts `first` and the jobs already queued behind it, and returns the
/// settles among them, to be recorded together.
fn dispatch(worker: &Arc<Worker>, first: Job, jobs: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Settle> {
    let mut settles = Vec::new();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        let worker = worker.clone();
        match job {
            Job::Settle(settle) => settles.push(settle),
            Job::Release { seq } => drop(tokio::spawn(async move { worker.release(vec![seq]).await })),
            Job::Report { windows, reply } => {
                drop(tokio::spawn(async move { reply.send(worker.report(windows).await) }))
            }
        }
        next = (settles.len() < BATCH).then(|| jobs.try_recv().ok()).flatten();
    }
    settles
}

/// Renews reservations a little more often than a quarter of their expiry,
/// until the ledger is gone.
async fn renew_loop(worker: std::sync::Weak<Worker>) {
    let every = match worker.upgrade() {
        Some(worker) => Duration::from_millis(u64::try_from(worker.ttl_ms / 4).unwrap_or(1).max(1)),
        None => return,
    };
    let mut ticks = tokio::time::interval(every.min(RENEW_AT_MOST_EVERY));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(worker) = worker.upgrade() else { return };
        worker.renew().await;
    }
}
