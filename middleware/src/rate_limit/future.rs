//! The response future: refused at once, or the call, marked with what is left.

use chrysalis_services::ChatResponse;
use tower::BoxError;

use crate::gate::{RefuseOrCall, Then};

/// The future of [`RateLimit`](super::RateLimit).
pub type ResponseFuture<F> = RefuseOrCall<F, MarkLeft, Result<ChatResponse, BoxError>>;

/// Marks an admitted call's response with the requests left and the limit.
#[derive(Debug, Clone, Copy)]
pub struct MarkLeft(pub(super) (u32, u32));

impl<E: Into<BoxError>> Then<Result<ChatResponse, E>> for MarkLeft {
    type Output = Result<ChatResponse, BoxError>;

    fn then(self, outcome: Result<ChatResponse, E>) -> Self::Output {
        let mut response = outcome.map_err(Into::into)?;
        response.meta_mut().rate_limit = Some(self.0);
        Ok(response)
    }
}
