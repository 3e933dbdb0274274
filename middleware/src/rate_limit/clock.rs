//! governor's clock, read from tokio's, so tests can pause time.

use governor::clock::Clock;
use tokio::time::Instant;

/// Time since the limiter was made, as tokio counts it.
#[derive(Debug, Clone)]
pub(super) struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self { start: Instant::now() }
    }
}

impl Clock for TokioClock {
    type Instant = std::time::Duration;

    fn now(&self) -> Self::Instant {
        self.start.elapsed()
    }
}
