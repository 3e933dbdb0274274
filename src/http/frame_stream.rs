//! The one driver of every streaming route's frames. Each API writes only
//! its own frames ([`FrameWriter`]); the driver reads the chunks (the first
//! one already read), logs and charges the end, turns a broken stream or the
//! shutdown cut-off into the writer's error frames and ends the stream, and,
//! when the client leaves first, lets the layers inside settle and logs it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::response::sse::Event;
use chrysalis_services::{ChatStream, Chunk, ProviderError, StreamEnd};
use futures_core::Stream;

use super::log::RequestLog;
use crate::error::ApiError;
use crate::shutdown::CutoffWatch;

/// Who serves a stream, for its frames.
pub(super) struct Served<'a> {
    pub(super) provider: &'static str,
    pub(super) model: &'a str,
}

/// The frames of one API.
pub(super) trait FrameWriter: Send + Unpin + 'static {
    /// Frames the stream opens with.
    fn start(&mut self, _served: &Served<'_>, _out: &mut VecDeque<Event>) {}

    /// Frames of a text delta or a piece of a tool call.
    fn piece(&mut self, chunk: Chunk, served: &Served<'_>, out: &mut VecDeque<Event>);

    /// Frames of the end (usage and cost known).
    fn end(&mut self, end: &StreamEnd, served: &Served<'_>, out: &mut VecDeque<Event>);

    /// Frames of the error that cut the stream short.
    fn error(&mut self, error: &ApiError, served: &Served<'_>, out: &mut VecDeque<Event>);
}

/// A stream of chunks as a stream of one API's SSE events.
pub(super) struct FrameStream<W> {
    writer: W,
    first: Option<Option<Result<Chunk, ProviderError>>>,
    chunks: ChatStream,
    pending: VecDeque<Event>,
    done: bool,
    log: RequestLog,
    cutoff: CutoffWatch,
}

impl<W: FrameWriter> FrameStream<W> {
    /// The frames of `chunks`, of which `first` was already read.
    pub(super) fn new(
        mut writer: W,
        first: Option<Result<Chunk, ProviderError>>,
        chunks: ChatStream,
        log: RequestLog,
        cutoff: CutoffWatch,
    ) -> Self {
        let mut pending = VecDeque::with_capacity(8);
        let served = Served {
            provider: chunks.provider,
            model: &chunks.model,
        };
        writer.start(&served, &mut pending);
        Self {
            writer,
            first: Some(first),
            chunks,
            pending,
            done: false,
            log,
            cutoff,
        }
    }

    fn on(&mut self, item: Option<Result<Chunk, ProviderError>>) {
        let served = Served {
            provider: self.chunks.provider,
            model: &self.chunks.model,
        };
        match item {
            Some(Ok(Chunk::End(end))) => {
                self.log.served(served.provider, served.model, end.usage, end.cost_usd);
                self.writer.end(&end, &served, &mut self.pending);
                self.done = true;
            }
            Some(Ok(piece)) => self.writer.piece(piece, &served, &mut self.pending),
            Some(Err(error)) => self.fail(ApiError::from_provider(&error)),
            None => {
                let cut = ProviderError::cut(served.provider, "stream ended without its end");
                self.fail(ApiError::from_provider(&cut));
            }
        }
    }

    fn fail(&mut self, error: ApiError) {
        // What was sent before the failure is charged once the layers inside settle.
        self.chunks.cut();
        let charged = self.chunks.cut_charge.get();
        self.log.failed(Some(self.chunks.provider), &error, charged);
        let served = Served {
            provider: self.chunks.provider,
            model: &self.chunks.model,
        };
        self.writer.error(&error, &served, &mut self.pending);
        self.done = true;
    }
}

impl<W> Drop for FrameStream<W> {
    fn drop(&mut self) {
        if !self.done {
            self.chunks.cut();
            let charged = self.chunks.cut_charge.get();
            self.log.cancelled(self.chunks.provider, &self.chunks.model, charged);
        }
    }
}

impl<W: FrameWriter> Stream for FrameStream<W> {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            if self.cutoff.poll_reached(cx) {
                self.fail(ApiError::shutting_down());
                continue;
            }
            let item = match self.first.take() {
                Some(first) => first,
                None => ready!(Pin::new(&mut self.chunks).poll_next(cx)),
            };
            self.on(item);
        }
    }
}
