//! The token bucket kept in Redis, so every replica of a gateway draws from
//! the same one: the same GCRA as the local bucket, one round trip a
//! request (a Lua script that reads the bucket, decides and writes it, with
//! Redis's own clock so replicas' clocks do not matter), and a TTL so an idle
//! bucket vanishes. The calls are made by a thread of the limiter's own,
//! which any worker reaches through a channel; a store that does not answer
//! within the timeout is reported unreachable, and the caller falls back to
//! its local bucket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

/// Takes a token from the bucket in `KEYS[1]`: `{1, tokens left}` or
/// `{0, ms until one is}`. ARGV: the ms between tokens, the bucket's size.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - tolerance
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
return {1, math.floor((tolerance - (next_tat - now)) / interval)}
";

/// Requests waiting for the store; past this, callers use their local bucket.
const QUEUE: usize = 4096;

/// What the shared bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted, with this many tokens left.
    Admitted(u32),
    /// Refused: a token comes in this long.
    Limited(Duration),
}

struct Job {
    key: String,
    reply: oneshot::Sender<Verdict>,
}

/// A handle on the shared buckets. An answer that never comes (the store is
/// unreachable, slow or the queue full) is a closed reply channel.
#[derive(Debug, Clone)]
pub(crate) struct SharedBuckets {
    jobs: mpsc::Sender<Job>,
    prefix: Arc<str>,
    up: Arc<AtomicBool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("key", &self.key).finish_non_exhaustive()
    }
}

impl SharedBuckets {
    /// Buckets at `url` refilled every `interval`, holding `burst`; each
    /// call waits at most `timeout`.
    pub(crate) fn connect(
        url: &str,
        prefix: &str,
        interval: Duration,
        burst: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|_| "not a Redis URL (redis://[:password@]host:port[/db])".to_owned())?;
        // Its password must never reach a log line, as a provider key must not.
        if let Some(password) = client.get_connection_info().redis_settings().password() {
            chrysalis_services::redact::register_secret(password);
        }
        let (jobs, queue) = mpsc::channel(QUEUE);
        let interval_ms = interval.as_secs_f64() * 1000.0;
        std::thread::Builder::new()
            .name("gateway-redis".into())
            .spawn(move || serve(client, queue, interval_ms, burst, timeout))
            .map_err(|e| format!("cannot start the Redis thread: {e}"))?;
        Ok(Self {
            jobs,
            prefix: format!("{prefix}rate:").into(),
            up: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Asks the store for a token of bucket `key`.
    pub(crate) fn check(&self, key: &str) -> oneshot::Receiver<Verdict> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key: format!("{}{key}", self.prefix),
            reply,
        };
        // A full queue drops the job, and with it the reply: the caller falls back.
        let _ = self.jobs.try_send(job);
        answer
    }

    /// Records whether the store answered; says so once per change.
    pub(crate) fn answered(&self, answered: bool) {
        let was = self.up.swap(answered, Ordering::Relaxed);
        match (was, answered) {
            (true, false) => tracing::warn!(
                store = "redis",
                "shared rate limit store unreachable: each replica limits with its own bucket until it is back"
            ),
            (false, true) => tracing::info!(store = "redis", "shared rate limit store is back"),
            _ => {}
        }
    }

    /// Whether the last call reached the store.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

fn serve(client: redis::Client, mut queue: mpsc::Receiver<Job>, interval_ms: f64, burst: u32, timeout: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(async move {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let Ok(connection) = ConnectionManager::new_lazy_with_config(client, config) else {
            return;
        };
        let script = Arc::new(redis::Script::new(GCRA));
        while let Some(job) = queue.recv().await {
            let (mut connection, script) = (connection.clone(), script.clone());
            tokio::spawn(async move {
                let mut invocation = script.key(&job.key);
                invocation.arg(interval_ms).arg(burst);
                let call = invocation.invoke_async::<(i64, i64)>(&mut connection);
                if let Ok(Ok(verdict)) = tokio::time::timeout(timeout, call).await {
                    let _ = job.reply.send(verdict_of(verdict));
                }
            });
        }
    });
}

fn verdict_of((admitted, value): (i64, i64)) -> Verdict {
    if admitted == 1 {
        Verdict::Admitted(u32::try_from(value.max(0)).unwrap_or(u32::MAX))
    } else {
        Verdict::Limited(Duration::from_millis(u64::try_from(value.max(1)).unwrap_or(1)))
    }
}
