//! Failover's own failures: everything tried failed, or nothing could be tried.

use std::fmt;
use std::time::Duration;

use tower::BoxError;

/// One provider that failed.
#[derive(Debug)]
pub struct Attempt {
    /// The provider.
    pub provider: &'static str,
    /// Why it failed (a provider error, a timeout, an open circuit).
    pub error: BoxError,
}

/// Every provider was tried (or skipped for an open circuit) and none answered.
#[derive(Debug, thiserror::Error)]
pub struct AllFailed {
    /// Each provider, in order.
    pub attempts: Vec<Attempt>,
}

impl fmt::Display for AllFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every provider failed")?;
        for (i, attempt) in self.attempts.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            // A provider's own error already starts with its name.
            let error = attempt.error.to_string();
            let prefix = format!("{}: ", attempt.provider);
            let said = error.strip_prefix(&prefix).unwrap_or(&error);
            write!(f, "{sep}{}: {said}", attempt.provider)?;
        }
        Ok(())
    }
}

/// Every provider's circuit is open: nothing was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every provider's circuit is open")]
pub struct AllOpen {
    /// How long until the first circuit lets a probe through.
    pub retry_after: Duration,
}
