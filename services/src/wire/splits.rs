//! For tests and fuzz targets: a streamed body decoded whole and split at
//! every byte, so a protocol is shown to give the same answer however the
//! network cuts it.

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
#[cfg(test)]
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

/// `body` decoded by a fresh protocol, as the parts between `cuts` (offsets
/// into it, taken modulo its length, in any order; empty parts too).
pub(crate) fn decode_cut<P: Protocol>(body: &[u8], cuts: &[usize], make: &impl Fn() -> P) -> Decoded {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(body.len());
    let mut from = 0;
    let parts = ends
        .into_iter()
        .map(|to| {
            let part = Bytes::copy_from_slice(&body[from..to]);
            from = to;
            part
        })
        .collect();
    decode(parts, make)
}

/// What every protocol keeps for a valid `body` carrying `text`: cut
/// anywhere, it decodes as it does whole, to that text and its end.
#[cfg(test)]
pub(crate) fn valid_stream_holds<P: Protocol>(
    body: &str,
    text: &str,
    cuts: &[usize],
    make: impl Fn() -> P,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let whole = decode_cut(body.as_bytes(), &[], &make);
    proptest::prop_assert_eq!(&whole.text, text);
    proptest::prop_assert!(matches!(whole.end, Ok(Some(_))), "{:?}", whole.end);
    proptest::prop_assert_eq!(decode_cut(body.as_bytes(), cuts, &make), whole);
    Ok(())
}

/// What every protocol keeps for any bytes at all: no panic, and the stream
/// ends in its end or an error, never quietly.
#[cfg(test)]
pub(crate) fn any_bytes_end_loudly<P: Protocol>(
    bytes: &[u8],
    cuts: &[usize],
    make: impl Fn() -> P,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let decoded = decode_cut(bytes, cuts, &make);
    proptest::prop_assert!(!matches!(decoded.end, Ok(None)), "ended quietly: {decoded:?}");
    Ok(())
}

/// A valid body with some bytes replaced, to reach past the first parse.
#[cfg(test)]
pub(crate) fn damaged(body: &str, damage: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = body.as_bytes().to_vec();
    for &(at, byte) in damage {
        if !bytes.is_empty() {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
    }
    bytes
}

/// The two properties, as proptest cases, for a protocol made by `$protocol`
/// whose valid streams `$body(texts, tool_argument_pieces, crlf)` writes.
#[cfg(test)]
macro_rules! stream_properties {
    ($body:ident, $protocol:ident) => {
        proptest::proptest! {
            #[test]
            fn any_valid_stream_decodes_the_same_however_it_is_cut(
                texts in proptest::collection::vec((proptest::prelude::any::<String>(), proptest::prelude::any::<bool>()), 0..6),
                pieces in proptest::collection::vec(proptest::prelude::any::<String>(), 0..4),
                crlf in proptest::prelude::any::<bool>(),
                cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..12),
            ) {
                let body = $body(&texts, &pieces, crlf);
                let text: String = texts.iter().map(|(t, _)| t.as_str()).collect();
                $crate::wire::splits::valid_stream_holds(&body, &text, &cuts, $protocol)?;
            }

            #[test]
            fn any_bytes_end_in_a_value_or_an_error(
                bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                damage in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
                cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..8),
            ) {
                $crate::wire::splits::any_bytes_end_loudly(&bytes, &cuts, $protocol)?;
                let valid = $body(&[("hi".into(), true)], &["{}".into()], false);
                let damaged = $crate::wire::splits::damaged(&valid, &damage);
                $crate::wire::splits::any_bytes_end_loudly(&damaged, &cuts, $protocol)?;
            }
        }
    };
}
#[cfg(test)]
pub(crate) use stream_properties;
