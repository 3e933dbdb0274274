//! Time spent waiting on upstreams during one poll of a request, so the
//! request layer can subtract it from the total and report the gateway's own
//! overhead. The provider layers run inside the request layer's poll, on the
//! same thread, so a thread-local saved and restored around that poll carries
//! it without allocation or locking.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static WAITED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Runs `poll` with `waited` as the running total, and returns the new total.
pub(crate) fn measure<R>(waited: &mut Duration, poll: impl FnOnce() -> R) -> R {
    let outer = WAITED.with(|w| w.replace(Some(*waited)));
    let result = poll();
    *waited = WAITED.with(|w| w.replace(outer)).unwrap_or(*waited);
    result
}

/// Adds upstream waiting time to the request being polled, if any.
pub(crate) fn add(time: Duration) {
    WAITED.with(|w| {
        if let Some(total) = w.get() {
            w.set(Some(total + time));
        }
    });
}
