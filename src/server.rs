//! Serving: accept connections with bounded header and idle times, and shut
//! down gracefully within a bounded grace period.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::config::Config;
use crate::http::head_limits;
use crate::shutdown::Cutoff;

/// Serves `app` until SIGINT or SIGTERM, then lets in-flight work finish.
///
/// Thread per core: each of `GATEWAY_WORKERS` threads runs its own
/// single-threaded runtime. The main thread accepts and hands each
/// connection to the worker with the fewest open; the connection, and every
/// request on it, then stays on that thread, so no worker wakes another
/// (on a small VM those wake-ups cost more than the gateway's own work).
/// Workers that all accepted from one socket were unbalanced: whichever
/// was awake took a whole burst of new connections.
pub fn run(config: Config, app: Router) -> Result<(), String> {
    let addr = SocketAddr::new(config.gateway_host, config.gateway_port);
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("error: GATEWAY_HOST/GATEWAY_PORT: cannot listen on {addr}: {e}"))?;
    serve(listener, config, app, shutdown_signal)
}

/// Serves `app` on `listener` as [`run`] does, until the future `shutdown`
/// makes (inside the server's runtime) resolves: what the binary runs, and
/// what the tests start on port 0.
pub fn serve<S, F>(listener: std::net::TcpListener, config: Config, app: Router, shutdown: S) -> Result<(), String>
where
    S: FnOnce() -> F,
    F: Future<Output = ()>,
{
    let workers = match config.gateway_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let config = Arc::new(config);
    let (threads, handoffs): (Vec<_>, Vec<_>) = (0..workers)
        .map(|i| start_worker(i, app.clone(), config.clone()))
        .collect::<Result<Vec<_>, String>>()?
        .into_iter()
        .unzip();
    let runtime = runtime().map_err(|e| format!("error: cannot start the runtime: {e}"))?;
    runtime.block_on(accept(&config, listener, handoffs, shutdown))?;
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("error: the server failed: {e}")),
            Err(_) => return Err("error: a worker thread panicked".into()),
        }
    }
    Ok(())
}

/// Where the acceptor sends a worker its connections, and how many it has open.
struct Handoff {
    connections: mpsc::UnboundedSender<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
}

type Worker = std::thread::JoinHandle<io::Result<()>>;

fn start_worker(index: usize, app: Router, config: Arc<Config>) -> Result<(Worker, Handoff), String> {
    let (connections, mut received) = mpsc::unbounded_channel::<std::net::TcpStream>();
    let open = Arc::new(AtomicUsize::new(0));
    let counted = open.clone();
    let thread = std::thread::Builder::new()
        .name(format!("gateway-worker-{index}"))
        .spawn(move || {
            // Each worker keeps its own upstream clients: build them before the first call.
            chrysalis_services::warm_this_thread();
            runtime()?.block_on(async move {
                let connections = Connections::new(&config);
                while let Some(stream) = received.recv().await {
                    let stream = TcpStream::from_std(stream)?;
                    connections.serve(stream, &app, counted.clone());
                }
                // The acceptor stopped: shutting down.
                connections.drain(config.shutdown_grace(), index).await;
                Ok(())
            })
        })
        .map_err(|e| format!("error: cannot start a worker thread: {e}"))?;
    Ok((thread, Handoff { connections, open }))
}

