//! The request-level layer: outcomes, in-flight requests, open streams, overhead.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use chrysalis_services::{ChatRequest, ChatResponse, CutCharge};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

use super::families::{CostLabels, Metrics, RequestLabels, NONE};
use super::upstream;
use crate::budget::error::{BudgetExceeded, UnpricedModel};
use crate::failover::error::AllOpen;
use crate::fault::is_client_error;
use crate::observe::{observe, Hold, Observer, Outcome};
use crate::rate_limit::error::RateLimited;

/// Measures whole requests; put it outermost, so it sees rejections too.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestMetricsLayer {
    metrics: Metrics,
}

impl RequestMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            metrics: metrics.clone(),
        }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> RequestMetrics<S> {
        RequestMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A chat service whose requests are measured.
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    metrics: Metrics,
}

crate::wraps_inner!(RequestMetrics);

impl<S> Service<ChatRequest> for RequestMetrics<S>
where
    S: Service<ChatRequest, Response = ChatResponse>,
    S::Error: Into<BoxError>,
{
    type Response = ChatResponse;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        self.metrics.0.in_flight.inc();
        ResponseFuture {
            inner: self.inner.call(request),
            in_flight: Some(InFlight(self.metrics.clone())),
            started: Instant::now(),
            waited: Duration::ZERO,
        }
    }
}

/// Counts a request out of flight however it ends: a whole answer when its
/// future does, a stream when the stream does.
struct InFlight(Metrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0 .0.in_flight.dec();
    }
}

pin_project! {
    /// The future of [`RequestMetrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Handed to a stream's observer: a stream is in flight until it ends.
        in_flight: Option<InFlight>,
        started: Instant,
        waited: Duration,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ChatResponse, E>>,
    E: Into<BoxError>,
{
    type Output = Result<ChatResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let result = ready!(upstream::measure(this.waited, || inner.poll(cx)));
        let in_flight = this.in_flight.take().expect("polled after it completed");
        let metrics = &in_flight.0;
        // For a stream the answer is ready once its first chunk is: failover reads it first.
        let overhead = this.started.elapsed().saturating_sub(*this.waited);
        metrics.0.overhead.observe(overhead.as_secs_f64());
        Poll::Ready(match result.map_err(Into::into) {
            Ok(ChatResponse::Complete(completion)) => {
                count(metrics, completion.provider, &completion.model, "success");
                Ok(ChatResponse::Complete(completion))
            }
            Ok(ChatResponse::Stream(stream)) => {
                metrics.0.open_streams.inc();
                let outcome = StreamOutcome {
                    provider: stream.provider,
                    model: stream.model.clone(),
                    cut_charge: stream.cut_charge.clone(),
                    in_flight,
                };
                Ok(observe(ChatResponse::Stream(stream), outcome))
            }
            Err(error) => {
                count(metrics, NONE, NONE, outcome_of(&*error));
                Err(error)
            }
        })
    }
}

fn count(metrics: &Metrics, provider: &'static str, model: &str, outcome: &'static str) {
    let labels = RequestLabels {
        provider,
        model: metrics.model_label(model),
        outcome,
    };
    metrics.0.requests.get_or_create(&labels).inc();
}

/// A bounded name for why a request failed.
fn outcome_of(error: &(dyn StdError + 'static)) -> &'static str {
    if error.is::<RateLimited>() {
        "rate_limited"
    } else if error.is::<BudgetExceeded>() {
        "budget_exceeded"
    } else if error.is::<AllOpen>() {
        "unavailable"
    } else if is_client_error(error) || error.is::<UnpricedModel>() {
        "invalid_request"
    } else {
        "error"
    }
}

struct StreamOutcome {
    provider: &'static str,
    model: String,
    cut_charge: CutCharge,
    in_flight: InFlight,
}

impl Observer for StreamOutcome {
    fn finish(self, outcome: Outcome<'_>) -> Option<Hold> {
        let outcome = match outcome {
            Outcome::Completed { .. } => "success",
            Outcome::Failed { .. } => "error",
            Outcome::Dropped { .. } => "cancelled",
        };
        let metrics = &self.in_flight.0;
        count(metrics, self.provider, &self.model, outcome);
        // A whole stream's cost is counted per provider call; a cut one's is
        // known only once the budget has charged it, inside this layer.
        if let Some((_, cost_usd)) = self.cut_charge.get() {
            let labels = CostLabels {
                provider: self.provider,
                model: metrics.model_label(&self.model),
            };
            metrics.0.cost.get_or_create(&labels).inc_by(cost_usd);
        }
        metrics.0.open_streams.dec();
        None
    }
}
