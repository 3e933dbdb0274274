//! The one stream observer that budget, metrics and the circuit breaker share:
//! it reports how a call ended exactly once, whether the stream reached its
//! end, failed, or was dropped (the client went away).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use chrysalis_services::{ChatResponse, Chunk, ChunkStream, ProviderError, StreamEnd, Usage};
use futures_core::Stream;
use pin_project_lite::pin_project;

/// How a call ended.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// A whole answer: a complete response, or a stream that reached its end.
    Completed {
        /// Tokens consumed.
        usage: Usage,
        /// What it cost.
        cost_usd: f64,
    },
    /// The call, or its stream, failed.
    Failed {
        /// Why.
        error: &'a (dyn StdError + 'static),
        /// Characters of text passed on before the failure.
        chars: usize,
    },
    /// The stream was dropped before its end.
    Dropped {
        /// Text chunks passed on before the drop.
        chunks: u64,
        /// Characters of text passed on before the drop.
        chars: usize,
    },
}

/// Work the stream waits for before it passes its end on (a durable write).
pub type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Told how a call ends. `finish` takes `self`, so it runs exactly once.
pub trait Observer: Send + 'static {
    /// The first chunk of text has passed (time to first token).
    fn first_chunk(&mut self) {}

    /// The call ended. A [`Hold`] returned for a whole stream keeps its last
    /// chunk back until the hold is done.
    fn finish(self, outcome: Outcome<'_>) -> Option<Hold>;
}

/// Reports `response`'s outcome to `observer`: at once for a complete answer,
/// when the stream ends, fails or is dropped for a streamed one.
pub fn observe<O: Observer>(response: ChatResponse, mut observer: O) -> ChatResponse {
    match response {
        ChatResponse::Complete(completion) => {
            observer.first_chunk();
            // A complete answer has nothing to hold back: callers that must wait
            // for durable work handle complete answers themselves.
            let _ = observer.finish(Outcome::Completed {
                usage: completion.usage,
                cost_usd: completion.cost_usd,
            });
            ChatResponse::Complete(completion)
        }
        ChatResponse::Stream(stream) => {
            ChatResponse::Stream(stream.map_chunks(|chunks| Observed::new(chunks, observer)))
        }
    }
}

pin_project! {
    /// A stream that tells its [`Observer`] how it ended.
    pub struct Observed<O: Observer> {
        chunks: ChunkStream,
        observer: Option<O>,
        // The end, kept back until the observer's hold is done.
        held: Option<(Hold, Option<Result<Chunk, ProviderError>>)>,
        seen: u64,
        chars: usize,
    }

    impl<O: Observer> PinnedDrop for Observed<O> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let outcome = Outcome::Dropped { chunks: *this.seen, chars: *this.chars };
            if let Some(observer) = this.observer.take() {
                // The layers inside finish first, as they do for an end or a
                // failure: an outer observer may read what they settled.
                *this.chunks = Box::pin(futures_util::stream::empty());
                // Nobody is left to wait for a hold: it runs detached or not at all.
                let _ = observer.finish(outcome);
            }
        }
    }
}

impl<O: Observer> Observed<O> {
    /// Watches `chunks`.
    pub fn new(chunks: ChunkStream, observer: O) -> Self {
        Self {
            chunks,
            observer: Some(observer),
            held: None,
            seen: 0,
            chars: 0,
        }
    }
}

impl<O: Observer> Stream for Observed<O> {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if let Some((hold, _)) = this.held.as_mut() {
            ready!(hold.as_mut().poll(cx));
            let (_, item) = this.held.take().expect("held above");
            return Poll::Ready(item);
        }
        let item = ready!(this.chunks.as_mut().poll_next(cx));
        let generated = match &item {
            Some(Ok(Chunk::Delta(text))) => Some(text.len()),
            Some(Ok(Chunk::ToolCall(call))) => Some(call.arguments.len() + call.name.as_ref().map_or(0, String::len)),
            _ => None,
        };
        if let Some(bytes) = generated {
            if *this.seen == 0 {
                if let Some(observer) = this.observer.as_mut() {
                    observer.first_chunk();
                }
            }
            *this.seen += 1;
            *this.chars += bytes;
            return Poll::Ready(item);
        }
        let outcome = match &item {
            Some(Ok(Chunk::Delta(_) | Chunk::ToolCall(_))) => unreachable!("passed on above"),
            Some(Ok(Chunk::End(StreamEnd { usage, cost_usd, .. }))) => Outcome::Completed {
                usage: *usage,
                cost_usd: *cost_usd,
            },
            Some(Err(error)) => Outcome::Failed {
                error,
                chars: *this.chars,
            },
            None => Outcome::Failed {
                error: &ENDED_WITHOUT_END,
                chars: *this.chars,
            },
        };
        let hold = this.observer.take().and_then(|observer| observer.finish(outcome));
        match hold {
            Some(mut hold) => match hold.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(item),
                Poll::Pending => {
                    *this.held = Some((hold, item));
                    Poll::Pending
                }
            },
            None => Poll::Ready(item),
        }
    }
}

/// What a stream that stops without its end marker is, to an observer.
static ENDED_WITHOUT_END: EndedWithoutEnd = EndedWithoutEnd;

#[derive(Debug, thiserror::Error)]
#[error("the stream ended without its end")]
struct EndedWithoutEnd;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrysalis_services::mock::{Mock, MockConfig};
    use chrysalis_services::{ChatRequest, Message, Role};
    use futures_util::StreamExt;
    use tower::ServiceExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl Observer for Log {
        fn first_chunk(&mut self) {
            self.0.lock().unwrap().push("first".into());
        }

        fn finish(self, outcome: Outcome<'_>) -> Option<Hold> {
            let line = match outcome {
                Outcome::Completed { usage, .. } => format!("completed {}", usage.completion_tokens),
                Outcome::Failed { error, .. } => format!("failed {error}"),
                Outcome::Dropped { chunks, .. } => format!("dropped after {chunks}"),
            };
            self.0.lock().unwrap().push(line);
            None
        }
    }

    async fn stream(model: &str) -> ChatResponse {
        let mut request = ChatRequest::new("t", vec![Message::new(Role::User, "one two")]);
        request.stream = true;
        request.model = Some(model.into());
        Mock::new(MockConfig::default()).oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn each_ending_is_reported_exactly_once() {
        let log = Log::default();
        let ChatResponse::Stream(s) = observe(stream("mock-1").await, log.clone()) else {
            panic!()
        };
        let _: Vec<_> = s.collect().await;
        assert_eq!(*log.0.lock().unwrap(), ["first", "completed 12"]);

        let log = Log::default();
        let ChatResponse::Stream(s) = observe(stream("mock-cut").await, log.clone()) else {
            panic!()
        };
        let _: Vec<_> = s.collect().await;
        let lines = log.0.lock().unwrap().clone();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].starts_with("failed"), "{lines:?}");

        let log = Log::default();
        let ChatResponse::Stream(mut s) = observe(stream("mock-1").await, log.clone()) else {
            panic!()
        };
        s.next().await;
        s.next().await;
        drop(s);
        assert_eq!(*log.0.lock().unwrap(), ["first", "dropped after 2"]);
    }
}
