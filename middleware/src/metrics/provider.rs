//! The per-provider layer: OpenTelemetry GenAI operation metrics, and the
//! calls, failures and latency of `/v1/providers`.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{ready, Context, Poll};

use chrysalis_services::{ChatRequest, ChatResponse, ProviderError, Usage};
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

use super::families::{CostLabels, Metrics, OperationLabels, TokenLabels};
use super::latency::ProviderStats;
use super::upstream;
use crate::circuit_breaker::error::Open;
use crate::fault;
use crate::observe::{observe, Hold, Observer, Outcome};
use crate::timeout::error::Elapsed;

const OPERATION: &str = "chat";

/// Measures each call to one provider.
#[derive(Debug, Clone)]
#[must_use]
pub struct ProviderMetricsLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    metrics: Metrics,
    provider: &'static str,
    stats: Arc<ProviderStats>,
    /// The series of each label set seen, found once: a family lookup hashes
    /// every label, and a call touches up to five series. Keyed by the
    /// labels' addresses (a model label is one shared copy per name), so
    /// bounded like the labels themselves.
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
}

type SeriesKey = (usize, usize, usize);

/// The series of one (request model, response model, error type).
#[derive(Debug)]
struct Series {
    labels: OperationLabels,
    duration: Histogram,
    /// Made when first needed, so a label set that never streams or spends
    /// shows no empty series.
    first_chunk: OnceLock<Histogram>,
    spend: OnceLock<Spend>,
}

#[derive(Debug)]
struct Spend {
    input_tokens: Histogram,
    output_tokens: Histogram,
    cost: Counter<f64, AtomicU64>,
}

impl ProviderMetricsLayer {
    /// Records calls to `provider` into `metrics`.
    pub fn new(metrics: &Metrics, provider: &'static str) -> Self {
        Self {
            shared: Arc::new(Shared {
                metrics: metrics.clone(),
                provider,
                stats: Arc::default(),
                series: RwLock::default(),
            }),
        }
    }

    /// Calls, failures and latency so far.
    pub fn stats(&self) -> Arc<ProviderStats> {
        self.shared.stats.clone()
    }
}

impl<S> Layer<S> for ProviderMetricsLayer {
    type Service = ProviderMetrics<S>;

