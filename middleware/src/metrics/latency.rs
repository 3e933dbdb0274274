//! Calls, failures and latency per provider, for `/v1/providers`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds, in milliseconds.
const BOUNDS_MS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 60000.0, 120000.0,
];

/// One provider's counts, shared by every clone of its metrics layer.
#[derive(Debug, Default)]
pub struct ProviderStats {
    calls: AtomicU64,
    failures: AtomicU64,
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
}

/// A reading of [`ProviderStats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySnapshot {
    /// Calls that reached the provider.
    pub calls: u64,
    /// Of them, those that failed (including streams that broke).
    pub failures: u64,
    /// Median latency, milliseconds, if any call finished.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Option<f64>,
}

impl ProviderStats {
    pub(crate) fn record(&self, latency: Duration, failed: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(BOUNDS_MS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now, with quantiles interpolated within their bucket.
    pub fn snapshot(&self) -> LatencySnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        LatencySnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            p50_ms: quantile(&counts, 0.50),
            p99_ms: quantile(&counts, 0.99),
        }
    }
}

fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &count) in counts.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { BOUNDS_MS[i - 1] };
            let upper = BOUNDS_MS.get(i).copied().unwrap_or(lower);
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        below += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let stats = ProviderStats::default();
        for _ in 0..98 {
            stats.record(Duration::from_millis(300), false);
        }
        stats.record(Duration::from_millis(1500), true);
        stats.record(Duration::from_millis(1500), true);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.calls, snapshot.failures), (100, 2));
        let p50 = snapshot.p50_ms.unwrap();
        assert!((200.0..=500.0).contains(&p50), "{p50}");
        let p99 = snapshot.p99_ms.unwrap();
        assert!((1000.0..=2000.0).contains(&p99), "{p99}");
        assert_eq!(ProviderStats::default().snapshot().p50_ms, None);
    }
}
