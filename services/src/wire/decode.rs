//! The stream that turns an upstream body into chunks.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use pin_project_lite::pin_project;

use super::lines::LineSplitter;
use crate::chat::Chunk;
use crate::client::describe;
use crate::error::{ErrorKind, ProviderError};

/// An upstream's streaming format, read a line at a time.
pub(crate) trait Protocol: Send + 'static {
    /// Reads one line of the body, pushing the chunks it completes; a
    /// [`Chunk::End`] ends the stream.
    fn line(&mut self, line: &str, out: &mut VecDeque<Chunk>) -> Result<(), ErrorKind>;

    /// The body ended cleanly with no end marker read: a protocol whose
    /// stream may still be whole (its last chunk said so) pushes its end.
    fn body_ended(&mut self, _out: &mut VecDeque<Chunk>) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    /// The body ended; what is in `out` is all there will be.
    BodyEnded,
    Done,
}

pin_project! {
    /// Chunks decoded from an upstream body by a [`Protocol`]. A body that
    /// ends or breaks before the protocol's end marker yields a
    /// [`ErrorKind::Cut`] error, never a quiet end.
    pub(crate) struct DecodeStream<S, P> {
        #[pin]
        body: S,
        provider: &'static str,
        protocol: P,
        lines: LineSplitter,
        out: VecDeque<Chunk>,
        state: State,
    }
}

impl<S, P> DecodeStream<S, P> {
    pub(crate) fn new(provider: &'static str, body: S, protocol: P) -> Self {
        Self {
            body,
            provider,
            protocol,
            lines: LineSplitter::default(),
            out: VecDeque::with_capacity(4),
            state: State::Reading,
        }
    }
}

impl<S, P, E> Stream for DecodeStream<S, P>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: StdError + 'static,
    P: Protocol,
{
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(chunk) = this.out.pop_front() {
                if matches!(chunk, Chunk::End(_)) {
                    *this.state = State::Done;
                    this.out.clear();
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            match *this.state {
                State::Done => return Poll::Ready(None),
                State::BodyEnded => {
                    *this.state = State::Done;
                    let detail = "the upstream closed the stream before its end marker";
                    return Poll::Ready(Some(Err(ProviderError::cut(this.provider, detail))));
                }
                State::Reading => {}
            }
            let step = match this.lines.next_line() {
                Ok(Some(line)) => this.protocol.line(&line, this.out),
                Err(kind) => Err(kind),
                Ok(None) => match ready!(this.body.as_mut().poll_next(cx)) {
                    Some(Ok(bytes)) => {
                        this.lines.push(&bytes);
                        Ok(())
                    }
                    Some(Err(e)) => Err(ErrorKind::Cut(format!("the connection broke: {}", describe(&e)))),
                    None => {
                        *this.state = State::BodyEnded;
                        // A last line without its line end, then the blank
                        // line that dispatches a last unterminated event.
                        match this.lines.take_rest() {
                            Some(rest) => this.protocol.line(&rest, this.out),
                            None => Ok(()),
                        }
                        .and_then(|()| this.protocol.line("", this.out))
                        .map(|()| {
                            if !this.out.iter().any(|c| matches!(c, Chunk::End(_))) {
                                this.protocol.body_ended(this.out);
                            }
                        })
                    }
                },
            };
            if let Err(kind) = step {
                *this.state = State::Done;
                return Poll::Ready(Some(Err(ProviderError::new(this.provider, kind))));
            }
        }
    }
}