    fn layer(&self, inner: S) -> ProviderMetrics<S> {
        ProviderMetrics {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A provider whose calls are measured.
#[derive(Debug, Clone)]
pub struct ProviderMetrics<S> {
    inner: S,
    shared: Arc<Shared>,
}

crate::wraps_inner!(ProviderMetrics);

impl<S> Service<ChatRequest> for ProviderMetrics<S>
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
        ResponseFuture {
            request_model: request.model.clone(),
            inner: self.inner.call(request),
            shared: self.shared.clone(),
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The future of [`ProviderMetrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
        request_model: Option<String>,
        started: Instant,
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
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        let elapsed = this.started.elapsed();
        let call = Call {
            shared: this.shared.clone(),
            request_model: this.request_model.take(),
            started: *this.started,
            answered: Instant::now(),
        };
        Poll::Ready(match result {
            // The breaker refused: no call was made.
            Err(error) if error.is::<Open>() => Err(error),
            Err(error) => {
                upstream::add(elapsed);
                call.finish("", None, Some(&*error));
                Err(error)
            }
            Ok(ChatResponse::Complete(completion)) => {
                upstream::add(elapsed);
                call.finish(&completion.model, Some((completion.usage, completion.cost_usd)), None);
                Ok(ChatResponse::Complete(completion))
            }
            Ok(ChatResponse::Stream(stream)) => {
                upstream::add(elapsed);
                let model = stream.model.clone();
                Ok(observe(ChatResponse::Stream(stream), StreamCall { call, model }))
            }
        })
    }
}

/// One call, measured when it ends.
struct Call {
    shared: Arc<Shared>,
    request_model: Option<String>,
    started: Instant,
    answered: Instant,
}

impl Call {
    fn series(&self, response_model: &str, error_type: &'static str) -> Arc<Series> {
        let metrics = &self.shared.metrics;
        let request_model = metrics.model_label(self.request_model.as_deref().unwrap_or(response_model));
        let response_model = metrics.model_label(response_model);
        let key = (
            Arc::as_ptr(&request_model).cast::<u8>() as usize,
            Arc::as_ptr(&response_model).cast::<u8>() as usize,
            error_type.as_ptr() as usize,
        );
        if let Some(series) = self.shared.series.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return series.clone();
        }
        let labels = OperationLabels {
            gen_ai_operation_name: OPERATION,
            gen_ai_provider_name: self.shared.provider,
            gen_ai_request_model: request_model,
            gen_ai_response_model: response_model,
            error_type,
        };
        let series = Arc::new(Series {
            duration: metrics.0.operation_duration.get_or_create(&labels).clone(),
            labels,
            first_chunk: OnceLock::new(),
            spend: OnceLock::new(),
        });
        let mut all = self.shared.series.write().unwrap_or_else(|p| p.into_inner());
        all.entry(key).or_insert(series).clone()
    }

    fn finish(&self, model: &str, spent: Option<(Usage, f64)>, error: Option<&(dyn StdError + 'static)>) {
        let elapsed = self.started.elapsed();
        let series = self.series(model, error.map_or("", error_type));
        series.duration.observe(elapsed.as_secs_f64());
        // A request refused for what it asks (a 400, a parameter this provider
        // lacks) says nothing of the provider's health.
        let failed = error.is_some_and(|e| !fault::is_client_error(e) && !fault::is_unsupported(e));
        self.shared.stats.record(elapsed, failed);
        let Some((usage, cost_usd)) = spent else { return };
        let spend = series.spend.get_or_init(|| self.spend_series(&series.labels));
        spend.input_tokens.observe(usage.prompt_tokens as f64);
        spend.output_tokens.observe(usage.completion_tokens as f64);
        spend.cost.inc_by(cost_usd);
    }

    fn spend_series(&self, labels: &OperationLabels) -> Spend {
        let families = &self.shared.metrics.0;
        let tokens = |gen_ai_token_type| TokenLabels {
            gen_ai_operation_name: OPERATION,
            gen_ai_provider_name: labels.gen_ai_provider_name,
            gen_ai_request_model: labels.gen_ai_request_model.clone(),
            gen_ai_response_model: labels.gen_ai_response_model.clone(),
            gen_ai_token_type,
        };
        let cost = CostLabels {
            provider: self.shared.provider,
            model: labels.gen_ai_response_model.clone(),
        };
        // One statement per lookup: a family's read guard lives to the end of
        // its statement, and the next lookup in that family may need to write.
        let input_tokens = families.token_usage.get_or_create(&tokens("input")).clone();
        let output_tokens = families.token_usage.get_or_create(&tokens("output")).clone();
        let cost = families.cost.get_or_create(&cost).clone();
        Spend {
            input_tokens,
            output_tokens,
            cost,
        }
    }
}

struct StreamCall {
    call: Call,
    model: String,
}

impl Observer for StreamCall {
    fn first_chunk(&mut self) {
        let now = Instant::now();
        // Waiting for the first chunk is waiting on the upstream too.
        upstream::add(now.saturating_duration_since(self.call.answered));
        let to_first = now.saturating_duration_since(self.call.started);
        let series = self.call.series(&self.model, "");
        let families = &self.call.shared.metrics.0;
        series
            .first_chunk
            .get_or_init(|| families.time_to_first_chunk.get_or_create(&series.labels).clone())
            .observe(to_first.as_secs_f64());
    }

    fn finish(self, outcome: Outcome<'_>) -> Option<Hold> {
        match outcome {
            Outcome::Completed { usage, cost_usd } => self.call.finish(&self.model, Some((usage, cost_usd)), None),
            Outcome::Failed { error, .. } => self.call.finish(&self.model, None, Some(error)),
            Outcome::Dropped { .. } => self.call.finish(&self.model, None, None),
        }
        None
    }
}

/// A bounded name for a failure.
fn error_type(error: &(dyn StdError + 'static)) -> &'static str {
    let error = crate::retry::error::last_error(error);
    if let Some(error) = error.downcast_ref::<ProviderError>() {
        error.kind_name()
    } else if error.is::<Elapsed>() {
        "timeout"
    } else {
        "error"
    }
}
