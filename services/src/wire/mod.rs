//! Reading upstream bodies: lines, server-sent events, and the stream that
//! turns an upstream's frames into [`Chunk`](crate::Chunk)s.

mod decode;
mod lines;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod splits;
mod sse;

pub(crate) use decode::{DecodeStream, Protocol};
pub(crate) use sse::SseParser;
