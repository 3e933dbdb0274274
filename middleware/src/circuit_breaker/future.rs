//! The response future: refused at once, or the call with its ticket.

use chrysalis_services::ChatResponse;
use tower::BoxError;

use super::state::{verdict_of, Ticket};
use crate::gate::{RefuseOrCall, Then};
use crate::observe::observe;

/// The future of [`CircuitBreaker`](super::CircuitBreaker).
pub type ResponseFuture<F> = RefuseOrCall<F, Ticket, Result<ChatResponse, BoxError>>;

/// An admitted call's ticket records how the call went.
impl<E: Into<BoxError>> Then<Result<ChatResponse, E>> for Ticket {
    type Output = Result<ChatResponse, BoxError>;

    fn then(self, outcome: Result<ChatResponse, E>) -> Self::Output {
        match outcome {
            // Streams are judged when they end.
            Ok(response) => Ok(observe(response, self)),
            Err(error) => {
                let error = error.into();
                self.record(verdict_of(&*error));
                Err(error)
            }
        }
    }
}