/// Accepts until `shutdown` resolves, handing each connection to the least busy worker.
async fn accept<S, F>(
    config: &Config,
    listener: std::net::TcpListener,
    workers: Vec<Handoff>,
    shutdown: S,
) -> Result<(), String>
where
    S: FnOnce() -> F,
    F: Future<Output = ()>,
{
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|e| format!("error: cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("error: cannot listen: {e}"))?;
    // Before the line that says so: from then on a signal shuts down gracefully.
    let shutdown = shutdown();
    tokio::pin!(shutdown);
    let order: Vec<_> = config.providers().map(|p| p.kind.name()).collect();
    tracing::info!(%addr, providers = ?order, workers = workers.len(), "gateway listening");
    if !addr.ip().is_loopback() && config.auth_tokens().is_none() {
        tracing::warn!(%addr, "listening beyond this machine with no GATEWAY_AUTH_TOKEN: anyone who can reach it can spend your budget");
    }
    loop {
        let stream = tokio::select! {
            accepted = next_connection(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let Ok(stream) = stream.into_std() else { continue };
        let worker = workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
            .expect("at least one worker");
        worker.open.fetch_add(1, Ordering::Relaxed);
        if worker.connections.send(stream).is_err() {
            return Err("error: a worker thread stopped".into());
        }
    }
    tracing::info!(
        grace_ms = config.shutdown_grace().as_millis() as u64,
        "shutting down: no new connections"
    );
    Ok(())
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

async fn next_connection(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The open connections of one runtime.
///
/// A client must send a request's headers within the header timeout, and an
/// idle keep-alive connection is closed after it too, so slow or idle
/// clients cannot hold connections forever.
struct Connections {
    builder: http1::Builder,
    graceful: GracefulShutdown,
    cutoff: Cutoff,
}

/// How long streams cut off at the end of the grace period have to send
/// their last frame: a client that reads nothing cannot delay the exit.
const LAST_FRAME_WAIT: Duration = Duration::from_secs(1);

impl Connections {
    fn new(config: &Config) -> Self {
        // HTTP/1.1 only: the clients of an LLM gateway speak it, and it lets the
        // header timeout cover a connection from its first byte (HTTP version
        // sniffing would wait on a silent client without a deadline).
        let mut builder = http1::Builder::new();
        builder
            .timer(CoarseTimer(TokioTimer::new()))
            .header_read_timeout(config.header_timeout())
            // Above the gateway's own bounds, which answer in JSON (hyper's answer is empty).
            .max_headers(head_limits::HYPER_MAX_HEADERS)
            .max_header_size(head_limits::HYPER_MAX_HEADER_BYTES);
        Self {
            builder,
            graceful: GracefulShutdown::new(),
            cutoff: Cutoff::default(),
        }
    }

    /// Serves `stream` on a task of its own; `open` is decremented when it closes.
    fn serve(&self, stream: TcpStream, app: &Router, open: Arc<AtomicUsize>) {
        let _ = stream.set_nodelay(true);
        let cutoff = self.cutoff.clone();
        let app = app.clone().map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(cutoff.clone());
            request
        });
        let service = TowerToHyperService::new(app);
        let connection = self.builder.serve_connection(TokioIo::new(stream), service);
        let connection = self.graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Lets open requests and streams finish, for at most `grace`; then ends
    /// those still open with a `shutting_down` error, and closes what remains.
    async fn drain(self, grace: Duration, worker: usize) {
        let finished = self.graceful.shutdown();
        tokio::pin!(finished);
        if tokio::time::timeout(grace, &mut finished).await.is_ok() {
            tracing::info!(worker, "every connection finished");
            return;
        }
        tracing::warn!(
            worker,
            "grace period over: ending the requests still open with a shutting_down error"
        );
        self.cutoff.cut();
        if tokio::time::timeout(LAST_FRAME_WAIT, finished).await.is_err() {
            tracing::warn!(worker, "closing the connections that still did not finish");
        }
    }
}

/// hyper's timer with deadlines rounded up to the next tenth of a second,
/// on tokio's clock.
///
/// hyper arms a header-read deadline for every request. A new tokio timer
/// that falls before the next one already set makes tokio wake its own
/// event loop with a system call, and each request's deadline did: once per
/// request. Rounded, the deadlines of a tenth of a second share their slot,
/// so that happens at most ten times a second per worker. A deadline of a
/// few seconds does not mind ending up to 100 ms late.
///
/// hyper reads the time from its timer: this one reads tokio's clock, so
/// every timer of the gateway follows one clock (and tests can pause it).
#[derive(Clone, Debug)]
struct CoarseTimer(TokioTimer);

const TIMER_SLOT: Duration = Duration::from_millis(100);

// hyper's Timer trait speaks std's Instant; only deadlines pass through here.
#[allow(clippy::disallowed_types)]
impl CoarseTimer {
    fn round_up(deadline: tokio::time::Instant) -> std::time::Instant {
        static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
        let since = deadline.saturating_duration_since(origin).as_nanos();
        let slot = TIMER_SLOT.as_nanos();
        let rounded = since.div_ceil(slot) * slot;
        (origin + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))).into_std()
    }
}

#[allow(clippy::disallowed_types)]
impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        self.0
            .sleep_until(Self::round_up(tokio::time::Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep_until(Self::round_up(deadline.into()))
    }

    fn reset(&self, sleep: &mut std::pin::Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        self.0.reset(sleep, Self::round_up(new_deadline.into()));
    }

    /// hyper's deadlines start from here.
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when first polled: a signal sent as soon as the gateway says
/// it is listening must shut it down gracefully, not kill it mid-line.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
        let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_types)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_shared_slots_never_earlier() {
        let now = tokio::time::Instant::now();
        let deadlines: Vec<_> = (0..50u64)
            .map(|ms| now + Duration::from_millis(1000 + ms * 7))
            .collect();
        let rounded: Vec<_> = deadlines.iter().map(|d| CoarseTimer::round_up(*d)).collect();
        for (deadline, rounded) in deadlines.iter().map(|d| d.into_std()).zip(&rounded) {
            assert!(*rounded >= deadline && *rounded - deadline < TIMER_SLOT);
        }
        let mut slots = rounded.clone();
        slots.dedup();
        // 350 ms of deadlines fall into four or five slots, not fifty timers.
        assert!((4..=5).contains(&slots.len()), "{} slots", slots.len());
    }
}
