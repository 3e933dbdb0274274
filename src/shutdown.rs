//! The end of shutdown's grace period, as the requests still open see it.
//!
//! When the grace period is over, a request still open ends at once with a
//! `shutting_down` error: a stream with an error frame, a whole answer with
//! a 503. The client learns why, the log says so, and the spend of a cut
//! stream is settled as its chunks are dropped, before the process exits.
//! Without it, the connections would simply be dropped with the runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Reached once the grace period is over. The server makes one for its
/// connections and hands it to every request as an extension; a router
/// served some other way has none, and is never cut off.
#[derive(Clone, Debug, Default)]
pub struct Cutoff(CancellationToken);

impl Cutoff {
    /// Ends every request still open that watches this cut-off.
    pub fn cut(&self) {
        self.0.cancel();
    }

    /// Resolves once the cut-off is reached.
    pub async fn reached(&self) {
        self.0.cancelled().await;
    }

    /// A watch a stream polls alongside its chunks.
    pub fn watch(&self) -> CutoffWatch {
        CutoffWatch(Box::pin(self.0.clone().cancelled_owned()))
    }
}

/// Polled by a stream of frames: tells when to end with a `shutting_down` frame.
pub struct CutoffWatch(Pin<Box<WaitForCancellationFutureOwned>>);

impl CutoffWatch {
    /// Whether the cut-off is reached; if not, `cx` is woken when it is.
    pub fn poll_reached(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.0.as_mut().poll(cx), Poll::Ready(()))
    }
}
