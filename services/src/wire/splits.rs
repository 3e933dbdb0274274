//! For tests: a streamed body decoded whole and split at every byte, so a
//! protocol is shown to give the same answer however the network cuts it.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;

use super::{DecodeStream, Protocol};
use crate::chat::{Chunk, ToolCall, ToolCallAssembly};
use crate::error::ProviderError;

/// What a decoded stream said: its text, its tool calls, and how it ended.
#[derive(Debug, PartialEq)]
pub(crate) struct Decoded {
    pub(crate) text: String,
    pub(crate) tool_calls: Vec<ToolCall>,
    pub(crate) end: Result<Option<crate::chat::StreamEnd>, ProviderError>,
}

/// `body` decoded by a fresh protocol from `make`, as `parts`.
fn decode<P: Protocol>(parts: Vec<Bytes>, make: &impl Fn() -> P) -> Decoded {
    let body = futures_util::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>));
    let mut stream = DecodeStream::new("test", body, make());
    let mut context = Context::from_waker(Waker::noop());
    let (mut text, mut calls) = (String::new(), ToolCallAssembly::default());
    loop {
        let Poll::Ready(item) = Pin::new(&mut stream).poll_next(&mut context) else {
            panic!("an in-memory body never waits");
        };
        let end = match item {
            Some(Ok(Chunk::Delta(delta))) => {
                text.push_str(&delta);
                continue;
            }
            Some(Ok(Chunk::ToolCall(delta))) => {
                calls.add(delta);
                continue;
            }
            Some(Ok(Chunk::End(end))) => Ok(Some(end)),
            Some(Err(error)) => Err(error),
            None => Ok(None),
        };
        return Decoded {
            text,
            tool_calls: calls.finish(),
            end,
        };
    }
}

/// Decodes `body` whole, then split in two at every byte; asserts every
/// split decodes as the whole does, and returns that.
pub(crate) fn same_at_every_split<P: Protocol>(body: &str, make: impl Fn() -> P) -> Decoded {
    let whole = decode(vec![Bytes::copy_from_slice(body.as_bytes())], &make);
    for at in 1..body.len() {
        let (head, tail) = body.as_bytes().split_at(at);
        let parts = vec![Bytes::copy_from_slice(head), Bytes::copy_from_slice(tail)];
        assert_eq!(decode(parts, &make), whole, "split at byte {at}");
    }
    let bytes = body.bytes().map(|b| Bytes::copy_from_slice(&[b])).collect();
    assert_eq!(decode(bytes, &make), whole, "a byte at a time");
    whole
}
