//! The metric families, registered once, shared by every layer.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Distinct model names that may become label values, besides those known in advance.
pub const MAX_MODELS: usize = 64;

/// Longest model name kept as a label: `/metrics` is open to anyone, and a
/// client chooses the names it asks for.
pub const MAX_MODEL_LABEL_BYTES: usize = 128;

/// The label of every model beyond the bounds.
const OTHER: &str = "other";

/// The provider and model label of a request no provider served.
pub(crate) const NONE: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OperationLabels {
    pub(crate) gen_ai_operation_name: &'static str,
    pub(crate) gen_ai_provider_name: &'static str,
    pub(crate) gen_ai_request_model: ModelLabel,
    pub(crate) gen_ai_response_model: ModelLabel,
    pub(crate) error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TokenLabels {
    pub(crate) gen_ai_operation_name: &'static str,
    pub(crate) gen_ai_provider_name: &'static str,
    pub(crate) gen_ai_request_model: ModelLabel,
    pub(crate) gen_ai_response_model: ModelLabel,
    pub(crate) gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) provider: &'static str,
    pub(crate) model: ModelLabel,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CostLabels {
    pub(crate) provider: &'static str,
    pub(crate) model: ModelLabel,
}

/// Every metric family of the chat path. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics(pub(crate) Arc<Families>);

#[derive(Debug)]
pub(crate) struct Families {
    pub(crate) operation_duration: Family<OperationLabels, Histogram>,
    pub(crate) time_to_first_chunk: Family<OperationLabels, Histogram>,
    pub(crate) token_usage: Family<TokenLabels, Histogram>,
    pub(crate) cost: Family<CostLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) in_flight: Gauge,
    pub(crate) open_streams: Gauge,
    pub(crate) overhead: Histogram,
    models: ModelNames,
}

impl Metrics {
    /// Registers the families in `registry`; `known_models` always keep their own label.
    pub fn register<'a>(registry: &mut Registry, known_models: impl IntoIterator<Item = &'a str>) -> Self {
        let seconds = || {
            Histogram::new([
                0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
            ])
        };
        let tokens = || Histogram::new((0..14).map(|i| 4f64.powi(i)));
        let families = Families {
            operation_duration: Family::new_with_constructor(seconds),
            time_to_first_chunk: Family::new_with_constructor(seconds),
            token_usage: Family::new_with_constructor(tokens),
            cost: Family::default(),
            requests: Family::default(),
            in_flight: Gauge::default(),
            open_streams: Gauge::default(),
            overhead: Histogram::new([
                5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 1e-1,
            ]),
            models: ModelNames::new(known_models),
        };
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "Duration of each call to a provider (OpenTelemetry GenAI)",
            Unit::Seconds,
            families.operation_duration.clone(),
        );
        registry.register_with_unit(
            "gen_ai_client_operation_time_to_first_chunk",
            "Time from a streamed call to its first chunk of text (OpenTelemetry GenAI)",
            Unit::Seconds,
            families.time_to_first_chunk.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens used per call, by token type (OpenTelemetry GenAI)",
            families.token_usage.clone(),
        );
        registry.register(
            "gateway_cost_usd",
            "USD spent, by provider and model",
            families.cost.clone(),
        );
        registry.register(
            "gateway_requests",
            "Chat requests by serving provider, model and outcome",
            families.requests.clone(),
        );
        registry.register(
            "gateway_requests_in_flight",
            "Chat requests being served",
            families.in_flight.clone(),
        );
        registry.register(
            "gateway_open_streams",
            "Streams being sent to clients",
            families.open_streams.clone(),
        );
        registry.register_with_unit(
            "gateway_overhead",
            "Time the gateway adds to a request: total minus time waiting on upstreams",
            Unit::Seconds,
            families.overhead.clone(),
        );
        Self(Arc::new(families))
    }

    /// `model` if it may be a label value (known, or among the first
    /// [`MAX_MODELS`] seen, short, and free of anything secret), else `other`.
    pub(crate) fn model_label(&self, model: &str) -> ModelLabel {
        self.0.models.label(model)
    }
}

/// A model's label: one shared copy per name, so taking it allocates nothing,
/// and the same name is always the same pointer.
pub(crate) type ModelLabel = Arc<str>;

#[derive(Debug)]
struct ModelNames {
    known: HashSet<ModelLabel>,
    seen: RwLock<HashSet<ModelLabel>>,
    other: ModelLabel,
}

impl ModelNames {
    fn new<'a>(known: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            // `none` labels refused requests; it must not take a slot of the bound.
            known: known.into_iter().chain([NONE]).map(Arc::from).collect(),
            seen: RwLock::default(),
            other: Arc::from(OTHER),
        }
    }

    fn label(&self, model: &str) -> ModelLabel {
        if let Some(label) = self.known.get(model) {
            return label.clone();
        }
        if let Some(label) = self.seen.read().unwrap_or_else(|p| p.into_inner()).get(model) {
            return label.clone();
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if let Some(label) = seen.get(model) {
            return label.clone();
        }
        if seen.len() >= MAX_MODELS || !fit_for_a_label(model) {
            return self.other.clone();
        }
        let label: ModelLabel = Arc::from(model);
        seen.insert(label.clone());
        label
    }
}

fn fit_for_a_label(model: &str) -> bool {
    model.len() <= MAX_MODEL_LABEL_BYTES
        && !model.chars().any(char::is_control)
        && matches!(chrysalis_services::redact::redact(model), std::borrow::Cow::Borrowed(_))
}
