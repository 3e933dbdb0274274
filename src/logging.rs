//! Log lines through `tracing`, as text or JSON, filtered by RUST_LOG.
//!
//! A line is appended to a buffer in memory; a background thread writes the
//! buffer to stdout every few milliseconds. No request waits on stdout, and
//! none wakes a thread per line (a wake-up per line cost about a tenth of a
//! request's CPU under load): the writer sleeps only when there is nothing
//! to write, and the first line after that wakes it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::json_lines::JsonLines;

/// How long lines gather before they are written.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// Lines waiting beyond this are dropped (and counted) rather than let memory grow.
const MAX_BUFFERED: usize = 8 << 20;

/// Installs the global subscriber (default level `info`). Keep the guard
/// until the process ends: dropping it writes the lines still buffered.
pub fn init(format: LogFormat) -> FlushOnDrop {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = BufferedStdout::start();
    // Colours only for a terminal: a file or a log collector would keep the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.event_format(JsonLines).init(),
    }
    guard
}

/// Where formatted lines go: a shared buffer, emptied by the flusher thread.
#[derive(Clone)]
struct BufferedStdout(Arc<Shared>);

struct Shared {
    lines: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    flusher_asleep: AtomicBool,
    stopping: AtomicBool,
    flusher: std::sync::OnceLock<Thread>,
}

impl BufferedStdout {
    fn start() -> (Self, FlushOnDrop) {
        let shared = Arc::new(Shared {
            lines: Mutex::new(Vec::with_capacity(64 << 10)),
            dropped: AtomicU64::new(0),
            flusher_asleep: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            flusher: std::sync::OnceLock::new(),
        });
        let for_thread = shared.clone();
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || flush_loop(&for_thread))
            .expect("the log writer thread starts");
        (Self(shared.clone()), FlushOnDrop(shared, Some(handle)))
    }
}

impl Write for BufferedStdout {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut lines = self.0.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() + line.len() > MAX_BUFFERED {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let was_empty = lines.is_empty();
        lines.extend_from_slice(line);
        drop(lines);
        if was_empty && self.0.flusher_asleep.swap(false, Ordering::AcqRel) {
            self.0.wake();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl Shared {
    fn wake(&self) {
        if let Some(thread) = self.flusher.get() {
            thread.unpark();
        }
    }
}

fn flush_loop(shared: &Shared) {
    // Known before the flusher can first say it sleeps, so no wake-up is lost.
    let _ = shared.flusher.set(std::thread::current());
    let mut spare = Vec::with_capacity(64 << 10);
    loop {
        std::mem::swap(&mut spare, &mut *shared.lines.lock().unwrap_or_else(|p| p.into_inner()));
        let stopping = shared.stopping.load(Ordering::Acquire);
        if spare.is_empty() && !stopping {
            // Nothing to write: sleep until the next line (checked again after
            // saying so, so a line written meanwhile is not left waiting).
            shared.flusher_asleep.store(true, Ordering::Release);
            if shared.lines.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                std::thread::park();
            }
            shared.flusher_asleep.store(false, Ordering::Release);
            continue;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&spare);
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(stdout, "WARN {dropped} log lines dropped: stdout is not keeping up");
        }
        let _ = stdout.flush();
        drop(stdout);
        spare.clear();
        if spare.capacity() > 1 << 20 {
            spare = Vec::with_capacity(64 << 10); // A burst's buffer is not kept.
        }
        if stopping {
            return;
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}

/// Writes what is buffered, and stops the writer, when dropped.
pub struct FlushOnDrop(Arc<Shared>, Option<JoinHandle<()>>);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.0.stopping.store(true, Ordering::Release);
        self.0.wake();
        if let Some(handle) = self.1.take() {
            let _ = handle.join();
        }
    }
}
