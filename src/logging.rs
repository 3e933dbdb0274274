//! Log lines through `tracing`, as text or JSON (tracing-subscriber's own
//! formatters), filtered by RUST_LOG, written by tracing-appender's
//! non-blocking writer: no request waits on stdout.
//!
//! When stdout cannot keep up, lines are dropped rather than let memory grow
//! or requests wait; a warning then says how many, as a line of the same
//! format (it goes through the same subscriber).

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How often dropped lines are reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Installs the global subscriber (default level `info`), with at most
/// `buffered` lines waiting for stdout. Keep the guard until the process
/// ends: dropping it writes the lines still buffered.
pub fn init(format: LogFormat, buffered: NonZeroUsize) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(buffered.get())
        .lossy(true)
        .thread_name("log-writer")
        // Buffered: the writer flushes once the lines waiting are all written,
        // so a burst of lines is one write to stdout, not one per line.
        .finish(std::io::BufWriter::with_capacity(64 << 10, std::io::stdout()));
    let dropped = writer.error_counter();
    // Colours only for a terminal: a file or a log collector would keep the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        // Fields at the top level, as log collectors expect; the span the event is in, too.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let reporter = {
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name("log-drops".into())
            .spawn(move || report_drops(&dropped, &stopping))
            .expect("the dropped-lines reporter starts")
    };
    LogGuard {
        _writer: guard,
        stopping,
        reporter: Some(reporter),
    }
}

/// Now and then, says how many lines were dropped since it last said. A
/// notice written while lines were still being dropped may have been
/// dropped itself: then the count is said again, in full, next time.
fn report_drops(dropped: &ErrorCounter, stopping: &AtomicBool) {
    let mut reported = 0;
    while !stopping.load(Ordering::Acquire) {
        std::thread::park_timeout(REPORT_EVERY);
        let total = dropped.dropped_lines();
        if total > reported {
            tracing::warn!(
                dropped = total - reported,
                "log lines dropped: stdout is not keeping up"
            );
            if dropped.dropped_lines() == total {
                reported = total;
            }
        }
    }
}

/// Stops the reporter and writes the lines still buffered, when dropped.
pub struct LogGuard {
    _writer: WorkerGuard,
    stopping: Arc<AtomicBool>,
    reporter: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(reporter) = self.reporter.take() {
            reporter.thread().unpark();
            let _ = reporter.join();
        }
    }
}
